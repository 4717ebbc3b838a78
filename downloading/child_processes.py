"""Child processes (ffmpeg, ffprobe, yt-dlp) that end in time and never outlive the run that started them.

run_child starts a program in its own process group and waits at most `timeout` seconds for it, also stopping
early when a threading.Event is set; either way the whole group is killed (yt-dlp together with the ffmpeg it
started), so a server that trickles one byte every few seconds cannot hold a worker for ever.

OrphanWatcher covers the case no Python code can: the run itself killed with kill -9. It starts a tiny separate
process that holds one end of a pipe; when the run ends (however it ends, the kernel closes the pipe), the watcher
kills every process whose environment carries the run's token, which run_child puts into every child's
environment (grandchildren inherit it). It can also hold a file descriptor open until the children are gone (the
output folder's lock, so that a rerun never starts beside the leftovers of a killed run). Linux only (it reads
/proc); elsewhere the watcher does nothing and run_child's time limit still applies.

Usage:
    with OrphanWatcher(hold_fd=lock.fileno()):
        completed = run_child(["ffmpeg", "-version"], timeout=60)   # subprocess.CompletedProcess
"""

import os
import signal
import subprocess
import sys
import threading
import time
import uuid

TOKEN_VARIABLE = "LVS_KERAS_RUN_TOKEN"
POLL_SECONDS = 0.5  # how often a waiting worker looks at its stop event
# The watcher: wait for the pipe to close, then kill the token's processes until none is left (bounded rounds).
WATCHER_SOURCE = r"""
import os, signal, sys, time
signal.signal(signal.SIGINT, signal.SIG_IGN)
token = sys.argv[1].encode()
sys.stdin.buffer.read()
me = os.getpid()
for _ in range(100):
    found = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            with open("/proc/" + entry + "/environ", "rb") as handle:
                if token not in handle.read().split(b"\0"):
                    continue
            os.kill(int(entry), signal.SIGKILL)
            found += 1
        except OSError:
            pass
    if not found:
        break
    time.sleep(0.05)
"""

_token_lock = threading.Lock()
_token = None  # "LVS_KERAS_RUN_TOKEN=<hex>" while an OrphanWatcher is active


class ChildStopped(Exception):
    """The run is stopping (its stop event was set) and the child was killed."""


def child_environment():
    """os.environ plus the active run token (when an OrphanWatcher is running)."""
    environment = dict(os.environ)
    with _token_lock:
        token = _token
    if token is not None:
        name, value = token.split("=", 1)
        environment[name] = value
    return environment


def kill_group(process):
    """Kill a child started by run_child and everything in its process group, then reap it."""
    try:
        if os.name == "posix":
            os.killpg(process.pid, signal.SIGKILL)
        else:
            process.kill()
    except (ProcessLookupError, PermissionError):
        pass
    try:
        process.communicate(timeout=30)
    except subprocess.TimeoutExpired:  # a child stuck in the kernel (e.g. on a dead NFS mount): leave it
        pass


def run_child(arguments, timeout, stop_event=None):
    """Run a program (argument list, never a shell string) with a hard time limit.

    Args:
        arguments: the program and its arguments.
        timeout: seconds from start after which the child's whole process group is killed.
        stop_event: optional threading.Event; when set, the child is killed at once.

    Returns:
        subprocess.CompletedProcess with text stdout and stderr (undecodable bytes replaced).

    Raises:
        subprocess.TimeoutExpired: the time limit was reached (the child is dead).
        ChildStopped: the stop event was set (the child is dead).
        OSError: the program could not be started.
    """
    process = subprocess.Popen(arguments, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, errors="replace", env=child_environment(),
                               start_new_session=os.name == "posix")
    deadline = time.monotonic() + timeout
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise subprocess.TimeoutExpired(arguments, timeout)
            if stop_event is not None and stop_event.is_set():
                raise ChildStopped(f"{arguments[0]} stopped")
            try:
                stdout, stderr = process.communicate(timeout=min(remaining, POLL_SECONDS))
            except subprocess.TimeoutExpired:
                continue
            return subprocess.CompletedProcess(arguments, process.returncode, stdout, stderr)
    finally:
        if process.returncode is None:
            kill_group(process)


class OrphanWatcher:
    """Context manager: while active, every run_child child is killed when this process ends, even by kill -9.

    Args:
        hold_fd: optional file descriptor the watcher keeps open until the children are dead (e.g. a lock).
    """

    def __init__(self, hold_fd=None):
        self.hold_fd = hold_fd
        self.process = None

    def __enter__(self):
        global _token
        if not os.path.isdir("/proc"):
            return self
        token = f"{TOKEN_VARIABLE}={uuid.uuid4().hex}"
        # its own session: a kill of the run's process group (a crash of the shell job) leaves the watcher alive
        self.process = subprocess.Popen([sys.executable, "-c", WATCHER_SOURCE, token], stdin=subprocess.PIPE,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                        pass_fds=() if self.hold_fd is None else (self.hold_fd,),
                                        start_new_session=True)
        with _token_lock:
            _token = token
        return self

    def __exit__(self, *exception):
        global _token
        if self.process is None:
            return False
        with _token_lock:
            _token = None
        self.process.stdin.close()  # the watcher kills what is left (normally nothing) and exits
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        return False
