"""One keepgpu holder process, started and watched by a controller."""

import json
import logging
import os
import shutil
import signal
import subprocess
import threading
import time
import weakref

logger = logging.getLogger("keepgpu")

# Holder.start waits this long for the holder to say that it holds.
START_TIMEOUT = 120.0
# Holder.stop waits this long for the holder to exit, then as long again
# after a SIGTERM.
RELEASE_TIMEOUT = 30.0

# KEEPGPU_* settings of the user's environment that would make a
# controller's holder release by itself or hold something else than the
# controller asked for: the controller alone decides that.
_DROPPED_ENV = (
    "KEEPGPU_MAX_HOLD",
    "KEEPGPU_UNTIL_FILE",
    "KEEPGPU_UNTIL_FIFO",
    "KEEPGPU_POLL",
    "KEEPGPU_THRESHOLD",
    "KEEPGPU_ALLOW_PARTIAL",
)

# How a holder that is not supervised ends its holding line; a controller
# releases it otherwise.
_HOLDING_SUFFIX = "; release with Ctrl+C or SIGTERM"

# Holders started by this process. A child made by os.fork() closes its
# copies of their pipes, so that only the process that started a holder
# keeps it holding, and forgets them.
_live = weakref.WeakSet()


def _forget_in_child():
    for h in list(_live):
        h._disown()
    _live.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)


def find_binary():
    """Return the keepgpu binary: $KEEPGPU_BIN, else keepgpu on PATH, else,
    inside keepgpu wrap, the wrap's own binary (through $KEEPGPU_PID).
    Raises FileNotFoundError saying where it looked."""
    path = os.environ.get("KEEPGPU_BIN")
    if path:
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            raise FileNotFoundError("KEEPGPU_BIN=%s: not an executable file" % path)
        return path
    path = shutil.which("keepgpu")
    if path:
        return path
    pid = os.environ.get("KEEPGPU_PID", "")
    if pid.isdigit():
        exe = "/proc/%s/exe" % pid
        try:
            if os.path.basename(os.readlink(exe)).startswith("keepgpu"):
                return exe
        except OSError:
            pass
    raise FileNotFoundError(
        "the keepgpu binary was not found: put it on PATH or set KEEPGPU_BIN")


def duration(seconds):
    """Return seconds as a duration for keepgpu's --interval, which takes
    10ms to 24h (it only sets how often telemetry is read)."""
    return "%dms" % round(min(max(seconds * 1000.0, 10.0), 24 * 3600 * 1000.0))


class Holder:
    """A `keepgpu hold --until-eof --log-format json` process.

    Its standard input is a pipe whose other end only this process holds:
    closing it releases the GPUs, and so does this process's end, however
    it ends. A thread reads the holder's events (JSON lines on its standard
    error) and logs them on the "keepgpu" logger. The holder runs in a
    session of its own, so a Ctrl+C in the terminal reaches Python, whose
    controllers then release, and not the holder.
    """

    def __init__(self, label, gpus, vram, interval, busy_threshold, env=None):
        """env holds the variables to set for the holder, or to leave out
        (None), beyond the user's."""
        self.label = label
        self.args = [
            "hold",
            "--gpus", gpus,
            "--vram", vram,
            "--interval", duration(interval),
            "--busy-threshold", str(busy_threshold),
            "--log-format", "json",
            "--until-eof",
        ]
        self.env = dict(env or {})
        self.proc = None
        self.held = []  # the "gpus" of the holding event
        self._pipe = None  # the write end of the holder's stdin
        self._events = None  # the read end of its stderr
        self._cond = threading.Condition()
        self._holding = False
        self._ended = False
        self._errors = []
        self._reader = None

    def start(self, timeout=None):
        """Start the holder; return once it holds every GPU, waiting at most
        timeout seconds (default START_TIMEOUT). Raises
        ValueError when keepgpu refuses its arguments (exit status 2),
        RuntimeError with the holder's own words when it cannot hold, and
        FileNotFoundError without a keepgpu binary."""
        argv = [find_binary()] + self.args
        env = {k: v for k, v in os.environ.items() if k not in _DROPPED_ENV}
        for k, v in self.env.items():  # None: leave it out
            if v is None:
                env.pop(k, None)
            else:
                env[k] = v
        stdin_r, self._pipe = os.pipe()
        self._events, stderr_w = os.pipe()
        try:
            self.proc = subprocess.Popen(
                argv, stdin=stdin_r, stdout=subprocess.DEVNULL, stderr=stderr_w,
                env=env, start_new_session=True)
        except BaseException:
            os.close(self._pipe)
            os.close(self._events)
            self._pipe = self._events = None
            raise
        finally:
            os.close(stdin_r)
            os.close(stderr_w)
        if timeout is None:
            timeout = START_TIMEOUT
        deadline = time.monotonic() + timeout
        try:
            _live.add(self)
            self._reader = threading.Thread(
                target=self._read, args=(self._events,),
                name="keepgpu-holder-%d" % self.proc.pid, daemon=True)
            self._reader.start()
            with self._cond:
                while not (self._holding or self._ended):
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
                holding = self._holding
        except BaseException:
            # A KeyboardInterrupt while the GPUs are being taken: the holder
            # releases them once held (SIGTERM) and keep() raises.
            self.proc.terminate()
            self._finish()
            raise
        if holding:
            return
        if not self._ended:
            self.proc.kill()
            self._finish()
            raise RuntimeError("%s: keepgpu hold did not hold within %gs" % (self.label, timeout))
        code = self._finish()
        msg = self._error_text() or "keepgpu hold exited with status %d" % code
        if code == 2:
            raise ValueError("%s: %s" % (self.label, msg))
        raise RuntimeError("%s: %s" % (self.label, msg))

    def stop(self, timeout=None):
        """Release: close the holder's pipe; return once the holder has
        exited, its VRAM back with the driver. A holder still there after
        timeout gets SIGTERM, and TimeoutError is raised if it is still
        there after as long again (stop may then be called again). Raises
        RuntimeError if the holder failed."""
        if self.proc is None:
            return
        if timeout is None:
            timeout = RELEASE_TIMEOUT
        if self._pipe is not None:
            os.close(self._pipe)
            self._pipe = None
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                raise TimeoutError(
                    "%s: keepgpu hold (pid %d) did not exit within %gs of its release"
                    % (self.label, self.proc.pid, 2 * timeout)) from None
        self._finish()
        failure = self.failure()
        if failure is not None:
            raise failure

    def failure(self):
        """Return why the holder ended by itself (an exception), or None
        while it holds and after a clean release."""
        if self.proc is None or self.proc.poll() is None or self.proc.returncode == 0:
            return None
        code = self.proc.returncode
        if code < 0:
            msg = "keepgpu hold (pid %d) was killed by signal %d" % (self.proc.pid, -code)
        else:
            msg = self._error_text() or "keepgpu hold (pid %d) exited with status %d" % (self.proc.pid, code)
        return RuntimeError("%s: %s" % (self.label, msg))

    def running(self):
        """Whether this process started the holder and it has not exited."""
        return self.proc is not None and self.proc.poll() is None

    def _finish(self):
        """Reap the holder, let the reader finish, close the pipe; return
        the exit status."""
        code = self.proc.wait()
        if self._pipe is not None:
            os.close(self._pipe)
            self._pipe = None
        if self._reader is not None:
            self._reader.join()  # it closes the events pipe
            self._reader = None
        elif self._events is not None:
            os.close(self._events)
            self._events = None
        _live.discard(self)
        return code

    def _disown(self):
        """In a child of os.fork(): close this copy of the holder's pipes
        and leave the holder to the parent."""
        for fd in (self._pipe, self._events):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._pipe = self._events = None
        self._reader = None
        self.proc = None

    def _error_text(self):
        with self._cond:
            return "; ".join(self._errors)

    def _read(self, fd):
        buf = b""
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                chunk = b""
            if not chunk:
                break
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for line in lines:
                self._line(line.decode("utf-8", "replace"))
        if buf:
            self._line(buf.decode("utf-8", "replace"))
        os.close(fd)
        with self._cond:
            self._events = None
            self._ended = True
            self._cond.notify_all()

    def _line(self, line):
        if not line.strip():
            return
        try:
            event = json.loads(line)
        except ValueError:
            event = None
        if isinstance(event, dict) and isinstance(event.get("event"), str):
            self._event(event)
            return
        # Text: keepgpu's own error before it could hold, or its usage.
        if line.startswith("Run 'keepgpu --help'"):
            return
        for prefix in ("keepgpu: error: ", "keepgpu: "):
            if line.startswith(prefix):
                line = line[len(prefix):]
                break
        with self._cond:
            self._errors.append(line)

    def _event(self, e):
        kind = e["event"]
        msg = e.get("message") or e.get("reason") or kind
        if kind == "holding":
            if msg.endswith(_HOLDING_SUFFIX):
                msg = msg[: -len(_HOLDING_SUFFIX)]
            with self._cond:
                self.held = e.get("gpus") or []
                self._holding = True
                self._cond.notify_all()
            logger.info("%s", msg)
        elif kind == "error":
            with self._cond:
                self._errors.append(msg)
                holding = self._holding
            # Before holding, keep() raises it; later, nothing else says it.
            logger.log(logging.ERROR if holding else logging.DEBUG, "%s", msg)
        elif kind in ("warning", "kernel-failed"):
            logger.warning("%s", msg)
        elif kind == "held" or (kind == "released" and "gpu" in e):
            logger.debug("%s", msg)
        else:
            logger.info("%s", msg)
