"""The controllers' progress lines on stderr, and KeepGPU's
CONSOLE_LOG_LEVEL."""

import os
import subprocess
import sys
import unittest

from fakenode import Node

PROGRAM = """
import keepgpu
c = keepgpu.CudaGPUController(rank=0)
with c:
    c.keep()
"""


class TestLogging(unittest.TestCase):
    def setUp(self):
        self.node = Node(1)
        self.addCleanup(self.node.close)

    def stderr(self, level):
        env = dict(os.environ)
        env.pop("CONSOLE_LOG_LEVEL", None)
        if level is not None:
            env["CONSOLE_LOG_LEVEL"] = level
        r = subprocess.run([sys.executable, "-c", PROGRAM], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, universal_newlines=True, env=env, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        return r.stderr

    def test_default(self):
        err = self.stderr(None)
        self.assertRegex(err, r"(?m)^keepgpu: holding 1 GPU: gpu 0 \(GPU-[0-9a-f-]+, Fake GPU 0\) 1\.0 GiB; kernel at 30%$")
        self.assertRegex(err, r"(?m)^keepgpu: rank 0: already holding \(keep\(\) called twice\)$")
        self.assertRegex(err, r"(?m)^keepgpu: released 1 GPU after ")

    def test_levels(self):
        for level, holding, warning in (("DEBUG", True, True), ("info", True, True), ("WARNING", False, True),
                                        ("ERROR", False, False), ("CRITICAL", False, False), ("no", False, False)):
            with self.subTest(level=level):
                err = self.stderr(level)
                self.assertEqual("keepgpu: holding" in err, holding, err)
                self.assertEqual("already holding" in err, warning, err)

    def test_not_a_level(self):
        err = self.stderr("LOUD")
        self.assertIn('keepgpu: CONSOLE_LOG_LEVEL "LOUD" is not a log level (DEBUG, INFO, WARNING, ERROR, CRITICAL): ignored', err)
        self.assertIn("keepgpu: holding 1 GPU", err)


if __name__ == "__main__":
    unittest.main()
