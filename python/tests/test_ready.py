"""keepgpu.ready() inside and outside keepgpu wrap."""

import logging
import os
import subprocess
import sys
import unittest
from unittest import mock

import keepgpu
from fakenode import Node

# Run under keepgpu wrap: wait until the wrap's holder holds GPU 0, call
# ready(), then print what it returned and what GPU 0 holds right after.
PROGRAM = """
import os, subprocess, sys, time, keepgpu
def procs():
    return subprocess.run([os.environ["FAKEGPU"], "procs", os.environ["FAKEGPU_DIR"], "0"],
                          stdout=subprocess.PIPE, universal_newlines=True, check=True).stdout
deadline = time.monotonic() + 30
while not procs() and time.monotonic() < deadline:
    time.sleep(0.01)
r = keepgpu.ready()
print(r, repr(procs()))
"""


class TestReady(unittest.TestCase):
    def setUp(self):
        self.node = Node(1)
        self.addCleanup(self.node.close)

    def wrap(self, env=None):
        r = subprocess.run(
            [os.environ["KEEPGPU_BIN"], "wrap", "--vram", "1GiB", "--", sys.executable, "-c", PROGRAM],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, env=env, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        return r

    def test_inside_wrap(self):
        r = self.wrap(dict(os.environ, CONSOLE_LOG_LEVEL="INFO"))
        # True, and the GPU is free the moment ready() returns.
        self.assertEqual(r.stdout, "True ''\n")
        self.assertIn("released the GPUs after", r.stderr)
        self.assertIn("(keepgpu ready;", r.stderr)

    def test_wrap_binary_not_on_path(self):
        # Without KEEPGPU_BIN and keepgpu on PATH, ready() runs the binary
        # of the wrap it is in.
        env = {k: v for k, v in os.environ.items() if k != "KEEPGPU_BIN"}
        env["PATH"] = "/usr/bin:/bin"
        if any(os.path.exists(os.path.join(d, "keepgpu")) for d in ("/usr/bin", "/bin")):
            self.skipTest("keepgpu is installed in /usr/bin or /bin")
        r = self.wrap(env)
        self.assertEqual(r.stdout, "True ''\n")

    @mock.patch.dict(os.environ, {"KEEPGPU_READY": ""})
    def test_outside_wrap(self):
        with self.assertLogs("keepgpu", logging.WARNING) as logs:
            self.assertIs(keepgpu.ready(), False)
        self.assertIn("not inside keepgpu wrap", logs.output[0])

    def test_no_wrap_listening(self):
        with mock.patch.dict(os.environ, {"KEEPGPU_READY": os.path.join(self.node.dir, "nothing.sock")}):
            with self.assertRaisesRegex(RuntimeError, "no keepgpu wrap listening at"):
                keepgpu.ready()


if __name__ == "__main__":
    unittest.main()
