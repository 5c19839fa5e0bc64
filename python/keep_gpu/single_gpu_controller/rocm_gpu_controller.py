"""KeepGPU's import path for keepgpu.RocmGPUController."""

from keepgpu import RocmGPUController  # noqa: F401
