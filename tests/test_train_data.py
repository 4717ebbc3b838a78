"""train.py and its data: pairs named like test items, native sample rates, a stalled input pipeline."""

import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import scipy.io.wavfile

from test_train import DEMO_TRAIN, PROJECT, TINY, read_rows, run
from test_train import pairs_dir  # noqa: F401  (fixture)


def test_pairs_on_a_test_list_are_counted_and_named(pairs_dir, tmp_path):
    sys.path.insert(0, str(PROJECT))
    from downloading.held_out import read_names

    test_items = read_names(PROJECT / "data" / "metadata" / "vggss_test.csv")[:3]
    for index, name in enumerate(test_items):  # three of the eight pairs carry VGG-SS test names
        source = f"demo_{index + 1:05d}"
        (pairs_dir / f"{source}.jpg").rename(pairs_dir / f"{name}.jpg")
        (pairs_dir / f"{source}.wav").rename(pairs_dir / f"{name}.wav")
    out = tmp_path / "run"
    result = run(["--data_dir", str(pairs_dir), "--out_dir", str(out), "--epochs", "0", *TINY])
    assert result.returncode == 0, result.stderr[-2000:]
    assert "warning: 3 of the 8 training pairs are on a shipped test list" in result.stderr
    assert (out / "test_overlap.txt").read_text().splitlines() == sorted(test_items)
    assert json.loads((out / "args.json").read_text())["test_overlap"] == 3

    clean = tmp_path / "clean"
    clean.mkdir()
    for path in sorted(DEMO_TRAIN.iterdir())[:16]:
        shutil.copy(path, clean / path.name)
    result = run(["--data_dir", str(clean), "--out_dir", str(out), "--epochs", "0", *TINY])
    assert result.returncode == 0, result.stderr[-2000:]
    assert not (out / "test_overlap.txt").exists()  # absent when there is no overlap
    assert json.loads((out / "args.json").read_text())["test_overlap"] == 0


def test_native_sample_rates_train_and_are_recorded(tmp_path):
    folder = tmp_path / "pairs"
    folder.mkdir()
    demo = sorted(DEMO_TRAIN.iterdir())[:16]  # 8 pairs at the demo's 8 kHz
    for path in demo:
        shutil.copy(path, folder / path.name)
    for path in demo[:8]:  # and 4 more at 16 kHz (every second sample repeated: the same sound, twice the rate)
        if path.suffix == ".wav":
            rate, samples = scipy.io.wavfile.read(path)
            scipy.io.wavfile.write(folder / f"fast_{path.name}", rate * 2, np.repeat(samples, 2))
        else:
            shutil.copy(path, folder / f"fast_{path.name}")
    arguments = [argument for argument in TINY]
    arguments[arguments.index("--sample_rate") + 1] = "native"
    arguments[arguments.index("--audio_seconds") + 1] = "0.2"
    out = tmp_path / "run"
    result = run(["--data_dir", str(folder), "--out_dir", str(out), "--epochs", "1", "--steps_per_epoch", "3",
                  *arguments])
    assert result.returncode == 0, result.stderr[-2000:]
    assert float(read_rows(out / "log.csv")[0]["loss"]) > 0
    assert json.loads((out / "args.json").read_text())["sample_rate"] == "native"
    sys.path.insert(0, str(PROJECT))
    from model import load_checkpoint

    assert load_checkpoint(str(out / "model.keras")).settings["sample_rate"] == "native"


STALLING_TRAIN = textwrap.dedent("""
    import sys, threading
    sys.path.insert(0, {project!r})
    import train
    from pipeline import preprocessing

    never = threading.Event()
    original = preprocessing._load_pair
    calls = []

    def load_pair_that_hangs(*arguments):
        calls.append(1)
        if len(calls) > 12:  # epoch 1 (8 pairs) decodes, then the pipeline hangs for good
            never.wait()
        return original(*arguments)

    preprocessing._load_pair = load_pair_that_hangs
    train.main(sys.argv[1:])
""")


def test_a_stalled_input_pipeline_is_reported_and_the_run_resumes(pairs_dir, tmp_path):
    script = tmp_path / "stalling_train.py"
    script.write_text(STALLING_TRAIN.format(project=str(PROJECT)))
    out = tmp_path / "run"
    # no TensorBoard: its heatmap items would be decoded first and take the calls counted above
    arguments = ["--data_dir", str(pairs_dir), "--out_dir", str(out), "--epochs", "2", "--no_tensorboard", *TINY]
    result = subprocess.run([sys.executable, str(script), *arguments, "--stall_timeout", "5"], cwd=PROJECT,
                            capture_output=True, text=True, timeout=400,
                            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert result.returncode == 3, result.stderr[-3000:]
    assert "error: no training progress for" in result.stderr and "Rerun the same command to resume" in result.stderr
    log = (out / "stall.log").read_text()
    assert "load_pair_that_hangs" in log and "Current thread" in log  # every thread's stack
    assert (out / "checkpoints" / "epoch_0001.keras").is_file()

    result = run([*arguments])  # the same command without the hang resumes after epoch 1
    assert result.returncode == 0, result.stderr[-2000:]
    assert "epoch 1 of 2 done" in result.stdout
    assert [row["epoch"] for row in read_rows(out / "log.csv")] == ["1", "2"]
