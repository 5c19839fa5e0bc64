"""A controller's holder never outlives the Python process that started it,
however that process ends, and a child made by os.fork() does not keep it
alive."""

import os
import subprocess
import sys
import unittest

from fakenode import Node

# The program keeps GPU 0, prints its holder's pid, and waits on stdin.
KEEP = """
import os, sys, keepgpu
c = keepgpu.CudaGPUController(rank=0)
c.keep()
"""


class TestLifetime(unittest.TestCase):
    def setUp(self):
        self.node = Node(1)
        self.addCleanup(self.node.close)

    def start(self, code):
        p = subprocess.Popen([sys.executable, "-c", KEEP + code], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                             universal_newlines=True)
        self.addCleanup(p.wait)
        self.addCleanup(p.stdout.close)
        self.addCleanup(p.stdin.close)
        return p

    def test_killed(self):
        p = self.start("print(c._holder.proc.pid, flush=True); sys.stdin.read()")
        holder = int(p.stdout.readline())
        self.assertEqual(list(self.node.held(0)), [holder])
        p.kill()
        p.wait()
        self.node.wait("the holder to release after SIGKILL", lambda: self.node.free(0))

    def test_exit_without_release(self):
        p = self.start("print(c._holder.proc.pid, flush=True); sys.stdin.read()")
        holder = int(p.stdout.readline())
        self.assertEqual(list(self.node.held(0)), [holder])
        p.stdin.close()
        self.assertEqual(p.wait(), 0)
        self.node.wait("the holder to release after exit", lambda: self.node.free(0))

    def test_fork(self):
        # The child's copy of the controller holds nothing: release() there
        # says so and leaves the parent's holder alone; when the parent is
        # killed, the holder releases while the child still runs.
        p = self.start("""
r, w = os.pipe()
child = os.fork()
if child == 0:
    c.release()
    os.write(w, b"x")
    sys.stdin.read()
    os._exit(0)
os.read(r, 1)
print(c._holder.proc.pid, child, flush=True)
sys.stdin.read()
""")
        holder, child = map(int, p.stdout.readline().split())
        self.addCleanup(_kill, child)
        self.assertEqual(list(self.node.held(0)), [holder])
        p.kill()
        p.wait()
        self.node.wait("the holder to release while the fork child lives", lambda: self.node.free(0))
        os.kill(child, 0)  # the child is still there


def _kill(pid):
    try:
        os.kill(pid, 9)
    except ProcessLookupError:
        pass


if __name__ == "__main__":
    unittest.main()
