"""KeepGPU's documented Python examples, run unchanged against keepgpu.

examples/ holds the Python examples of KeepGPU 1.0.0's documentation, their
code as published (comments left out): docs/guides/python.md (guide_*),
docs/getting-started.md (start_*) and the CudaGPUController docstring of
its API reference (api_*). The names an example uses without defining
them (train_model(), dataset.process(), ...), or that its page imports in
an earlier example, are given here; each records what the node holds when
it is called. The "keepgpu" logger's records show what was held and
released in between.
"""

import logging
import os
import pathlib
import tempfile
import time
import types
import unittest

import keepgpu
from fakenode import Node

HERE = os.path.dirname(os.path.abspath(__file__))
GiB = 1 << 30


class Recorder(logging.Handler):
    def __init__(self, steps):
        super().__init__(logging.INFO)
        self.steps = steps

    def emit(self, record):
        msg = record.getMessage()
        for word in ("holding", "released"):
            if msg.startswith(word):
                self.steps.append((word, msg))


class TestExamples(unittest.TestCase):
    def setUp(self):
        self.node = Node(4)
        self.addCleanup(self.node.close)
        self.steps = []
        handler = Recorder(self.steps)
        logger = logging.getLogger("keepgpu")
        logger.addHandler(handler)
        self.addCleanup(logger.removeHandler, handler)

    def held(self):
        """What the node holds: {gpu: bytes}, GPUs holding nothing left out."""
        out = {}
        for gpu in range(4):
            b = sum(self.node.held(gpu).values())
            if b:
                out[gpu] = b
        return out

    def call(self, name):
        def f(*args, **kwargs):
            self.steps.append((name, self.held()))
        return f

    def run_example(self, name, **names):
        path = os.path.join(HERE, "examples", name)
        with open(path) as f:
            code = compile(f.read(), path, "exec")
        ns = {"__name__": "__example__"}
        ns.update(names)
        exec(code, ns)
        return ns

    def kinds(self):
        return [s[0] for s in self.steps]

    def test_guide_single_gpu(self):
        self.run_example("guide_single_gpu.py", train_model=self.call("train_model"))
        self.assertEqual(self.kinds(), ["holding", "released", "train_model"])
        self.assertIn("gpu 0 (", self.steps[0][1])
        self.assertIn("1.5 GiB", self.steps[0][1])
        self.assertEqual(self.steps[2][1], {})

    def test_guide_manual(self):
        from keep_gpu.single_gpu_controller.cuda_gpu_controller import CudaGPUController

        self.run_example("guide_manual.py", CudaGPUController=CudaGPUController,
                         run_cpu_bound_stage=self.call("run_cpu_bound_stage"))
        self.assertEqual(self.kinds(), ["holding", "run_cpu_bound_stage", "released"])
        self.assertEqual(self.steps[1][1], {1: GiB})
        self.assertEqual(self.held(), {})

    def test_guide_global(self):
        self.run_example("guide_global.py", run_pipeline_controller=self.call("run_pipeline_controller"))
        self.assertEqual(self.kinds(), ["holding", "run_pipeline_controller", "released"])
        self.assertEqual(self.steps[1][1], {0: 512 * 1000 ** 2, 2: 512 * 1000 ** 2, 3: 512 * 1000 ** 2})
        self.assertEqual(self.held(), {})

    def test_guide_scheduler(self):
        from keep_gpu.single_gpu_controller.cuda_gpu_controller import CudaGPUController

        # The dataset is ready: "/tmp/done" exists, in a directory of the
        # test's own that stands for the root.
        root = tempfile.mkdtemp()
        self.addCleanup(lambda: (os.remove(os.path.join(root, "tmp", "done")),
                                 os.rmdir(os.path.join(root, "tmp")), os.rmdir(root)))
        os.mkdir(os.path.join(root, "tmp"))
        open(os.path.join(root, "tmp", "done"), "w").close()
        polls = []

        def Path(p):
            polls.append(p)
            return pathlib.Path(root, p.lstrip("/"))

        ns = self.run_example("guide_scheduler.py", CudaGPUController=CudaGPUController, time=time,
                              Path=Path, launch_training_job=self.call("launch_training_job"))
        ns["main"]()
        self.assertEqual(polls, ["/tmp/done"])
        self.assertEqual(self.kinds(), ["holding", "released", "launch_training_job"])
        self.assertIn("2.0 GiB", self.steps[0][1])
        self.assertEqual(self.steps[2][1], {})

    def test_start_single_gpu(self):
        self.run_example("start_single_gpu.py", preprocess_dataset=self.call("preprocess_dataset"),
                         train_model=self.call("train_model"))
        self.assertEqual(self.kinds(), ["holding", "preprocess_dataset", "released", "train_model"])
        self.assertEqual(self.steps[1][1], {0: GiB})
        self.assertEqual(self.steps[3][1], {})

    def test_start_global(self):
        self.run_example("start_global.py", run_cpu_bound_stage=self.call("run_cpu_bound_stage"))
        self.assertEqual(self.kinds(), ["holding", "run_cpu_bound_stage", "released"])
        self.assertEqual(self.steps[1][1], {0: 750 * 1000 ** 2, 1: 750 * 1000 ** 2})
        self.assertEqual(self.held(), {})

    def api_names(self):
        from keep_gpu.single_gpu_controller.cuda_gpu_controller import CudaGPUController

        return dict(CudaGPUController=CudaGPUController,
                    dataset=types.SimpleNamespace(process=self.call("dataset.process")),
                    model=types.SimpleNamespace(train_start=self.call("model.train_start")))

    def test_api_keep_release(self):
        self.run_example("api_keep_release.py", **self.api_names())
        self.assertEqual(self.kinds(), ["holding", "dataset.process", "released", "model.train_start"])
        self.assertEqual(self.steps[1][1], {0: GiB})
        self.assertEqual(self.steps[3][1], {})

    def test_api_context(self):
        self.run_example("api_context.py", **self.api_names())
        self.assertEqual(self.kinds(), ["holding", "dataset.process", "released", "model.train_start"])
        self.assertEqual(self.steps[1][1], {0: GiB})
        self.assertEqual(self.steps[3][1], {})


if __name__ == "__main__":
    unittest.main()
