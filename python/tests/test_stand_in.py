"""What a controller asks of its holder, and what it does when the holder
does not hold, seen with a stand-in keepgpu: a shell script that records
its arguments and environment, then either says it holds and waits for
the end of its standard input, as keepgpu hold --until-eof does, or, with
STAND_IN=never, never holds, or, with STAND_IN=stuck, holds and never
exits by itself."""

import os
import signal
import stat
import tempfile
import threading
import time
import unittest
from unittest import mock

import keepgpu
from keepgpu import _holder

STUB = """#!/bin/sh
printf '%s\\n' "$@" > "$0.args"
printf '%s\\n' "${KEEP_GPU_PLATFORM-unset}" "${KEEPGPU_PLATFORM-unset}" > "$0.platform"
if [ "$STAND_IN" = never ]; then
    echo $$ > "$0.pid.tmp" && mv "$0.pid.tmp" "$0.pid"
    exec sleep 1000
fi
if [ "$STAND_IN" = stuck ]; then
    trap '' TERM
    echo '{"event":"holding","message":"holding 1 GPU: stand-in","gpus":[]}' >&2
    cat > /dev/null
    exec sleep 1000
fi
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
        os.environ.pop("KEEPGPU_PLATFORM", None)

    def read(self, suffix):
        with open(self.stub + suffix) as f:
            return f.read().splitlines()

    @mock.patch.dict(os.environ, {"KEEPGPU_PLATFORM": "cuda"})
    def test_rocm(self):
        with keepgpu.RocmGPUController(rank=1, vram_to_keep="2GiB"):
            pass
        self.assertEqual(self.read(".platform"), ["rocm", "unset"])
        self.assertEqual(self.read(".args"), ["hold", "--gpus", "1", "--vram", "2GiB", "--interval", "1000ms",
                                              "--busy-threshold", "25", "--log-format", "json", "--until-eof"])

    def test_interval(self):
        # Seconds, as KeepGPU takes them, kept within keepgpu's 10ms..24h.
        for interval, want in ((0.5, "500ms"), (300, "300000ms"), (0.001, "10ms"), (1e308, "86400000ms")):
            with self.subTest(interval=interval):
                with keepgpu.GlobalGPUController(interval=interval):
                    pass
                args = self.read(".args")
                self.assertEqual(args[args.index("--interval") + 1], want)

    def test_cuda_leaves_it_to_keepgpu(self):
        with keepgpu.CudaGPUController(rank=0):
            pass
        self.assertEqual(self.read(".platform"), ["unset", "unset"])
        os.environ["KEEP_GPU_PLATFORM"] = "cuda"
        with keepgpu.GlobalGPUController():
            pass
        self.assertEqual(self.read(".platform"), ["cuda", "unset"])
        self.assertEqual(self.read(".args")[:3], ["hold", "--gpus", "all"])


    def alive(self, pid):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True

    def test_never_holds(self):
        with mock.patch.dict(os.environ, {"STAND_IN": "never"}), mock.patch.object(_holder, "START_TIMEOUT", 0.2):
            ctrl = keepgpu.CudaGPUController(rank=0)
            with self.assertRaisesRegex(RuntimeError, "^rank 0: keepgpu hold did not hold within 0.2s$"):
                ctrl.keep()
        pid = int(self.read(".pid")[0])
        self.assertFalse(self.alive(pid))  # killed and reaped
        self.assertIsNone(ctrl._holder)

    def test_interrupted_while_starting(self):
        # Ctrl+C while keep() waits: the holder is told to release (SIGTERM)
        # and reaped, and the KeyboardInterrupt goes on.
        def interrupt():
            deadline = time.monotonic() + 30
            while not os.path.exists(self.stub + ".pid") and time.monotonic() < deadline:
                time.sleep(0.01)
            os.kill(os.getpid(), signal.SIGINT)

        with mock.patch.dict(os.environ, {"STAND_IN": "never"}):
            ctrl = keepgpu.CudaGPUController(rank=0)
            t = threading.Thread(target=interrupt)
            t.start()
            try:
                with self.assertRaises(KeyboardInterrupt):
                    ctrl.keep()
            finally:
                t.join()
        self.assertFalse(self.alive(int(self.read(".pid")[0])))
        self.assertIsNone(ctrl._holder)

    def test_release_stuck(self):
        # A holder that does not exit: release() gives up with TimeoutError
        # (after closing the pipe, then a SIGTERM) and may be called again.
        with mock.patch.dict(os.environ, {"STAND_IN": "stuck"}), mock.patch.object(_holder, "RELEASE_TIMEOUT", 0.1):
            ctrl = keepgpu.CudaGPUController(rank=0)
            ctrl.keep()
            with self.assertRaisesRegex(TimeoutError, r"^rank 0: keepgpu hold \(pid \d+\) did not exit within 0.2s of its release$"):
                ctrl.release()
            proc = ctrl._holder.proc
            self.assertIsNone(proc.poll())
            proc.kill()
            proc.wait()
            with self.assertLogs("keepgpu", "WARNING") as logs:
                ctrl.release()
            self.assertIn("killed by signal 9", logs.output[0])
            self.assertIsNone(ctrl._holder)


if __name__ == "__main__":
    unittest.main()
