"""train.py when things go wrong: divergence, resumed flags, odd paths, two runs, undecodable data, bad folders."""

import json
import os
import resource
import signal
import subprocess
import sys
import textwrap

import pytest

from test_train import PROJECT, TINY, read_rows, run
from test_train import pairs_dir  # noqa: F401  (fixture)


def last_line(result):
    return result.stderr.strip().splitlines()[-1]


def test_divergence_stops_with_one_line_and_keeps_the_last_good_checkpoint(pairs_dir, tmp_path):
    """A resumed run applies a new --lr (and records it); a far too large one diverges: one line, epoch 1 kept.

    The folder's name holds glob characters: it must still resume (paths are never patterns)."""
    out = tmp_path / "runs" / "a[1]*?"
    result = run(["--data_dir", str(pairs_dir), "--out_dir", str(out), "--epochs", "1", *TINY])
    assert result.returncode == 0, result.stderr[-2000:]
    first_model = (out / "model.keras").read_bytes()
    result = run(["--data_dir", str(pairs_dir), "--out_dir", str(out), "--epochs", "3", *TINY, "--lr", "1e30",
                  "--weight_decay", "0.001"])
    assert result.returncode == 1, result.stderr[-2000:]
    assert "epoch 1 of 3 done" in result.stdout
    assert "note: --lr changed on resume after epoch 1: 0.0001 -> 1e+30" in result.stdout
    assert "note: --weight_decay changed on resume after epoch 1: 0.0 -> 0.001" in result.stdout
    line = last_line(result)
    assert line.startswith("error: ") and "diverged" in line and "epoch_0001.keras" in line, line
    assert "Traceback" not in result.stderr
    assert sorted(path.name for path in (out / "checkpoints").iterdir()) == ["epoch_0001.keras"]
    assert (out / "model.keras").read_bytes() == first_model  # not overwritten by the diverged model
    assert [row["epoch"] for row in read_rows(out / "log.csv")] == ["1"]
    saved = json.loads((out / "args.json").read_text())
    assert saved["lr"] == 1e30 and saved["weight_decay"] == 0.001  # what actually ran
    assert saved["changed_on_resume"] == [{"after_epoch": 1, "lr": [0.0001, 1e30], "weight_decay": [0.0, 0.001]}]

    sys.path.insert(0, str(PROJECT))
    from model import load_checkpoint

    model = load_checkpoint(str(out / "checkpoints" / "epoch_0001.keras"), compile=True)  # finite, usable
    assert int(model.optimizer.iterations) == 2

    result = run(["--data_dir", str(pairs_dir), "--out_dir", str(out), "--epochs", "2", *TINY, "--adamw"])
    assert result.returncode == 1 and "--adamw False (now True)" in last_line(result)


def test_a_second_run_on_a_locked_out_dir_names_the_first(pairs_dir, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, time
            sys.path.insert(0, {str(PROJECT)!r})
            from safeguards.run_folder import RunLock
            with RunLock({str(out)!r}):
                print("locked", flush=True)
                time.sleep(600)
        """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        result = run(["--data_dir", str(pairs_dir), "--out_dir", str(out), "--epochs", "0", *TINY])
        assert result.returncode == 1
        line = last_line(result)
        assert line.startswith("error: ") and f"pid {holder.pid} on " in line and "started" in line, line
        assert "training on" not in result.stdout
    finally:
        holder.send_signal(signal.SIGKILL)  # the kernel drops the lock of a killed process
        holder.wait()
    (out / ".tmp").mkdir()
    (out / ".tmp" / "tmp_keras_leftover").mkdir()  # what a killed save leaves
    result = run(["--data_dir", str(pairs_dir), "--out_dir", str(out), "--epochs", "0", *TINY])
    assert result.returncode == 0, result.stderr[-2000:]
    assert (out / "model.keras").is_file() and not (out / ".tmp").exists()


def test_an_epoch_in_which_nothing_decodes_stops_and_leaves_the_folder_resumable(pairs_dir, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    for path in sorted(pairs_dir.iterdir()):
        data = path.read_bytes()
        # frames whose headers are fine but whose pixels are cut off: they pass the header check, then fail to decode
        (broken / path.name).write_bytes(data[: len(data) // 2] if path.suffix == ".jpg" else data)
    out = tmp_path / "run"
    result = run(["--data_dir", str(broken), "--out_dir", str(out), "--epochs", "2", *TINY])
    assert result.returncode == 1, result.stderr[-2000:]
    line = last_line(result)
    assert line.startswith("error: no training step ran in epoch 1") and "no checkpoint was written" in line, line
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    counted = [index for index, text in enumerate(lines) if "file(s) failed to decode" in text]
    assert counted, result.stderr[-2000:]
    count = int(lines[counted[0]].split()[0])
    listed = [text for text in lines[counted[0] + 1:] if text.startswith("  ")]
    assert count == len(listed) == 8  # the count matches the list: each broken frame once
    assert not (out / "checkpoints").exists() or not list((out / "checkpoints").iterdir())
    assert not (out / "history.json").exists() and not (out / "model.keras").exists()

    result = run(["--data_dir", str(pairs_dir), "--out_dir", str(out), "--epochs", "1", *TINY])
    assert result.returncode == 0, result.stderr[-2000:]  # the same folder, now with data that decodes


def test_old_history_rows_without_a_loss_are_read_and_drawn(tmp_path):
    """Earlier versions wrote a row without a loss for an undecodable epoch; a resumed run must not fail on it."""
    sys.path.insert(0, str(PROJECT))
    import train

    (tmp_path / "history.json").write_text(json.dumps([{"epoch": 1}, {"epoch": 2, "loss": 1.5}, {"loss": 2.0},
                                                       {"epoch": 3, "loss": 1.2}]))
    rows = train.read_history(str(tmp_path), 2)
    assert rows == [{"epoch": 1}, {"epoch": 2, "loss": 1.5}]
    train.plot_loss_curve(rows, str(tmp_path / "loss_curve.png"))
    assert (tmp_path / "loss_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (tmp_path / "history.json").write_text("[{")
    assert train.read_history(str(tmp_path), 2) == []  # damaged: a warning and a new history


def limit_file_size(size):
    """preexec_fn: writes past `size` bytes fail with EFBIG (as on a full disk) instead of killing the process."""
    def apply():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
    return apply


def run_limited(arguments, size):
    environment = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, str(PROJECT / "train.py"), *arguments], cwd=PROJECT, capture_output=True,
                          text=True, timeout=300, env=environment, preexec_fn=limit_file_size(size))


def test_a_failed_save_keeps_the_previous_checkpoint(pairs_dir, tmp_path):
    out = tmp_path / "run"
    result = run(["--data_dir", str(pairs_dir), "--out_dir", str(out), "--epochs", "1", *TINY])
    assert result.returncode == 0, result.stderr[-2000:]
    good = (out / "checkpoints" / "epoch_0001.keras").read_bytes()
    result = run_limited(["--data_dir", str(pairs_dir), "--out_dir", str(out), "--epochs", "2", *TINY], 1 << 20)
    assert result.returncode == 1
    line = last_line(result)
    assert line.startswith("error: could not save") and "epoch_0002.keras" in line and "File too large" in line, line
    assert "Traceback" not in result.stderr
    assert sorted(path.name for path in (out / "checkpoints").iterdir()) == ["epoch_0001.keras"]
    assert (out / "checkpoints" / "epoch_0001.keras").read_bytes() == good


def test_bad_out_dirs_and_inputs_are_one_line_before_any_work(pairs_dir, tmp_path):
    arguments = ["--data_dir", str(pairs_dir), "--epochs", "0", *TINY]
    a_file = tmp_path / "file"
    a_file.write_text("x")
    result = run([*arguments, "--out_dir", str(a_file)])
    assert result.returncode == 1 and last_line(result) == f"error: --out_dir {a_file} is a file, not a folder"

    result = run([*arguments, "--out_dir", str(a_file / "run")])  # cannot be created
    assert result.returncode == 1
    assert last_line(result) == f"error: cannot write in --out_dir {a_file / 'run'}: Not a directory", last_line(result)

    result = run([*arguments, "--out_dir", str(tmp_path / "out"), "--val_dir", str(tmp_path / "missing")])
    assert result.returncode == 1 and last_line(result).startswith("error:") and "missing" in last_line(result)
    assert "training on" not in result.stdout

    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / "args.json").write_text('{"lr": 0.0001, ')
    result = run([*arguments, "--out_dir", str(damaged)])
    assert result.returncode == 1 and "args.json (the run's saved flags) is damaged" in last_line(result)
    assert "Traceback" not in result.stderr


def test_too_little_free_space_is_one_line_before_training(tmp_path):
    sys.path.insert(0, str(PROJECT))
    import shutil

    from safeguards.run_folder import check_free_space

    free = shutil.disk_usage(tmp_path).free
    check_free_space(str(tmp_path), free // 2)  # enough: nothing happens
    with pytest.raises(SystemExit, match=r"^error: only \d+ MB free in --out_dir .*needs about \d+ MB"):
        check_free_space(str(tmp_path), free + 10**12)


def test_private_temp_dir_gives_the_process_its_temporary_folder_back(tmp_path):
    # train.main runs in-process in tests and notebooks: after it, tempfile must not point into a deleted folder.
    import tempfile

    from safeguards import run_folder

    before_tempdir, before_environment = tempfile.tempdir, os.environ.get("TMPDIR")
    with run_folder.private_temp_dir(str(tmp_path)) as folder:
        assert folder == str(tmp_path / ".tmp") and tempfile.gettempdir() == folder
        assert os.environ["TMPDIR"] == folder
        tempfile.mkdtemp()  # Keras' save makes one of these
    assert (tempfile.tempdir, os.environ.get("TMPDIR")) == (before_tempdir, before_environment)
    assert not (tmp_path / ".tmp").exists()
    tempfile.mkdtemp()  # the restored folder works


def onednn_in_use():
    """Whether TensorFlow runs its CPU ops on oneDNN here (IsMklEnabled()): on by default on x86 CPUs with AVX2/FMA
    or better (TensorFlow's own rule, or safeguards/quiet_tensorflow.py where TensorFlow would leave it off), off
    with TF_ENABLE_ONEDNN_OPTS=0. The test process has the children's environment."""
    import tensorflow  # noqa: F401  (conftest imported torch first)
    from tensorflow.python.util import _pywrap_util_port

    return bool(_pywrap_util_port.IsMklEnabled())


# TensorFlow's own caps on its CPU allocator, each below the weights and Adam's moments (50 MiB):
OUT_OF_MEMORY_CAPS = {
    # oneDNN's allocator (MklCPUAllocator), in use only when oneDNN is
    "onednn_allocator": {"TF_MKL_ALLOC_MAX_BYTES": str(50 * 2**20)},
    # the default CPU allocator as a BFC allocator with a limit: works whether or not oneDNN is in use
    "default_cpu_allocator": {"TF_CPU_ALLOCATOR_USE_BFC": "true", "TF_CPU_BFC_MEM_LIMIT_IN_MB": "50"},
}


@pytest.mark.parametrize("allocator", sorted(OUT_OF_MEMORY_CAPS))
def test_running_out_of_memory_is_one_line(pairs_dir, tmp_path, allocator):
    """An allocation TensorFlow cannot make (its CPU allocator capped below the weights and Adam's moments with
    TensorFlow's own variables) ends in one line that says what to change, not a traceback."""
    if allocator == "onednn_allocator" and not onednn_in_use():
        pytest.skip("needs oneDNN in use (IsMklEnabled(): oneDNN on, not TF_ENABLE_ONEDNN_OPTS=0): "
                    "TF_MKL_ALLOC_MAX_BYTES caps oneDNN's allocator only; default_cpu_allocator tests this path")
    environment = {**os.environ, **OUT_OF_MEMORY_CAPS[allocator]}
    result = subprocess.run([sys.executable, str(PROJECT / "train.py"), "--data_dir", str(pairs_dir), "--out_dir",
                             str(tmp_path / "run"), "--epochs", "1", *TINY], cwd=PROJECT, capture_output=True,
                            text=True, timeout=300, env=environment)
    assert result.returncode == 1, result.stderr[-2000:]
    line = last_line(result)
    assert line.startswith("error: out of memory") and "--batch_size" in line and "--remat" in line, line
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run" / "model.keras").exists()
