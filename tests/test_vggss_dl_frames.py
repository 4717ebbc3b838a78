"""vggss_dl.py frames and rates: a 16:9 video squashed to a square keeps VGG-SS boxes aligned; --keep_aspect does not.

A generated 320 x 180 video holds a red rectangle at a known normalised box. It goes through vggss_dl.py
(--from_videos, real ffprobe/ffmpeg), then through preprocessing.load_frame (the evaluation transform: shorter side
to 224 + centre crop) and the shipped protocol (annotations.vggss_ground_truth_map, metrics.score_map). A map equal
to the rectangle as it appears in the preprocessed frame scores cIoU ~1 on the squashed frame; on the native
16:9 frame the crop cuts the rectangle and shifts it, and it scores what the geometry predicts (41 / 78).
"""

import subprocess

import numpy as np
import pytest
import scipy.io.wavfile
from PIL import Image

from evaluation import annotations
from evaluation import metrics
from pipeline import preprocessing
import vggss_dl

BOX = (0.05, 0.25, 0.35, 0.75)  # xmin, ymin, xmax, ymax as fractions of the frame, like vggss.json
WIDTH, HEIGHT = 320, 180
NAME = "rectangle01_000000"


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    """(squashed out_dir, keep_aspect + native-rate out_dir) built from one generated 10 s clip."""
    folder = tmp_path_factory.mktemp("frames")
    clips = folder / "clips"
    clips.mkdir()
    x, y = round(BOX[0] * WIDTH), round(BOX[1] * HEIGHT)
    width, height = round((BOX[2] - BOX[0]) * WIDTH), round((BOX[3] - BOX[1]) * HEIGHT)
    subprocess.run(["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
                    "-f", "lavfi", "-i", f"color=c=gray:s={WIDTH}x{HEIGHT}:r=10:d=10,"
                                         f"drawbox=x={x}:y={y}:w={width}:h={height}:color=red:t=fill",
                    "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100:duration=10",
                    "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", str(clips / f"{NAME}.mp4")], check=True)
    items = folder / "items.json"
    items.write_text(f'[{{"file": "{NAME}", "class": "red box", "bbox": [{list(BOX)}]}}]')
    common = ["--json", str(items), "--from_videos", str(clips)]
    squashed, native = folder / "squashed", folder / "native"
    assert vggss_dl.main(common + ["--out_dir", str(squashed)])["done"] == 1
    assert vggss_dl.main(common + ["--out_dir", str(native), "--keep_aspect", "--sample_rate", "native"])["done"] == 1
    return squashed, native


def rectangle_map(jpg_path):
    """The red pixels of the frame as the evaluation prepares it (224 x 224): 1 on the rectangle, 0 elsewhere."""
    frame = preprocessing.load_frame(str(jpg_path), 224)  # 224 x 224 x 3, ImageNet-normalised
    pixels = frame * preprocessing.IMAGENET_STD + preprocessing.IMAGENET_MEAN
    red = (pixels[..., 0] > 0.6) & (pixels[..., 1] < 0.35) & (pixels[..., 2] < 0.35)
    assert red.sum() > 100, f"no rectangle found in {jpg_path}"
    return red.astype(np.float32)


def test_squashed_frame_keeps_boxes_aligned(pairs):
    squashed, native = pairs
    assert Image.open(squashed / f"{NAME}.jpg").size == (512, 512)
    assert Image.open(native / f"{NAME}.jpg").size == (WIDTH, HEIGHT)
    ground_truth = annotations.vggss_ground_truth_map([list(BOX)])

    squashed_ciou = metrics.score_map(rectangle_map(squashed / f"{NAME}.jpg"), ground_truth)
    # within resize error: one row or column of blurred edge (bicubic resizes, 4:2:0 chroma) on a 67 x 112 box
    assert squashed_ciou == pytest.approx(1.0, abs=0.05)

    # 320 x 180 -> 398 x 224, crop from x = 87: the rectangle (x 19.9..139.3) shows at 0..52 of the crop, while
    # the box of the whole frame is x 11..78 -> cIoU = 41 / (67 + 11)
    native_ciou = metrics.score_map(rectangle_map(native / f"{NAME}.jpg"), ground_truth)
    assert native_ciou == pytest.approx(41 / 78, abs=0.04)
    assert native_ciou < squashed_ciou - 0.4


def test_sample_rate_default_and_native(pairs):
    squashed, native = pairs
    rate, samples = scipy.io.wavfile.read(squashed / f"{NAME}.wav")
    assert (rate, len(samples)) == (16000, 3 * 16000)  # VGG-SS's rate, the default
    rate, samples = scipy.io.wavfile.read(native / f"{NAME}.wav")
    assert (rate, len(samples)) == (44100, 3 * 44100)  # the clip's own rate
    crossings = np.count_nonzero(np.diff(np.signbit(samples.astype(np.float64)))) / 2 / 3
    assert crossings == pytest.approx(440, abs=5)  # the tone survived, not resampled to another pitch
