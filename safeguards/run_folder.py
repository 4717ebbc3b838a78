"""The --out_dir of a training run: checked before any work, locked to one run, its files listed without globbing.

- check_writable: the folder is created (or is a folder) and a file can be written in it; else one clear line.
- RunLock: fcntl.flock on OUT_DIR/.lock (the kernel drops it when the process ends, also on kill -9); a second
  run on the same folder gets one line naming the first (pid, host, start time).
- private_temp_dir: OUT_DIR/.tmp as the process's temporary folder (Keras writes one while saving), emptied at
  the start of every run, so a killed save leaves nothing in the system's temporary folder.
- checkpoint_path, list_checkpoints (epoch ends and mid-epoch positions), remove_partials, read_json: os.scandir / os.walk only, so a path holding [, ], * or ? is a
  path, never a pattern.

Usage:
    from safeguards import run_folder
    run_folder.check_writable("runs/demo")
    with run_folder.RunLock("runs/demo"):
        ...
"""

import collections
import contextlib
import errno
import fcntl
import json
import os
import re
import shutil
import socket
import tempfile
import time

# checkpoints/epoch_0003.keras: after 3 epochs; epoch_0003_step_00000005.keras: 5 steps into the 4th epoch.
CHECKPOINT_PATTERN = re.compile(r"^epoch_(\d{4,})(?:_step_(\d{8,}))?\.keras$")
Checkpoint = collections.namedtuple("Checkpoint", ["epochs", "steps", "path"])
LOCK_NAME = ".lock"
TEMPORARY_NAME = ".tmp"


def describe(error):
    """One line for an OSError: its message, and what a full disk means."""
    text = error.strerror or str(error)
    if error.errno == errno.ENOSPC:
        text += " (the disk is full)"
    return text


def check_writable(out_dir):
    """Create out_dir if needed and write a probe file in it.

    Raises:
        SystemExit: one `error:` line when out_dir is a file or cannot be created or written to.
    """
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise SystemExit(f"error: --out_dir {out_dir} is a file, not a folder")
    try:
        os.makedirs(out_dir, exist_ok=True)
        handle, probe = tempfile.mkstemp(prefix=".write-test-", dir=out_dir)
        try:
            os.write(handle, b"x")
        finally:
            os.close(handle)
            os.remove(probe)
    except OSError as error:
        raise SystemExit(f"error: cannot write in --out_dir {out_dir}: {describe(error)}")


def check_free_space(out_dir, needed_bytes):
    """Refuse to start when out_dir's disk cannot hold needed_bytes (say, the next checkpoint and its temporary copy).

    Raises:
        SystemExit: one `error:` line giving what is free and what is needed.
    """
    free = shutil.disk_usage(out_dir).free
    if free < needed_bytes:
        raise SystemExit(f"error: only {free / 1e6:.0f} MB free in --out_dir {out_dir}; saving a checkpoint needs "
                         f"about {needed_bytes / 1e6:.0f} MB: free some space or use another --out_dir")


class RunLock:
    """An exclusive lock on out_dir held for the life of the process (or of the with block).

    Args:
        out_dir: the run's folder (it must exist).
    """

    def __init__(self, out_dir):
        self.path = os.path.join(out_dir, LOCK_NAME)
        self.handle = None

    def __enter__(self):
        self.handle = open(self.path, "a+")
        try:
            fcntl.flock(self.handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.handle.seek(0)
            holder = self.handle.read().strip() or "another process"
            self.handle.close()
            raise SystemExit(f"error: {os.path.dirname(self.path)} is in use by a running train.py ({holder}); "
                             "wait for it to end or use another --out_dir") from None
        self.handle.seek(0)
        self.handle.truncate()
        started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
        self.handle.write(f"pid {os.getpid()} on {socket.gethostname()}, started {started}\n")
        self.handle.flush()
        return self

    def __exit__(self, *exception):
        if self.handle is not None:
            self.handle.close()  # closing drops the lock; the file stays (removing it would race a new run)
        return False


@contextlib.contextmanager
def private_temp_dir(out_dir):
    """Empty OUT_DIR/.tmp and make it the process's temporary folder (tempfile and child processes) while the
    context lasts; then remove it and give the process its previous temporary folder back.

    Yields:
        The folder.
    """
    folder = os.path.join(out_dir, TEMPORARY_NAME)
    shutil.rmtree(folder, ignore_errors=True)  # what a killed save left
    os.makedirs(folder, exist_ok=True)
    previous_tempdir, previous_environment = tempfile.tempdir, os.environ.get("TMPDIR")
    tempfile.tempdir = folder
    os.environ["TMPDIR"] = folder
    try:
        yield folder
    finally:
        tempfile.tempdir = previous_tempdir
        if previous_environment is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = previous_environment
        shutil.rmtree(folder, ignore_errors=True)


def checkpoint_path(out_dir, epochs, steps=0):
    """OUT_DIR/checkpoints/epoch_NNNN.keras after `epochs` epochs, or epoch_NNNN_step_SSSSSSSS.keras `steps` steps
    into the next one."""
    name = f"epoch_{epochs:04d}" + (f"_step_{steps:08d}" if steps else "") + ".keras"
    return os.path.join(out_dir, "checkpoints", name)


def list_checkpoints(out_dir):
    """Checkpoint(epochs, steps, path) of the checkpoints in OUT_DIR/checkpoints, newest first.

    epochs is the number of finished epochs, steps the steps done in the next one (0 for an epoch's end).
    """
    folder = os.path.join(out_dir, "checkpoints")
    if not os.path.isdir(folder):
        return []
    found = []
    with os.scandir(folder) as entries:
        for entry in entries:
            match = CHECKPOINT_PATTERN.match(entry.name)
            if match and entry.is_file():
                found.append(Checkpoint(int(match.group(1)), int(match.group(2) or 0), entry.path))
    return sorted(found, reverse=True)


def remove_partials(out_dir):
    """Delete the .NAME.partial-PID files a run killed while writing left (see atomic.py)."""
    for folder, _, files in os.walk(out_dir):
        for name in files:
            if name.startswith(".") and ".partial-" in name:
                os.remove(os.path.join(folder, name))


def read_json(path, what):
    """The parsed json file at path, or None when it does not exist.

    Raises:
        SystemExit: one `error:` line when it cannot be read or parsed.
    """
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise SystemExit(f"error: {path} ({what}) is damaged: {type(error).__name__}: {error}; fix or delete it")
