"""train.py as a user runs it: outputs, resume, clear errors for bad input (exact resume: test_resume.py)."""

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[1]
DEMO_TRAIN = PROJECT / "data" / "demo" / "train"
TINY = ["--image_size", "32", "--sample_rate", "8000", "--audio_seconds", "0.1", "--image_weights", "none",
        "--batch_size", "4"]


def run(arguments, timeout=300):
    environment = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, str(PROJECT / "train.py"), *arguments], cwd=PROJECT, capture_output=True,
                          text=True, timeout=timeout, env=environment)


@pytest.fixture
def pairs_dir(tmp_path):
    folder = tmp_path / "pairs"
    folder.mkdir()
    for path in sorted(DEMO_TRAIN.iterdir())[:16]:  # 8 demo pairs
        shutil.copy(path, folder / path.name)
    return folder


def read_rows(path):
    with open(path) as handle:
        return list(csv.DictReader(handle))


def test_help_explains_every_flag():
    result = run(["--help"])
    assert result.returncode == 0
    for flag in ("--data_dir", "--out_dir", "--epochs", "--batch_size", "--lr", "--image_size", "--layer4_stride",
                 "--sample_rate", "--audio_seconds", "--eps_pos", "--eps_neg", "--tau", "--temperature",
                 "--no_hard_negatives", "--no_trimap", "--image_weights", "--seed"):
        assert flag in result.stdout
    assert "default: 256" in result.stdout and "default: 0.65" in result.stdout


@pytest.mark.parametrize("arguments,message", [
    (["--batch_size", "0"], "must be a positive integer"),
    (["--layer4_stride", "3"], "invalid choice"),
    (["--eps_pos", "0.3", "--eps_neg", "0.4"], "must be below --eps_pos"),
    (["--image_size", "8"], "image_size must be at least 32"),
    (["--lr", "nan"], "must be a positive number"),
])
def test_bad_flag_values_end_in_one_line(arguments, message):
    result = run(arguments)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


def test_empty_or_missing_folder_is_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    for folder in (tmp_path / "empty", tmp_path / "missing"):
        result = run(["--data_dir", str(folder), "--out_dir", str(tmp_path / "out"), *TINY])
        assert result.returncode == 1
        assert result.stderr.strip().splitlines()[-1].startswith("error:")
        assert "Traceback" not in result.stderr


def test_missing_image_weights_file_is_one_line(pairs_dir, tmp_path):
    arguments = [argument for argument in TINY if argument != "none" and argument != "--image_weights"]
    result = run(["--data_dir", str(pairs_dir), "--out_dir", str(tmp_path / "out"), *arguments,
                  "--image_weights", str(tmp_path / "missing.weights.h5")])
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("error: image weights not found")
    assert "Traceback" not in result.stderr


def test_training_writes_everything_and_resumes(pairs_dir, tmp_path):
    out = tmp_path / "run"
    (pairs_dir / "broken.jpg").write_bytes(b"garbage")
    (pairs_dir / "broken.wav").write_bytes(b"garbage")
    result = run(["--data_dir", str(pairs_dir), "--out_dir", str(out), "--epochs", "1", *TINY])
    assert result.returncode == 0, result.stderr[-2000:]
    assert "broken.jpg: unreadable image" in result.stderr and "1 file(s) skipped, 8 pair(s) usable" in result.stderr
    for name in ("model.keras", "log.csv", "loss_curve.png", "args.json", "history.json", "checkpoints/epoch_0001.keras"):
        assert (out / name).is_file(), name
    assert json.loads((out / "args.json").read_text())["batch_size"] == 4
    assert [row["epoch"] for row in read_rows(out / "log.csv")] == ["1"]

    result = run(["--data_dir", str(pairs_dir), "--out_dir", str(out), "--epochs", "3", *TINY])
    assert result.returncode == 0, result.stderr[-2000:]
    assert "resuming from" in result.stdout and "epoch 1 of 3 done" in result.stdout
    rows = read_rows(out / "log.csv")
    assert [row["epoch"] for row in rows] == ["1", "2", "3"]
    assert all(float(row["loss"]) > 0 for row in rows)
    assert sorted(path.name for path in (out / "checkpoints").iterdir()) == ["epoch_0002.keras", "epoch_0003.keras"]

    sys.path.insert(0, str(PROJECT))
    from model import load_checkpoint

    model = load_checkpoint(str(out / "checkpoints" / "epoch_0003.keras"), compile=True)
    assert int(model.optimizer.iterations) == 3 * 2  # 3 epochs of 8 // 4 steps: the optimizer state was carried on
    assert model.settings == {"image_size": 32, "sample_rate": 8000, "audio_seconds": 0.1}

    result = run(["--data_dir", str(pairs_dir), "--out_dir", str(out), "--epochs", "4", *TINY[:-2], "--batch_size", "4",
                  "--image_size", "64"])
    assert result.returncode == 1 and "--image_size 32 (now 64)" in result.stderr


def test_mixed_precision_trains_with_a_finite_loss_or_refuses_without_native_bfloat16(pairs_dir, tmp_path):
    from safeguards import cpu_features

    out = tmp_path / "run"
    result = run(["--data_dir", str(pairs_dir), "--out_dir", str(out), "--epochs", "1", "--mixed_precision", *TINY])
    if not cpu_features.has_native_bfloat16(cpu_features.cpu_flags()):  # an AVX2 CPU: emulated, ~9x slower
        assert result.returncode == 1
        assert result.stderr.strip().splitlines() == [
            f"error: --mixed_precision: {cpu_features.mixed_precision_problem(cpu_features.cpu_flags(), False)}"]
        assert not out.exists() or not (out / "checkpoints").exists()
        return
    assert result.returncode == 0, result.stderr[-2000:]
    loss = float(read_rows(out / "log.csv")[0]["loss"])
    assert loss == loss and 0 < loss < 10  # finite, not NaN
    assert "precision mixed_bfloat16" in result.stdout  # bfloat16 on a CPU


def test_deterministic_runs_repeat_exactly(pairs_dir, tmp_path):
    losses = []
    for attempt in range(2):
        out = tmp_path / f"run{attempt}"
        result = run(["--data_dir", str(pairs_dir), "--out_dir", str(out), "--epochs", "2", "--deterministic", *TINY])
        assert result.returncode == 0, result.stderr[-2000:]
        losses.append([row["loss"] for row in read_rows(out / "log.csv")])
    assert losses[0] == losses[1]
    assert losses[0][0] != losses[0][1]  # the two epochs differ: the numbers are real, not constants
