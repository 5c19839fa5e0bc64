"""What each controller asks of its holder, seen by a stand-in keepgpu
that records its arguments and environment."""

import os
import stat
import tempfile
import unittest
from unittest import mock

import keepgpu

STUB = """#!/bin/sh
printf '%s\\n' "$@" > "$0.args"
printf '%s\\n' "${KEEP_GPU_PLATFORM-unset}" > "$0.platform"
echo '{"event":"holding","message":"holding 1 GPU: stand-in","gpus":[]}' >&2
cat > /dev/null
echo '{"event":"released","message":"released 1 GPU"}' >&2
"""


class TestPlatform(unittest.TestCase):
    def setUp(self):
        d = tempfile.TemporaryDirectory()
        self.addCleanup(d.cleanup)
        self.stub = os.path.join(d.name, "keepgpu")
        with open(self.stub, "w") as f:
            f.write(STUB)
        os.chmod(self.stub, stat.S_IRWXU)
        env = mock.patch.dict(os.environ, {"KEEPGPU_BIN": self.stub})
        env.start()
        self.addCleanup(env.stop)
        os.environ.pop("KEEP_GPU_PLATFORM", None)

    def read(self, suffix):
        with open(self.stub + suffix) as f:
            return f.read().splitlines()

    def test_rocm(self):
        with keepgpu.RocmGPUController(rank=1, vram_to_keep="2GiB"):
            pass
        self.assertEqual(self.read(".platform"), ["rocm"])
        self.assertEqual(self.read(".args"), ["hold", "--gpus", "1", "--vram", "2GiB", "--interval", "1000ms",
                                              "--busy-threshold", "25", "--log-format", "json", "--until-eof"])

    def test_cuda_leaves_it_to_keepgpu(self):
        with keepgpu.CudaGPUController(rank=0):
            pass
        self.assertEqual(self.read(".platform"), ["unset"])
        os.environ["KEEP_GPU_PLATFORM"] = "cuda"
        with keepgpu.GlobalGPUController():
            pass
        self.assertEqual(self.read(".platform"), ["cuda"])
        self.assertEqual(self.read(".args")[:3], ["hold", "--gpus", "all"])


if __name__ == "__main__":
    unittest.main()
