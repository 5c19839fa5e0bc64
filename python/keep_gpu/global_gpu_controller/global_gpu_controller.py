"""KeepGPU's import path for keepgpu.GlobalGPUController."""

from keepgpu import GlobalGPUController  # noqa: F401
