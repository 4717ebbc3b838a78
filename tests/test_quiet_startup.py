"""The scripts start quietly: TensorFlow's C++ start-up lines (absl, oneDNN, CUDA probing, CPU features) never reach
stderr, while argparse's errors, our warnings and any other line written during TensorFlow's import still do.

The scripts run as a user runs them: without TF_CPP_MIN_LOG_LEVEL (which does not reach these lines anyway).
Passes with oneDNN on (the scripts' default on x86 CPUs with AVX2/FMA or better) and off (TF_ENABLE_ONEDNN_OPTS=0).
"""

import os
import subprocess
import sys
import textwrap

import pytest

from test_train import PROJECT

# A piece of each start-up line (safeguards/quiet_tensorflow.py lists them).
STARTUP_MARKERS = ("absl::InitializeLog()", "oneDNN custom operations", "Could not find cuda drivers",
                   "This TensorFlow binary is optimized", "To enable the following instructions",
                   "failed call to cuInit")


def run_script(arguments, onednn=None):
    environment = {name: value for name, value in os.environ.items()
                   if name not in ("TF_CPP_MIN_LOG_LEVEL", "LVS_SHOW_TF_STARTUP")}
    if onednn is not None:
        environment["TF_ENABLE_ONEDNN_OPTS"] = onednn
    return subprocess.run([sys.executable, *arguments], cwd=PROJECT, capture_output=True, text=True, timeout=300,
                          env=environment)


def startup_lines(stderr):
    return [line for line in stderr.splitlines() if any(marker in line for marker in STARTUP_MARKERS)]


@pytest.mark.parametrize("onednn", [None, "0"], ids=["onednn_default", "onednn_off"])
def test_help_prints_no_startup_line(onednn):
    for script in ("model.py", "train.py"):
        result = run_script([script, "--help"], onednn)
        assert result.returncode == 0, result.stderr[-2000:]
        assert "usage:" in result.stdout
        assert startup_lines(result.stderr) == [], result.stderr


def test_a_real_command_prints_no_startup_line_and_a_bad_argument_still_shows(tmp_path):
    result = run_script(["evaluate.py", "--baseline", "centre", "--data_dir", "data/demo/test", "--annotations",
                         "data/demo/test_annotations.json", "--out_dir", str(tmp_path / "evaluation")])
    assert result.returncode == 0, result.stderr[-2000:]
    assert startup_lines(result.stderr) == [], result.stderr
    assert "cIoU@0.5" in result.stdout.strip().splitlines()[-1]

    result = run_script(["train.py", "--batch_size", "0"])
    assert result.returncode == 2
    assert startup_lines(result.stderr) == [], result.stderr
    assert "train.py: error: argument --batch_size: must be a positive integer, got 0" in result.stderr


def test_lines_written_during_the_import_get_through_even_when_it_kills_the_process():
    """What the filter drops and keeps, through a real pipe and fork: a fatal line before abort() still shows."""
    source = textwrap.dedent("""
        import os, sys, warnings
        sys.path.insert(0, os.getcwd())
        from safeguards.quiet_tensorflow import quiet_startup_lines
        with quiet_startup_lines():
            os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\\n")
            os.write(2, b"I0000 00:00:1796348051.410786    9450 cudart_stub.cc:31] Could not find cuda drivers on "
                        b"your machine, GPU will not be used.\\n")
            warnings.warn("a warning of ours")
            os.write(2, b"E0000 00:00:1796348051.410786    9450 cuda_platform.cc:52] failed call to cuInit: "
                        b"INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)\\n")
            os.write(2, b"F0000 00:00:1796348051.410786    9450 cpu_feature_guard.cc:99] The TensorFlow library was "
                        b"compiled to use AVX512F instructions, but these are not available on your machine.\\n")
            os.abort()
    """)
    result = run_script(["-c", source])
    assert result.returncode != 0  # killed by SIGABRT
    assert startup_lines(result.stderr) == [], result.stderr
    assert "UserWarning: a warning of ours" in result.stderr
    assert "F0000 00:00:1796348051.410786    9450 cpu_feature_guard.cc:99] The TensorFlow library was compiled to " \
           "use AVX512F instructions, but these are not available on your machine." in result.stderr


def test_the_filter_drops_only_the_startup_lines():
    from safeguards.quiet_tensorflow import StartupFilter

    prefix = "I0000 00:00:1796348051.474938    9450 "
    startup = StartupFilter()
    lines = [
        ("WARNING: All log messages before absl::InitializeLog() is called are written to STDERR", False),
        (prefix + "port.cc:153] oneDNN custom operations are on. You may see slightly different numerical results", False),
        # cuInit failing on a machine with a CUDA driver is a real error
        ("E0000 00:00:1.2 9450 cuda_platform.cc:52] failed call to cuInit: CUDA_ERROR_NO_DEVICE", True),
        (prefix + "cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will not be used.", False),
        (prefix + "cpu_feature_guard.cc:227] This TensorFlow binary is optimized to use available CPU instructions in "
                  "performance-critical operations.", False),
        ("To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow with the appropriate "
         "compiler flags.", False),
        ("To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow with the appropriate "
         "compiler flags.", True),  # only right after the cpu_feature_guard line
        ("E0000 00:00:1.2 9450 cuda_platform.cc:52] failed call to cuInit: UNKNOWN ERROR (303)", False),
        ("W0000 00:00:1.2 9450 port.cc:160] something else from port.cc", True),
        ("E0000 00:00:1.2 9450 some_kernel.cc:1] a real error", True),
        ("error: our own message", True),
        ("", True),
    ]
    assert [startup.keep(line) for line, _ in lines] == [keep for _, keep in lines]
