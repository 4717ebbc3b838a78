"""A resumed run is the run that was never interrupted: train.py under --deterministic, stopped by SIGINT, SIGTERM,
kill -9 or an epoch's end, and rerun with the same command, ends with the same weights and optimizer state, bit for
bit; a damaged newest checkpoint is skipped with one line; the data order is a function of (seed, pass, position)."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from checkpoint_arrays import assert_identical
from event_files import read_events

PROJECT = Path(__file__).resolve().parents[1]
# 16 pairs in batches of 4: 4 steps an epoch, a checkpoint after every step, 2 kept
COMMAND = ["--image_size", "32", "--sample_rate", "8000", "--audio_seconds", "0.1", "--image_weights", "none",
           "--batch_size", "4", "--deterministic", "--checkpoint_every", "1", "--keep_checkpoints", "2"]
ENVIRONMENT = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")


@pytest.fixture(scope="module")
def pairs_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pairs")
    for path in sorted((PROJECT / "data" / "demo" / "train").iterdir())[:32]:
        shutil.copy(path, folder / path.name)
    return folder


def command(pairs_dir, out, epochs):
    return [sys.executable, str(PROJECT / "train.py"), "--data_dir", str(pairs_dir), "--out_dir", str(out),
            "--epochs", str(epochs), *COMMAND]


def run(arguments):
    result = subprocess.run(arguments, cwd=PROJECT, capture_output=True, text=True, timeout=600, env=ENVIRONMENT)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def stop_when(arguments, path, how):
    """Start a run, send it `how` (a signal) once `path` exists; return (exit code, stdout, stderr)."""
    process = subprocess.Popen(arguments, cwd=PROJECT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=ENVIRONMENT)
    deadline = time.time() + 300
    while not path.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert path.exists(), f"{path.name} was never written"
    process.send_signal(how)
    stdout, stderr = process.communicate(timeout=300)
    return process.returncode, stdout, stderr


@pytest.fixture(scope="module")
def uninterrupted(pairs_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("uninterrupted")
    run(command(pairs_dir, out, 2))
    return out


def test_checkpoints_are_bounded(uninterrupted):
    names = sorted(path.name for path in (uninterrupted / "checkpoints").iterdir())
    # the newest two of 8 steps: 3 steps into epoch 2, then its end (with the loss state beside a mid-epoch one)
    assert names == ["epoch_0001_step_00000003.json", "epoch_0001_step_00000003.keras", "epoch_0002.keras"]


def test_sigint_then_sigterm_then_rerun_is_the_uninterrupted_run(pairs_dir, uninterrupted, tmp_path):
    out = tmp_path / "run"
    arguments = command(pairs_dir, out, 2)
    code, _, stderr = stop_when(arguments, out / "checkpoints" / "epoch_0000_step_00000001.keras", signal.SIGINT)
    assert code == 75, stderr[-2000:]
    assert "SIGINT received" in stderr and "rerun the same command to resume (exit code 75)" in stderr
    assert not (out / "model.keras").exists()
    code, stdout, stderr = stop_when(arguments, out / "checkpoints" / "epoch_0001.keras", signal.SIGTERM)
    assert code == 75, stderr[-2000:]
    assert "resuming from" in stdout and "stopped by SIGTERM" in stderr
    result = run(arguments)
    assert "resuming from" in result.stdout
    assert_identical(uninterrupted / "model.keras", out / "model.keras")
    assert (uninterrupted / "log.csv").read_text() == (out / "log.csv").read_text()  # the epochs' mean losses too


def test_kill_9_mid_epoch_and_a_damaged_newest_checkpoint(pairs_dir, uninterrupted, tmp_path):
    out = tmp_path / "run"
    arguments = command(pairs_dir, out, 2)
    code, _, _ = stop_when(arguments, out / "checkpoints" / "epoch_0001_step_00000002.keras", signal.SIGKILL)
    assert code == -signal.SIGKILL
    checkpoints = sorted((out / "checkpoints").glob("*.keras"))
    newest = checkpoints[-1]
    assert "_step_" in newest.name  # killed inside epoch 2, at most one step after its newest checkpoint
    newest.write_bytes(newest.read_bytes()[:5000])  # truncated, as a crash during a copy would leave it
    result = run(arguments)
    warnings = [line for line in result.stderr.splitlines() if "damaged" in line]
    assert len(warnings) == 1 and newest.name in warnings[0] and "truncated" in warnings[0]
    assert f"resuming from {checkpoints[-2]}" in result.stdout
    assert_identical(uninterrupted / "model.keras", out / "model.keras")
    # TensorBoard: each step once, with the uninterrupted run's values, though the killed run logged some of them
    expected, logged = read_events(uninterrupted / "tensorboard"), read_events(out / "tensorboard")
    for tag in ("step/loss", "step/learning_rate", "epoch/loss", "heatmaps"):
        assert [step for step, _ in logged[tag]] == [step for step, _ in expected[tag]], tag
    assert [value for _, value in logged["step/loss"]] == [value for _, value in expected["step/loss"]]
    assert [step for step, _ in expected["step/loss"]] == list(range(1, 9))


def test_resume_at_an_epoch_end_is_the_uninterrupted_run(pairs_dir, uninterrupted, tmp_path):
    out = tmp_path / "run"
    run(command(pairs_dir, out, 1) + ["--no_tensorboard"])
    result = run(command(pairs_dir, out, 2) + ["--no_tensorboard"])
    assert "(epoch 1 of 2 done)" in result.stdout
    assert_identical(uninterrupted / "model.keras", out / "model.keras")
    assert not (out / "tensorboard").exists()


def test_no_usable_checkpoint_is_an_error_not_a_new_run(pairs_dir, tmp_path):
    out = tmp_path / "run"
    (out / "checkpoints").mkdir(parents=True)
    (out / "checkpoints" / "epoch_0003.keras").write_bytes(b"not a zip")
    (out / "checkpoints" / "epoch_0002_step_00000007.keras").write_bytes(b"")
    result = subprocess.run(command(pairs_dir, out, 4), cwd=PROJECT, capture_output=True, text=True, timeout=300,
                            env=ENVIRONMENT)
    assert result.returncode == 1
    assert result.stderr.count("skipping a damaged checkpoint") == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: none of the 2 checkpoints")
    assert not (out / "model.keras").exists()


def test_data_order_depends_only_on_seed_pass_and_position(pairs_dir):
    from pipeline import preprocessing

    pairs, _ = preprocessing.find_pairs(str(pairs_dir))
    settings = {"image_size": 32, "sample_rate": 8000, "audio_seconds": 0.1}

    def batches(first_batch, count, seed=0):
        dataset = preprocessing.make_dataset(pairs, settings, training=True, batch_size=4, seed=seed, with_names=True,
                                             repeat=True, first_batch=first_batch)
        return [(list(names.numpy()), inputs["frame"].numpy()) for inputs, names in dataset.take(count)]

    stream = batches(0, 9)
    restarted = batches(6, 3)  # 6 = one pass of 4 batches + 2
    for (names, frames), (names_again, frames_again) in zip(stream[6:], restarted):
        assert names == names_again
        np.testing.assert_array_equal(frames, frames_again)  # the same augmentation too
    first_pass, second_pass = [name for names, _ in stream[:4] for name in names], \
        [name for names, _ in stream[4:8] for name in names]
    assert sorted(first_pass) == sorted(second_pass) and len(set(first_pass)) == 16  # every pair once a pass
    assert first_pass != second_pass  # a new order every pass
    assert [names for names, _ in batches(0, 4, seed=1)] != [names for names, _ in stream[:4]]
