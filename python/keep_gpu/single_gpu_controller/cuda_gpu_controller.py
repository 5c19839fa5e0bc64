"""KeepGPU's import path for keepgpu.CudaGPUController."""

from keepgpu import CudaGPUController  # noqa: F401
