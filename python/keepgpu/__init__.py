"""Hold GPUs from Python while a program does CPU work.

KeepGPU's controllers, with its argument names and defaults, run by the
keepgpu binary: each controller's keep() starts a holder process
(`keepgpu hold`) and returns once it holds the GPUs; release() returns once
that process has exited, so every byte of VRAM is back with the driver.
Standard library only; no torch.

    import keepgpu

    with keepgpu.CudaGPUController(rank=0, vram_to_keep="1GiB"):
        prepare_data()          # GPU 0 held
    train()                     # GPU 0 free again

keepgpu.ready() tells an enclosing `keepgpu wrap` that the program is
ready for its GPUs.
"""

import logging
import math
import os
import subprocess
import sys

from . import _holder

__version__ = "0.1.0"
__all__ = [
    "CudaGPUController",
    "RocmGPUController",
    "GlobalGPUController",
    "ready",
]

logger = logging.getLogger("keepgpu")

DEFAULT_VRAM = "1GiB"
DEFAULT_BUSY_THRESHOLD = 25
MAX_GPU_IDS = 64
_MAX_BYTES = 1 << 50  # 1 PiB


# -- logging ------------------------------------------------------------------

_LEVELS = {
    "DEBUG": logging.DEBUG, "INFO": logging.INFO, "NOTSET": logging.DEBUG,
    "WARNING": logging.WARNING, "WARN": logging.WARNING, "ERROR": logging.ERROR,
    "CRITICAL": logging.CRITICAL, "FATAL": logging.CRITICAL,
}


def _setup_logging():
    """Log the holders' progress on stderr as `keepgpu: ...` lines, at the
    level CONSOLE_LOG_LEVEL names (KeepGPU's variable; default INFO). NO or
    0 turns the lines off; a value that is not a level is a warning and
    ignored."""
    value = os.environ.get("CONSOLE_LOG_LEVEL", "").strip().upper()
    level, bad = logging.INFO, None
    if value in ("NO", "0"):
        level = None
    elif value in _LEVELS:
        level = _LEVELS[value]
    elif value:
        bad = value
    if level is not None:
        handler = logging.StreamHandler(sys.stderr)
        handler.setLevel(level)
        handler.setFormatter(logging.Formatter("keepgpu: %(message)s"))
        logger.addHandler(handler)
    else:
        logger.addHandler(logging.NullHandler())
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    if bad:
        logger.warning(
            'CONSOLE_LOG_LEVEL "%s" is not a log level (DEBUG, INFO, WARNING, '
            "ERROR, CRITICAL): ignored", os.environ.get("CONSOLE_LOG_LEVEL"))


_setup_logging()


# -- arguments, checked as KeepGPU checks them ----------------------------------

def _plain_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _check_interval(interval):
    if not isinstance(interval, (int, float)) or isinstance(interval, bool) \
            or not math.isfinite(interval) or interval <= 0:
        raise ValueError("interval must be a finite positive number of seconds, got %r" % (interval,))
    return interval


def _check_busy_threshold(t):
    if not _plain_int(t) or not (t == -1 or 0 <= t <= 100):
        raise ValueError("busy_threshold must be -1 or an integer between 0 and 100, got %r" % (t,))
    return t


def _vram_arg(v):
    """vram_to_keep as keepgpu's --vram: an int is bytes; a string is a
    size keepgpu reads ("1GiB", "512MB", "1.5GiB"), checked when the
    holder starts."""
    if _plain_int(v):
        if not 4 <= v <= _MAX_BYTES:
            raise ValueError("vram_to_keep must be 4 bytes to 1 PiB, got %d" % v)
        return str(v)
    if isinstance(v, str):
        if not v.strip():
            raise ValueError("vram_to_keep must not be empty")
        return v.strip()
    raise TypeError("vram_to_keep must be an int (bytes) or a size string, got %r" % (v,))


def _check_positive(v, name):
    if not _plain_int(v):
        raise TypeError("%s must be an integer" % name)
    if v <= 0:
        raise ValueError("%s must be positive" % name)
    return v


def _check_rank(rank):
    if not _plain_int(rank):
        raise TypeError("rank must be an integer, got %r" % (rank,))
    if rank < 0:
        raise ValueError("rank must be a visible device ordinal (0 or more), got %d" % rank)
    return rank


def _check_gpu_ids(gpu_ids):
    if gpu_ids is None:
        return None
    if not isinstance(gpu_ids, list):
        raise ValueError("gpu_ids must be a list of integers or None")
    if not gpu_ids:
        raise ValueError("gpu_ids must select at least one GPU")
    if len(gpu_ids) > MAX_GPU_IDS:
        raise ValueError("gpu_ids has more than %d items" % MAX_GPU_IDS)
    if any(not _plain_int(i) or i < 0 for i in gpu_ids):
        raise ValueError("gpu_ids must contain non-negative integers, got %r" % (gpu_ids,))
    if len(set(gpu_ids)) != len(gpu_ids):
        raise ValueError("gpu_ids must not contain duplicates, got %r" % (gpu_ids,))
    return list(gpu_ids)


# -- controllers ----------------------------------------------------------------

class _Controller:
    """What every controller does: one holder process per keep()."""

    _env = None  # variables for the holder: see _holder.Holder

    def __init__(self, gpus, label, interval, vram_to_keep, busy_threshold):
        self.interval = _check_interval(interval)
        self.busy_threshold = _check_busy_threshold(busy_threshold)
        self._vram = _vram_arg(vram_to_keep)
        self.vram_to_keep = vram_to_keep
        self._gpus = gpus
        self._label = label
        self._holder = None

    def keep(self):
        """Hold the GPUs: start a keepgpu holder and return once it holds
        every one. Raises with the holder's own error when it cannot
        (RuntimeError; ValueError for a size keepgpu refuses); nothing
        stays held then. A second call while holding warns and returns."""
        if self._holder is not None and self._holder.running():
            logger.warning("%s: already holding (keep() called twice)", self._label)
            return
        if self._holder is not None:
            if self._holder.proc is not None:  # it ended by itself: reap it
                self.release()
            self._holder = None  # or it is the parent's, in a fork child
        h = _holder.Holder(self._label, self._gpus, self._vram, self.interval,
                           self.busy_threshold, self._env)
        h.start()
        self._holder = h

    def release(self):
        """Release the GPUs: return once the holder has exited and its VRAM
        is back with the driver. Without a hold it warns and returns.
        Raises TimeoutError if the holder does not exit (call again), and
        RuntimeError if releasing failed."""
        h = self._holder
        if h is None or h.proc is None:
            logger.warning("%s: not holding (release() without keep())", self._label)
            self._holder = None
            return
        ended = h.failure()
        try:
            h.stop()
        except RuntimeError:
            if ended is None:
                raise
            # It had ended by itself already: nothing is held.
            logger.warning("%s", ended)
        self._holder = None

    def allocation_status(self):
        """Return why the GPUs stopped being held while they should be (the
        holder died), as an exception; None while holding or idle."""
        return None if self._holder is None else self._holder.failure()

    def __enter__(self):
        self.keep()
        return self

    def __exit__(self, exc_type, exc, tb):
        self.release()

    def __repr__(self):
        state = "holding" if self._holder is not None and self._holder.running() else "idle"
        return "<%s %s %s>" % (type(self).__name__, self._label, state)


class CudaGPUController(_Controller):
    """Hold one GPU, rank (a visible ordinal, as CUDA numbers the GPUs after
    CUDA_VISIBLE_DEVICES): vram_to_keep of its memory (bytes, or a size
    such as "1GiB") and keepgpu's keep-alive kernel, which pauses while
    utilization not keepgpu's is above busy_threshold percent (-1: never).
    interval is how often, in seconds, the holder reads the GPU's
    utilization. relu_iterations is accepted for KeepGPU's sake; keepgpu's
    kernel is calibrated instead.

    The holder picks the platform as keepgpu does (KEEP_GPU_PLATFORM, or
    what the node has)."""

    def __init__(self, *, rank, interval=1.0, relu_iterations=5000,
                 vram_to_keep=DEFAULT_VRAM, busy_threshold=DEFAULT_BUSY_THRESHOLD):
        self.rank = _check_rank(rank)
        self.relu_iterations = _check_positive(relu_iterations, "relu_iterations")
        super().__init__(str(rank), "rank %d" % rank, interval, vram_to_keep, busy_threshold)


class RocmGPUController(_Controller):
    """CudaGPUController for an AMD GPU: the holder is asked for the ROCm
    platform (KEEP_GPU_PLATFORM=rocm, KEEPGPU_PLATFORM unset). iterations and
    max_allocation_retries are accepted for KeepGPU's sake."""

    # KeepGPU's variable, and keepgpu's own (which would win) left out.
    _env = {"KEEP_GPU_PLATFORM": "rocm", "KEEPGPU_PLATFORM": None}

    def __init__(self, *, rank, interval=1.0, vram_to_keep=DEFAULT_VRAM,
                 busy_threshold=DEFAULT_BUSY_THRESHOLD, iterations=5000,
                 max_allocation_retries=None):
        self.rank = _check_rank(rank)
        self.iterations = _check_positive(iterations, "iterations")
        if max_allocation_retries is not None:
            _check_positive(max_allocation_retries, "max_allocation_retries")
        self.max_allocation_retries = max_allocation_retries
        super().__init__(str(rank), "rank %d" % rank, interval, vram_to_keep, busy_threshold)


class GlobalGPUController(_Controller):
    """Hold several GPUs with one holder: gpu_ids, a list of visible
    ordinals, or None for every GPU the process sees. All or nothing: if one
    GPU cannot be held, keep() releases the others and raises."""

    def __init__(self, gpu_ids=None, interval=300, vram_to_keep=DEFAULT_VRAM,
                 busy_threshold=DEFAULT_BUSY_THRESHOLD):
        self.gpu_ids = _check_gpu_ids(gpu_ids)
        gpus = "all" if self.gpu_ids is None else ",".join(map(str, self.gpu_ids))
        label = "gpus " + gpus
        super().__init__(gpus, label, interval, vram_to_keep, busy_threshold)

    def runtime_error(self):
        """KeepGPU's name for allocation_status()."""
        return self.allocation_status()


# -- keepgpu wrap ----------------------------------------------------------------

def ready(timeout=60.0):
    """Tell the enclosing `keepgpu wrap` that this program is ready for its
    GPUs, and return True once they are released (the holder has exited):
    CUDA may be initialised right after. Runs `keepgpu ready`.

    Outside keepgpu wrap (no KEEPGPU_READY in the environment) there is
    nothing to release: it logs a warning and returns False, so a program
    written for wrap runs without it too. Raises RuntimeError if the wrap
    does not answer (timeout seconds; None waits as long as it takes)."""
    if not os.environ.get("KEEPGPU_READY"):
        logger.warning("ready(): not inside keepgpu wrap (KEEPGPU_READY is not set); nothing to release")
        return False
    argv = [_holder.find_binary(), "ready",
            "--timeout", "0" if timeout is None else _holder.duration(timeout)]
    r = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE)
    if r.returncode != 0:
        msg = r.stderr.decode("utf-8", "replace").strip()
        if msg.startswith("keepgpu: error: "):
            msg = msg[len("keepgpu: error: "):]
        raise RuntimeError(msg or "keepgpu ready exited with status %d" % r.returncode)
    return True
