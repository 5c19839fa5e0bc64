"""The project's fake GPU node for the tests: scripts/python-test.sh builds
keepgpu, the fakegpu tool and the fake driver libraries, and names them in
KEEPGPU_BIN, FAKEGPU and LD_LIBRARY_PATH."""

import os
import shutil
import subprocess
import tempfile
import time
import unittest

# Only a guard against a hang: the conditions waited for hold within
# milliseconds.
WAIT_LIMIT = 30.0


def tool():
    path = os.environ.get("FAKEGPU")
    if not path or not os.environ.get("KEEPGPU_BIN"):
        raise unittest.SkipTest("run through scripts/python-test.sh (FAKEGPU and KEEPGPU_BIN unset)")
    return path


class Node:
    """A fake node of n GPUs in a temporary directory, made the node of
    this process and its children (FAKEGPU_DIR) until close()."""

    def __init__(self, n, **settings):
        self.fakegpu = tool()
        self.dir = tempfile.mkdtemp(prefix="kgnode")
        self.run("init", self.dir, str(n))
        for key, value in settings.items():
            for gpu in range(n):
                self.run("set", self.dir, str(gpu), key, str(value))
        self._old = os.environ.get("FAKEGPU_DIR")
        os.environ["FAKEGPU_DIR"] = self.dir

    def close(self):
        if self._old is None:
            os.environ.pop("FAKEGPU_DIR", None)
        else:
            os.environ["FAKEGPU_DIR"] = self._old
        shutil.rmtree(self.dir, ignore_errors=True)

    def run(self, *args):
        return subprocess.run([self.fakegpu] + list(args), check=True,
                              stdout=subprocess.PIPE, universal_newlines=True).stdout

    def set(self, gpu, key, value):
        self.run("set", self.dir, str(gpu), key, str(value))

    def procs(self, gpu):
        """Every process record on gpu: (pid, contexts, bytes, alive)."""
        out = []
        for line in self.run("procs", self.dir, str(gpu)).splitlines():
            pid, contexts, nbytes, _launches, alive = line.split()
            out.append((int(pid), int(contexts), int(nbytes), alive == "true"))
        return out

    def held(self, gpu):
        """{pid: bytes} of the live processes holding a context on gpu."""
        return {p: b for p, c, b, alive in self.procs(gpu) if alive and c > 0}

    def free(self, gpu):
        """Whether no live process holds anything on gpu."""
        return not self.held(gpu)

    def wait(self, what, cond):
        deadline = time.monotonic() + WAIT_LIMIT
        while not cond():
            if time.monotonic() > deadline:
                raise AssertionError("waited %gs for %s" % (WAIT_LIMIT, what))
            time.sleep(0.01)
