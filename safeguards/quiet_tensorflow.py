"""Import TensorFlow without its C++ start-up lines on the terminal; every other line still gets through.

TensorFlow's shared libraries log while they load, before absl's logging is initialised, and absl writes
everything logged before absl::InitializeLog() to stderr whatever TF_CPP_MIN_LOG_LEVEL says (checked with
TensorFlow 2.21: levels 1, 2 and 3 all still print them; no other variable reaches them). On a machine without
a GPU they are:
    WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
    I... port.cc:...] oneDNN custom operations are on. You may see slightly different numerical results ...
    I... cudart_stub.cc:...] Could not find cuda drivers on your machine, GPU will not be used.
    I... cpu_feature_guard.cc:...] This TensorFlow binary is optimized to use available CPU instructions ...
    To enable the following instructions: AVX2 AVX512F ..., in other operations, rebuild TensorFlow with ...
    E... cuda_platform.cc:...] failed call to cuInit: ... (written when TensorFlow first looks for a GPU)
(the first three twice: two of TensorFlow's libraries print them). So file descriptor 2 goes to a pipe while
`import tensorflow` and the first look for a GPU run; a forked reader passes every line that is not one of
these to the real stderr as it comes, so a genuine error printed during the import still shows, even when the
import then kills the process. The cuInit line is only dropped after TensorFlow said it found no CUDA driver.
TF_CPP_MIN_LOG_LEVEL defaults to 1 (TensorFlow's C++ INFO lines off, its warnings and errors on); a value set by
the caller is kept. Python's warnings and errors are not touched. LVS_SHOW_TF_STARTUP=1 shows everything.

Before the import it also turns oneDNN on where TensorFlow would leave it off and it is faster
(safeguards/cpu_features.py): TensorFlow 2.21 turns it on by itself only on CPUs with AVX512_VNNI, AVX512_BF16,
AVX_VNNI or AMX, yet on an AVX2/FMA CPU without them the float32 train step at the paper's shapes (batch 8) took
10.43 s with TensorFlow's default and 9.38 s with TF_ENABLE_ONEDNN_OPTS=1 (issue 21). A TF_ENABLE_ONEDNN_OPTS the
user set, 0 included, is kept; ONEDNN_TURNED_ON says whether this module set it.

Usage: import this module before anything imports tensorflow or keras (where a script imports torch, after
torch: the other order segfaults in torchvision's import). Importing it imports TensorFlow:
    import safeguards.quiet_tensorflow  # noqa: F401  (first: TensorFlow's start-up lines off the terminal)
    import keras
    import tensorflow as tf
quiet_startup_lines() is the filter alone, a context manager for any other noisy import.
"""

import contextlib
import os
import re
import signal
import sys
import time

from safeguards import cpu_features

SHOW_VARIABLE = "LVS_SHOW_TF_STARTUP"
# absl / TensorFlow log line: severity, MMDD, time, thread id, file:line] message
LOG_LINE = re.compile(r"^[IWEF]\d{4} [\d:.]+ +\d+ (?P<file>[\w.-]+):\d+\] (?P<message>.*)$")
ABSL_BEFORE_INIT = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
# (file, start of the message) of each start-up line
STARTUP_MESSAGES = (
    ("port.cc", "oneDNN custom operations are "),
    ("cudart_stub.cc", "Could not find cuda drivers on your machine, GPU will not be used."),
    ("cpu_feature_guard.cc", "This TensorFlow binary is optimized to use available CPU instructions"),
)
NO_DRIVER = "cudart_stub.cc"
CUINIT = re.compile(r"^failed call to cuInit: ")
CPU_FEATURES_CONTINUATION = re.compile(r"^To enable the following instructions: .*rebuild TensorFlow with the "
                                       r"appropriate compiler flags\.$")
WAIT_SECONDS = 10  # for the reader to pass on the last lines once the import is done
ONEDNN_TURNED_ON = False  # whether import_tensorflow set TF_ENABLE_ONEDNN_OPTS=1 (the user had not set it)


class StartupFilter:
    """Feed it stderr's lines in order; keep(line) says whether one is not a TensorFlow start-up line."""

    def __init__(self):
        self.no_cuda_driver = False
        self.after_cpu_features = False

    def keep(self, line):
        text = line.rstrip("\r\n")
        after_cpu_features, self.after_cpu_features = self.after_cpu_features, False
        if text == ABSL_BEFORE_INIT:
            return False
        if after_cpu_features and CPU_FEATURES_CONTINUATION.match(text):
            return False
        match = LOG_LINE.match(text)
        if match is None:
            return True
        source, message = match.group("file"), match.group("message")
        if self.no_cuda_driver and source.startswith("cuda_") and CUINIT.match(message):
            return False
        for known_file, known_start in STARTUP_MESSAGES:
            if source == known_file and message.startswith(known_start):
                self.no_cuda_driver |= source == NO_DRIVER
                self.after_cpu_features = source == "cpu_feature_guard.cc"
                return False
        return True


def _forward(read_end, stderr):
    """The reader: every line from read_end that StartupFilter keeps, written to stderr, until end of file."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C in the import: still pass on what was written
    startup = StartupFilter()
    pending = b""
    while True:
        chunk = os.read(read_end, 65536)
        if not chunk:
            break
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            if startup.keep(line.decode("utf-8", "replace")):
                os.write(stderr, line + b"\n")
    if pending and startup.keep(pending.decode("utf-8", "replace")):
        os.write(stderr, pending)


@contextlib.contextmanager
def quiet_startup_lines():
    """Inside, file descriptor 2 (C++'s and Python's stderr) passes through StartupFilter."""
    if os.environ.get(SHOW_VARIABLE, "") not in ("", "0") or not hasattr(os, "fork"):
        yield
        return
    sys.stderr.flush()
    read_end, write_end = os.pipe()
    stderr = os.dup(2)
    reader = os.fork()
    if reader == 0:
        status = 0
        try:
            os.close(write_end)
            _forward(read_end, stderr)
        except BaseException:  # noqa: BLE001  (the reader must end here, never run the parent's code)
            status = 1
        finally:
            os._exit(status)
    os.close(read_end)
    os.dup2(write_end, 2)
    os.close(write_end)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(stderr, 2)
        os.close(stderr)
        deadline = time.monotonic() + WAIT_SECONDS
        # A process started inside could still hold the pipe: then stop waiting (the reader ends when it does).
        while os.waitpid(reader, os.WNOHANG) == (0, 0) and time.monotonic() < deadline:
            time.sleep(0.005)


def turn_on_onednn(environment=os.environ):
    """Set TF_ENABLE_ONEDNN_OPTS=1 where cpu_features.onednn_setting says so (before TensorFlow reads it).

    Returns:
        Whether it was set.
    """
    value = cpu_features.onednn_setting(cpu_features.cpu_flags(), environment)
    if value is not None:
        environment[cpu_features.ONEDNN_VARIABLE] = value
    return value is not None


def import_tensorflow():
    """tensorflow, imported (and asked for GPUs, which writes the cuInit line) inside quiet_startup_lines(), with
    oneDNN turned on where it is faster and TensorFlow would leave it off (turn_on_onednn)."""
    global ONEDNN_TURNED_ON
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    ONEDNN_TURNED_ON = turn_on_onednn()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
    with quiet_startup_lines():
        import tensorflow

        tensorflow.config.list_physical_devices("GPU")
    return tensorflow


import_tensorflow()
