"""A watchdog thread: when no step or item completes for too long, dump every thread's stack and exit non-zero.

A tf.data pipeline can hang at random (parallel map calls that never return; the process then sits at 0% CPU).
The main thread is blocked inside TensorFlow then, so the check runs in its own thread: when no tick arrives for
max(timeout_seconds, scale x the slowest measured interval between ticks), it writes what it was doing, the last
progress and the Python stack of every thread (faulthandler) to stderr and to log_path, then ends the process with
os._exit(EXIT_CODE). Rerunning the same command resumes (train.py keeps the last complete epoch).

Usage:
    from safeguards.watchdog import Watchdog
    with Watchdog(1800, log_path="runs/demo/stall.log", what="training") as watchdog:
        for step in steps:
            ...
            watchdog.tick(f"step {step}")
"""

import faulthandler
import os
import sys
import threading
import time

EXIT_CODE = 3  # what a stalled process exits with (1 is a plain error, 2 a usage error)
DEFAULT_TIMEOUT_SECONDS = 1800  # the scripts' default --stall_timeout
SLOW_WORK_ALLOWANCE_SECONDS = 900  # allowed at least for work known to be slow: tracing a first step, a save
SCALE = 20.0  # the limit grows to this many times the slowest interval measured so far


class Watchdog:
    """Ends the process when no progress is reported for too long.

    Args:
        timeout_seconds: the shortest limit between two ticks; 0 or None disables the watchdog.
        log_path: file the report is appended to (besides stderr), or None.
        what: what is being watched, for the report ("training", "prediction", ...).
        scale: the limit is max(timeout_seconds, scale x the slowest measured interval between ticks).
    """

    def __init__(self, timeout_seconds, log_path=None, what="work", scale=SCALE):
        self.timeout_seconds = float(timeout_seconds or 0)
        self.log_path = log_path
        self.what = what
        self.scale = float(scale)
        self.slowest = 0.0
        self.progress = "none yet"
        self.last_tick = time.monotonic()
        self.allowance = 0.0  # a one-off longer limit until the next tick (see allow)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = None

    @property
    def limit(self):
        """Seconds without a tick after which the watchdog fires."""
        return max(self.timeout_seconds, self.scale * self.slowest, self.allowance)

    def allow(self, seconds):
        """Allow up to `seconds` until the next tick, once (for work known to be slow: tracing a graph, a save).

        That interval is not counted towards the slowest one either.
        """
        with self._lock:
            self.allowance = float(seconds)

    def tick(self, progress_text=None, measure=True):
        """Report progress.

        Args:
            progress_text: what was just completed (shown in the report), or None to keep the previous text.
            measure: count the interval since the previous tick towards the slowest one (False for intervals that
                are slow for a known reason, such as the first step that traces the graph; an interval given an
                allowance is never counted).
        """
        now = time.monotonic()
        with self._lock:
            if measure and not self.allowance:
                self.slowest = max(self.slowest, now - self.last_tick)
            self.last_tick = now
            self.allowance = 0.0
            if progress_text is not None:
                self.progress = str(progress_text)

    def __enter__(self):
        if self.timeout_seconds > 0:
            self.last_tick = time.monotonic()
            self._thread = threading.Thread(target=self._watch, name="watchdog", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exception):
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        return False

    def _watch(self):
        interval = max(0.05, min(1.0, self.timeout_seconds / 10))
        while not self._stop.wait(interval):
            with self._lock:
                idle = time.monotonic() - self.last_tick
                limit = self.limit
                progress = self.progress
            if idle > limit:
                self._fire(idle, limit, progress)

    def _fire(self, idle, limit, progress):
        message = (f"error: no {self.what} progress for {idle:.0f} s (limit {limit:.0f} s); last progress: "
                   f"{progress}. The stack of every thread follows. Rerun the same command to resume.\n")
        sys.stdout.flush()
        streams = [sys.stderr]
        log = None
        if self.log_path:
            try:
                os.makedirs(os.path.dirname(os.path.abspath(self.log_path)), exist_ok=True)
                log = open(self.log_path, "a")
                log.write(time.strftime("%Y-%m-%d %H:%M:%S ") + message)
                log.flush()
                streams.append(log)
            except OSError as error:
                sys.stderr.write(f"warning: cannot write {self.log_path}: {error.strerror}\n")
        sys.stderr.write(message)
        sys.stderr.flush()
        for stream in streams:
            faulthandler.dump_traceback(file=stream, all_threads=True)
            stream.flush()
        if log is not None:
            log.close()
            sys.stderr.write(f"(also written to {self.log_path})\n")
            sys.stderr.flush()
        os._exit(EXIT_CODE)
