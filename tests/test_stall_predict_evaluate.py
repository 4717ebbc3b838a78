"""predict.py and evaluate.py over a folder: an item made to hang on purpose ends the run with every thread's stack in
OUT_DIR/stall.log and exit code 3 (watchdog.py), instead of sitting idle; a FIFO among the pairs is a named skip."""

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

from pipeline import preprocessing

PROJECT = Path(__file__).resolve().parents[1]
DEMO_TEST = PROJECT / "data" / "demo" / "test"

# Builds a small untrained model, then runs the script's main() with its item reader made to hang after the first
# batch, which traces the forward (a hang inside it waits out the first batch's allowance by design). evaluate.py
# reads its items on Python threads of its own, handed out in order: every item but the first two hangs, by name.
# predict.py reads them in tf.data's parallel map, in any order, on the threads its forward needs too: a read hangs
# once the first figure exists, and the reads before that come through.
STALLING_RUN = textwrap.dedent("""
    import os, sys, threading
    sys.path.insert(0, {project!r})
    import torch  # before TensorFlow
    import {module} as script
    import {reader_module} as reader_module
    from model import build_model

    model = build_model(image_size=32, sample_rate=8000, audio_seconds=0.5)
    model.save({checkpoint!r})
    never = threading.Event()
    original = reader_module.{reader}

    def hangs(name):
        if {after_first_figure!r}:
            return os.path.isdir({out!r}) and any(entry.endswith(".png") for entry in os.listdir({out!r}))
        return name not in {first_two!r}

    def reader_that_hangs(*arguments, **keywords):
        image_path = getattr(arguments[0], "image_path", arguments[0])  # a Pair, or _load_pair's path (bytes)
        if hangs(os.path.basename(os.fsdecode(image_path))):
            never.wait()  # the hang: a read that never returns
        return original(*arguments, **keywords)

    reader_module.{reader} = reader_that_hangs
    script.main({argv!r})
    print("finished")
""")


def run_stalling(tmp_path, module, reader_module, reader, extra, pairs=6, after_first_figure=False):
    data = tmp_path / "data"
    data.mkdir()
    names = sorted(os.listdir(DEMO_TEST))[:2 * pairs]
    for name in names:
        shutil.copy(DEMO_TEST / name, data / name)
    first_two = sorted(name for name in names if name.endswith(".jpg"))[:2]
    out = tmp_path / "out"
    checkpoint = tmp_path / "model.keras"
    argv = ["--checkpoint", str(checkpoint), "--data_dir", str(data), "--out_dir", str(out), "--batch_size", "1",
            "--stall_timeout", "3", *extra]
    script = tmp_path / "run.py"
    script.write_text(STALLING_RUN.format(project=str(PROJECT), module=module, reader_module=reader_module,
                                          reader=reader, checkpoint=str(checkpoint), argv=argv,
                                          first_two=first_two, out=str(out), after_first_figure=after_first_figure))
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=400,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    return result, out / "stall.log"


def test_evaluate_reports_a_hung_item_and_exits_3(tmp_path):
    result, log = run_stalling(tmp_path, "evaluate", "evaluation.maps", "load_item",
                               ["--annotations", str(PROJECT / "data" / "demo" / "test_annotations.json")])
    assert result.returncode == 3, result.stderr[-3000:]
    assert "finished" not in result.stdout
    assert "error: no evaluation progress for" in result.stderr and "last progress: 2 of" in result.stderr
    text = log.read_text()
    assert "reader_that_hangs" in text and "Thread 0x" in text  # every thread's stack, the hung read among them


def test_predict_reports_a_hung_item_and_exits_3(tmp_path):
    # 24 pairs: more than tf.data reads ahead while the first batch traces the forward, so some reads hang.
    result, log = run_stalling(tmp_path, "predict", "pipeline.preprocessing", "_load_pair", [], pairs=24,
                               after_first_figure=True)
    assert result.returncode == 3, result.stderr[-3000:]
    assert "finished" not in result.stdout
    assert "error: no prediction progress for" in result.stderr
    assert "reader_that_hangs" in log.read_text()


def test_a_fifo_among_the_pairs_is_a_named_skip(tmp_path):
    shutil.copy(DEMO_TEST / "demo_test_0001.jpg", tmp_path / "a.jpg")
    os.mkfifo(tmp_path / "a.wav")  # reading it would block for ever
    shutil.copy(DEMO_TEST / "demo_test_0002.jpg", tmp_path / "b.jpg")
    shutil.copy(DEMO_TEST / "demo_test_0002.wav", tmp_path / "b.wav")
    pairs, skipped = preprocessing.find_pairs(str(tmp_path))
    assert [pair.name for pair in pairs] == ["b"]
    assert skipped == [f"{tmp_path / 'a.wav'}: not a regular file (a FIFO, socket or device)"]
