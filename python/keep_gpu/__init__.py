"""KeepGPU's import paths, for programs written for KeepGPU: the same
controllers as the keepgpu package (see keepgpu), run by the keepgpu
binary."""

from keepgpu import __version__  # noqa: F401
