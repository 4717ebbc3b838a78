"""predict.py: four-panel figures, raw heatmaps equal to the model's output, bad files named and skipped."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline import preprocessing
from model import build_model

PROJECT = Path(__file__).resolve().parents[1]
DEMO_TEST = PROJECT / "data" / "demo" / "test"


def run(arguments):
    return subprocess.run([sys.executable, str(PROJECT / "predict.py"), *arguments], cwd=PROJECT, capture_output=True,
                          text=True, timeout=300, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "model.keras"
    build_model(image_weights="none", image_size=64, sample_rate=8000, audio_seconds=0.5).save(path)
    return path


@pytest.fixture
def pairs_dir(tmp_path):
    folder = tmp_path / "pairs"
    folder.mkdir()
    for path in sorted(DEMO_TEST.iterdir())[:6]:  # 3 demo pairs
        shutil.copy(path, folder / path.name)
    return folder


def test_figures_and_raw_heatmaps(checkpoint, pairs_dir, tmp_path):
    (pairs_dir / "zz_broken.png").write_bytes(b"\x89PNG broken")
    (pairs_dir / "zz_broken.wav").write_bytes(b"RIFF")
    out = tmp_path / "out"
    result = run(["--checkpoint", str(checkpoint), "--data_dir", str(pairs_dir), "--out_dir", str(out), "--save_heatmaps"])
    assert result.returncode == 0, result.stderr[-2000:]
    assert "zz_broken.png: unreadable image" in result.stderr
    names = sorted(path.stem for path in pairs_dir.glob("demo_*.jpg"))
    assert sorted(path.stem for path in out.glob("*.png")) == names
    figure = Image.open(out / f"{names[0]}.png")
    assert figure.size[0] > 3 * figure.size[1]  # four panels side by side
    heatmap = np.load(out / f"{names[0]}.npy")
    assert heatmap.dtype == np.float32 and heatmap.shape == (4, 4)  # 64 px / 16, before any upsampling
    # the saved map is the model's S_ii for that pair, preprocessed with the checkpoint's own settings
    from model import load_checkpoint

    model = load_checkpoint(str(checkpoint))
    pairs, _ = preprocessing.find_pairs(str(pairs_dir), names=[names[0]])
    inputs = next(iter(preprocessing.make_dataset(pairs, model.settings, training=False, batch_size=1)))
    np.testing.assert_allclose(heatmap, model(inputs)["similarity"].numpy()[0], atol=1e-5)


def test_single_pair_and_errors(checkpoint, pairs_dir, tmp_path):
    image = next(pairs_dir.glob("*.jpg"))
    result = run(["--checkpoint", str(checkpoint), "--image", str(image), "--audio", str(image.with_suffix(".wav")),
                  "--out_dir", str(tmp_path / "one")])
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "one" / f"{image.stem}.png").is_file()
    for arguments, message in [
        (["--checkpoint", str(tmp_path / "missing.keras"), "--data_dir", str(pairs_dir)], "checkpoint not found"),
        (["--checkpoint", str(checkpoint), "--image", str(image)], "--image and --audio go together"),
        (["--checkpoint", str(checkpoint), "--data_dir", str(tmp_path / "nowhere")], "data folder not found"),
    ]:
        result = run(arguments)
        assert result.returncode != 0 and message in result.stderr and "Traceback" not in result.stderr
