"""KeepGPU's single-GPU controllers: see keepgpu.CudaGPUController."""

from keepgpu import CudaGPUController, RocmGPUController  # noqa: F401
