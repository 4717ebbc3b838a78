"""train.py's TensorBoard logs, read back from the event files: the scalars per step and per epoch, the heatmap
images and the flags, at the right steps (resumed runs: tests/test_resume.py; other workers: test_distributed.py)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from event_files import read_events

PROJECT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    pairs = tmp_path_factory.mktemp("pairs")
    for path in sorted((PROJECT / "data" / "demo" / "train").iterdir())[:24]:  # 12 pairs: 3 steps of 4
        shutil.copy(path, pairs / path.name)
    out = tmp_path_factory.mktemp("run")
    arguments = ["--data_dir", str(pairs), "--val_dir", str(PROJECT / "data" / "demo" / "test"), "--out_dir", str(out),
                 "--image_size", "48", "--sample_rate", "8000", "--audio_seconds", "0.1", "--image_weights", "none",
                 "--batch_size", "4", "--epochs", "2", "--lr", "0.0003"]
    result = subprocess.run([sys.executable, str(PROJECT / "train.py"), *arguments], cwd=PROJECT, capture_output=True,
                            text=True, timeout=600, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert result.returncode == 0, result.stderr[-3000:]
    return out


def test_scalars_per_step_and_per_epoch(run_dir):
    events = read_events(run_dir / "tensorboard")
    steps = lambda tag: [step for step, _ in events[tag]]  # noqa: E731
    assert steps("step/loss") == [1, 2, 3, 4, 5, 6] and steps("step/learning_rate") == [1, 2, 3, 4, 5, 6]
    assert steps("epoch/loss") == steps("epoch/val_loss") == steps("epoch/learning_rate") == [1, 2]
    assert all(value == pytest.approx(3e-4) for _, value in events["step/learning_rate"])
    # the steps' own losses average to the epoch's mean loss, which log.csv holds too
    rows = (run_dir / "log.csv").read_text().splitlines()
    header = rows[0].split(",")
    for epoch, row in enumerate(rows[1:], start=1):
        logged = float(row.split(",")[header.index("loss")])
        batch_losses = [value for step, value in events["step/loss"] if (epoch - 1) * 3 < step <= epoch * 3]
        assert sum(batch_losses) / 3 == pytest.approx(logged, rel=1e-5)
        assert dict(events["epoch/loss"])[epoch] == pytest.approx(logged, rel=1e-6)
        assert dict(events["epoch/val_loss"])[epoch] == pytest.approx(float(row.split(",")[header.index("val_loss")]))
    speeds = events["step/samples_per_second"]
    assert [step for step, _ in speeds] == [2, 3, 4, 5, 6]  # the first step traces the graph: not timed
    assert all(value > 0 for _, value in speeds) and all(value > 0 for _, value in events["epoch/samples_per_second"])


def test_heatmaps_of_fixed_items_every_epoch(run_dir):
    images = read_events(run_dir / "tensorboard")["heatmaps"]
    assert [step for step, _ in images] == [1, 2]
    first, second = images[0][1], images[1][1]
    assert first.shape == second.shape == (2 * 48, 4 * 2 * 48, 3)  # 8 items, 4 a row, frame + heatmap each
    frames = lambda image: [image[row * 48:(row + 1) * 48, column * 96:column * 96 + 48]  # noqa: E731
                            for row in range(2) for column in range(4)]
    assert all((a == b).all() for a, b in zip(frames(first), frames(second)))  # the same items, the same frames
    assert len({frame.tobytes() for frame in frames(first)}) == 8  # eight different items
    assert (first != second).any()  # the maps changed with a training epoch


def test_the_flags_as_text(run_dir):
    texts = read_events(run_dir / "tensorboard")["run/arguments"]
    assert [step for step, _ in texts] == [0]
    text = texts[0][1]
    assert "| --lr | 0.0003 |" in text and "| --epochs | 2 |" in text
    assert "heatmap items: demo_test_0001, demo_test_0002," in text  # the first --val_dir items
