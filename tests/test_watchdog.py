"""watchdog.Watchdog: a tf.data pipeline made to block on purpose ends the process with every thread's stack."""

import subprocess
import sys
import textwrap
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]

STALLING_PIPELINE = textwrap.dedent("""
    import sys, threading
    sys.path.insert(0, {project!r})
    import numpy as np
    import tensorflow as tf
    from safeguards.watchdog import Watchdog

    never = threading.Event()

    def decode_item_that_hangs(value):
        if int(value) == 3:
            never.wait()  # the hang: a decode that never returns
        return np.float32(value)

    dataset = tf.data.Dataset.range(10).map(
        lambda value: tf.numpy_function(decode_item_that_hangs, [value], tf.float32), num_parallel_calls=2)
    with Watchdog({timeout}, log_path={log!r}, what="demo") as watchdog:
        for index, item in enumerate(dataset):
            watchdog.tick(f"item {{index}}")
            print("got", int(item), flush=True)
    print("finished")
""")


def run_script(tmp_path, timeout):
    script = tmp_path / "stall.py"
    log = tmp_path / "stall.log"
    script.write_text(STALLING_PIPELINE.format(project=str(PROJECT), timeout=timeout, log=str(log)))
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=240 if timeout else 10,
                            env={"TF_CPP_MIN_LOG_LEVEL": "3", "PATH": "/usr/bin:/bin"})
    return result, log


def test_a_blocked_pipeline_dumps_every_stack_and_exits_non_zero(tmp_path):
    result, log = run_script(tmp_path, timeout=2)
    assert result.returncode == 3, result.stderr[-2000:]
    assert "finished" not in result.stdout
    assert "got 2" in result.stdout  # the items before the hang came through
    assert "error: no demo progress for" in result.stderr and "last progress: item 2" in result.stderr
    text = log.read_text()
    assert "last progress: item 2" in text
    # the stacks of all threads: the hung decode (a tf.data worker) and the main thread waiting inside TensorFlow
    assert "decode_item_that_hangs" in text and "Thread 0x" in text and "Current thread" in text
    assert "decode_item_that_hangs" in result.stderr


def test_disabled_watchdog_does_not_fire(tmp_path):
    """timeout 0 disables it: the same pipeline then hangs until the test's own (generous) limit."""
    try:
        result, _ = run_script(tmp_path, timeout=0)
    except subprocess.TimeoutExpired:
        pass
    else:
        raise AssertionError(f"the process ended by itself: {result.returncode} {result.stderr[-500:]}")
