"""keepgpu's controllers against the fake driver: keep() returns once the
GPUs are held, release() once the holder has exited and every byte is
back, failures raise with the holder's own words."""

import logging
import math
import os
import signal
import unittest
from unittest import mock

import keepgpu
from fakenode import Node

GiB = 1 << 30


def holder_pid(ctrl):
    return ctrl._holder.proc.pid


def proc_file(pid, name):
    """/proc/PID/NAME split at its NUL bytes."""
    with open("/proc/%d/%s" % (pid, name), "rb") as f:
        return f.read().split(b"\0")


class ControllerTest(unittest.TestCase):
    gpus = 2

    def setUp(self):
        self.node = Node(self.gpus)
        self.addCleanup(self.node.close)


class TestCudaGPUController(ControllerTest):
    def test_keep_release(self):
        ctrl = keepgpu.CudaGPUController(rank=1, vram_to_keep="2GiB")
        ctrl.keep()
        pid = holder_pid(ctrl)
        self.assertEqual(self.node.held(1), {pid: 2 * GiB})
        self.assertTrue(self.node.free(0))
        self.assertIsNone(ctrl.allocation_status())
        ctrl.release()
        # release() returns once the holder has exited: nothing is left.
        self.assertEqual(self.node.procs(1), [])
        with self.assertRaises(ProcessLookupError):
            os.kill(pid, 0)

    def test_int_bytes(self):
        with keepgpu.CudaGPUController(rank=0, vram_to_keep=1_073_741_824) as ctrl:
            self.assertEqual(self.node.held(0), {holder_pid(ctrl): GiB})
        self.assertTrue(self.node.free(0))

    def test_defaults(self):
        # KeepGPU's: 1GiB, busy threshold 25, a 1 s interval.
        with keepgpu.CudaGPUController(rank=0) as ctrl:
            self.assertEqual(list(self.node.held(0).values()), [GiB])
            args = proc_file(holder_pid(ctrl), "cmdline")
        for flag, value in ((b"--vram", b"1GiB"), (b"--busy-threshold", b"25"), (b"--interval", b"1000ms")):
            self.assertEqual(args[args.index(flag) + 1], value)

    def test_arguments_reach_the_holder(self):
        with keepgpu.CudaGPUController(rank=0, interval=0.5, vram_to_keep="512MB", busy_threshold=-1) as ctrl:
            args = proc_file(holder_pid(ctrl), "cmdline")
            self.assertEqual(list(self.node.held(0).values()), [512 * 1000 * 1000])
        for flag, value in ((b"--gpus", b"0"), (b"--interval", b"500ms"), (b"--busy-threshold", b"-1")):
            self.assertEqual(args[args.index(flag) + 1], value)

    def test_context_manager_releases_on_exception(self):
        with self.assertRaises(KeyboardInterrupt):
            with keepgpu.CudaGPUController(rank=0) as ctrl:
                pid = holder_pid(ctrl)
                raise KeyboardInterrupt
        self.assertTrue(self.node.free(0))
        with self.assertRaises(ProcessLookupError):
            os.kill(pid, 0)

    def test_keep_twice_warns(self):
        with keepgpu.CudaGPUController(rank=0) as ctrl:
            pid = holder_pid(ctrl)
            with self.assertLogs("keepgpu", logging.WARNING) as logs:
                ctrl.keep()
            self.assertIn("already holding", logs.output[0])
            self.assertEqual(holder_pid(ctrl), pid)
            self.assertEqual(list(self.node.held(0)), [pid])

    def test_release_without_keep_warns(self):
        ctrl = keepgpu.CudaGPUController(rank=0)
        with self.assertLogs("keepgpu", logging.WARNING) as logs:
            ctrl.release()
        self.assertIn("not holding", logs.output[0])

    def test_keep_again_after_release(self):
        ctrl = keepgpu.CudaGPUController(rank=0)
        for _ in range(2):
            ctrl.keep()
            self.assertEqual(list(self.node.held(0).values()), [GiB])
            ctrl.release()
            self.assertTrue(self.node.free(0))

    def test_holder_killed(self):
        ctrl = keepgpu.CudaGPUController(rank=0)
        ctrl.keep()
        os.kill(holder_pid(ctrl), signal.SIGKILL)
        self.node.wait("the holder's death", lambda: ctrl.allocation_status() is not None)
        self.assertIn("killed by signal 9", str(ctrl.allocation_status()))
        with self.assertLogs("keepgpu", logging.WARNING):
            ctrl.release()  # nothing is held: it says so and returns
        ctrl.keep()  # and it can hold again
        ctrl.release()


class TestFailures(ControllerTest):
    def test_no_such_gpu(self):
        with self.assertRaisesRegex(RuntimeError, r"^rank 5: gpu 5: no such GPU; this process sees 2"):
            keepgpu.CudaGPUController(rank=5).keep()

    def test_out_of_memory(self):
        with self.assertRaisesRegex(RuntimeError, "CUDA_ERROR_OUT_OF_MEMORY|more than the card"):
            keepgpu.CudaGPUController(rank=0, vram_to_keep="100GiB").keep()
        self.assertTrue(self.node.free(0))

    def test_bits_refused(self):
        with self.assertRaisesRegex(ValueError, r'--vram: size "1Gb": "Gb" is a unit of bits'):
            keepgpu.CudaGPUController(rank=0, vram_to_keep="1Gb").keep()

    @mock.patch.dict(os.environ, {"LD_LIBRARY_PATH": ""})
    def test_no_driver(self):
        with self.assertRaisesRegex(RuntimeError, "libcuda.so.1"):
            keepgpu.CudaGPUController(rank=0).keep()

    @mock.patch.dict(os.environ, {"KEEPGPU_BIN": "/nonexistent/keepgpu"})
    def test_no_binary(self):
        with self.assertRaisesRegex(FileNotFoundError, "KEEPGPU_BIN=/nonexistent/keepgpu"):
            keepgpu.CudaGPUController(rank=0).keep()

    @mock.patch.dict(os.environ, {"KEEPGPU_MAX_HOLD": "1ms", "KEEPGPU_THRESHOLD": "2GiB"})
    def test_user_environment_cannot_end_the_hold(self):
        # Settings meant for a job script's keepgpu do not make a
        # controller's holder release behind its back, or hold other sizes.
        with keepgpu.CudaGPUController(rank=0) as ctrl:
            env = proc_file(holder_pid(ctrl), "environ")
            self.assertNotIn(b"KEEPGPU_MAX_HOLD=1ms", env)
            self.assertEqual(list(self.node.held(0).values()), [GiB])
            self.assertTrue(ctrl._holder.running())


class TestArguments(unittest.TestCase):
    """Checked when the controller is made, as KeepGPU checks them."""

    def test_bad(self):
        cases = [
            (TypeError, lambda: keepgpu.CudaGPUController(0)),  # keyword-only, as in KeepGPU
            (TypeError, lambda: keepgpu.CudaGPUController(rank="0")),
            (TypeError, lambda: keepgpu.CudaGPUController(rank=True)),
            (ValueError, lambda: keepgpu.CudaGPUController(rank=-1)),
            (ValueError, lambda: keepgpu.CudaGPUController(rank=0, interval=0)),
            (ValueError, lambda: keepgpu.CudaGPUController(rank=0, interval=math.nan)),
            (ValueError, lambda: keepgpu.CudaGPUController(rank=0, interval="1")),
            (ValueError, lambda: keepgpu.CudaGPUController(rank=0, busy_threshold=101)),
            (ValueError, lambda: keepgpu.CudaGPUController(rank=0, busy_threshold=-2)),
            (ValueError, lambda: keepgpu.CudaGPUController(rank=0, busy_threshold=2.5)),
            (ValueError, lambda: keepgpu.CudaGPUController(rank=0, vram_to_keep=0)),
            (ValueError, lambda: keepgpu.CudaGPUController(rank=0, vram_to_keep=(1 << 50) + 1)),
            (ValueError, lambda: keepgpu.CudaGPUController(rank=0, vram_to_keep=" ")),
            (TypeError, lambda: keepgpu.CudaGPUController(rank=0, vram_to_keep=1.5)),
            (ValueError, lambda: keepgpu.CudaGPUController(rank=0, relu_iterations=0)),
            (ValueError, lambda: keepgpu.RocmGPUController(rank=0, iterations=0)),
            (TypeError, lambda: keepgpu.RocmGPUController(rank=0, max_allocation_retries=1.0)),
            (ValueError, lambda: keepgpu.GlobalGPUController(gpu_ids=[])),
            (ValueError, lambda: keepgpu.GlobalGPUController(gpu_ids=[0, 0])),
            (ValueError, lambda: keepgpu.GlobalGPUController(gpu_ids=[-1])),
            (ValueError, lambda: keepgpu.GlobalGPUController(gpu_ids=(0, 1))),
            (ValueError, lambda: keepgpu.GlobalGPUController(gpu_ids=list(range(65)))),
            (ValueError, lambda: keepgpu.GlobalGPUController(interval=-1)),
        ]
        for i, (exc, make) in enumerate(cases):
            with self.subTest(i=i):
                self.assertRaises(exc, make)

    def test_good(self):
        keepgpu.CudaGPUController(rank=0, interval=0.001, vram_to_keep=4, busy_threshold=-1)
        keepgpu.CudaGPUController(rank=3, interval=10 ** 9, vram_to_keep=1 << 50, busy_threshold=100)
        g = keepgpu.GlobalGPUController([0, 2], 90, "512MB", 40)  # positional, as in KeepGPU
        self.assertEqual((g.gpu_ids, g.interval, g.vram_to_keep, g.busy_threshold), ([0, 2], 90, "512MB", 40))
        self.assertEqual(keepgpu.GlobalGPUController().interval, 300)


class TestGlobalGPUController(ControllerTest):
    gpus = 4

    def test_all(self):
        with keepgpu.GlobalGPUController(vram_to_keep="1GiB") as ctrl:
            pid = holder_pid(ctrl)
            for gpu in range(4):
                self.assertEqual(self.node.held(gpu), {pid: GiB})
        for gpu in range(4):
            self.assertTrue(self.node.free(gpu))

    def test_some(self):
        with keepgpu.GlobalGPUController(gpu_ids=[0, 2, 3], interval=90, vram_to_keep="512MB", busy_threshold=40):
            self.assertTrue(self.node.free(1))
            for gpu in (0, 2, 3):
                self.assertEqual(list(self.node.held(gpu).values()), [512 * 1000 * 1000])

    def test_all_or_nothing(self):
        self.node.set(2, "total", 2 * GiB)
        with self.assertRaisesRegex(RuntimeError, r"gpu 2 .*more than the card|gpu 2 .*OUT_OF_MEMORY"):
            keepgpu.GlobalGPUController(gpu_ids=[0, 1, 2], vram_to_keep="3GiB").keep()
        for gpu in range(4):
            self.assertTrue(self.node.free(gpu))

    @mock.patch.dict(os.environ, {"CUDA_VISIBLE_DEVICES": "2"})
    def test_visible_ordinals(self):
        with keepgpu.GlobalGPUController(gpu_ids=[0]) as ctrl:
            self.assertEqual(list(self.node.held(2)), [holder_pid(ctrl)])
            self.assertTrue(self.node.free(0))
        with self.assertRaisesRegex(RuntimeError, "gpu 1: no such GPU"):
            keepgpu.GlobalGPUController(gpu_ids=[0, 1]).keep()


class TestImportPaths(unittest.TestCase):
    """KeepGPU's module paths name the same controllers."""

    def test_keep_gpu(self):
        from keep_gpu.global_gpu_controller.global_gpu_controller import GlobalGPUController
        from keep_gpu.single_gpu_controller.cuda_gpu_controller import CudaGPUController
        from keep_gpu.single_gpu_controller.rocm_gpu_controller import RocmGPUController

        self.assertIs(CudaGPUController, keepgpu.CudaGPUController)
        self.assertIs(RocmGPUController, keepgpu.RocmGPUController)
        self.assertIs(GlobalGPUController, keepgpu.GlobalGPUController)


if __name__ == "__main__":
    unittest.main()
