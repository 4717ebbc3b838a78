"""Tests of the synthetic demo set: data/make_demo.py and the committed data/demo.

Run: .venv/bin/python -m pytest tests/test_demo_data.py -q
"""

import importlib.util
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.io.wavfile

from evaluation import annotations

ROOT = Path(__file__).resolve().parents[1]
METADATA = Path(__file__).resolve().parents[1] / "data" / "metadata"
DEMO = ROOT / "data" / "demo"
RULE_ITEMS = 200


def _load_make_demo():
    spec = importlib.util.spec_from_file_location("make_demo", ROOT / "data" / "make_demo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


make_demo = _load_make_demo()


@pytest.fixture(scope="module")
def items():
    """The first RULE_ITEMS training items of seed 0, with the shipped settings."""
    return [make_demo.generate_item(index, seed=0, split="train") for index in range(1, RULE_ITEMS + 1)]


def _files(folder):
    return {path.relative_to(folder).as_posix(): path.read_bytes() for path in sorted(folder.rglob("*"))
            if path.is_file()}


def test_generation_is_deterministic_and_independent_of_counts(tmp_path):
    make_demo.write_demo_set(tmp_path / "first", 5, 3, seed=0, progress=False)
    make_demo.write_demo_set(tmp_path / "second", 5, 3, seed=0, progress=False)
    first, second = _files(tmp_path / "first"), _files(tmp_path / "second")
    assert len(first) == 2 * 5 + 2 * 3 + 3  # pairs + two annotation files + test.csv
    assert first == second
    # Fewer items: the items that exist are the same bytes (each item has its own generator), and no temp files.
    make_demo.write_demo_set(tmp_path / "fewer", 2, 1, seed=0, progress=False)
    fewer = _files(tmp_path / "fewer")
    for name in ("train/demo_00001.jpg", "train/demo_00002.wav", "test/demo_test_0001.jpg", "test/demo_test_0001.wav"):
        assert fewer[name] == first[name]
    assert not any(".partial-" in name for name in first)
    # Regenerating fewer items into the bigger folder removes the stale pairs.
    make_demo.write_demo_set(tmp_path / "first", 2, 1, seed=0, progress=False)
    assert _files(tmp_path / "first") == fewer
    # A different seed gives different data.
    other = make_demo.generate_item(1, seed=1, split="train")
    assert not np.array_equal(other.image, make_demo.generate_item(1, seed=0, split="train").image)
    # Train and test draw from different streams.
    assert first["train/demo_00001.wav"] != first["test/demo_test_0001.wav"]


def test_annotations_have_vggss_format(tmp_path):
    make_demo.write_demo_set(tmp_path, 6, 4, seed=0, progress=False)
    for split in ("train", "test"):
        path = tmp_path / f"{split}_annotations.json"
        records = json.loads(path.read_text())
        assert isinstance(records, list) and len(records) == (6 if split == "train" else 4)
        for record in records:
            assert list(record) == ["file", "class", "bbox"]
            assert record["class"] in make_demo.CLASS_NAMES
            assert len(record["bbox"]) == 1 and len(record["bbox"][0]) == 4
            xmin, ymin, xmax, ymax = record["bbox"][0]
            assert 0.0 <= xmin < xmax <= 1.0 and 0.0 <= ymin < ymax <= 1.0
            # cIoU@0.5 keeps the top half of the map, so it needs a box of at least a quarter of the frame.
            assert (xmax - xmin) * (ymax - ymin) >= 0.25 - 1e-6
            assert (tmp_path / split / f"{record['file']}.jpg").is_file()
            assert (tmp_path / split / f"{record['file']}.wav").is_file()
        # The evaluation's reader accepts the file, and its ground-truth maps cover >= a quarter of the frame.
        loaded = annotations.load_vggss_annotations(path)
        assert list(loaded) == [record["file"] for record in records]
        for record in records:
            annotation = loaded[record["file"]]
            assert annotation.class_name == record["class"]
            np.testing.assert_allclose(np.asarray(annotation.boxes, dtype=np.float64), record["bbox"])
            assert annotations.ground_truth_map(annotation).mean() >= 0.24
        assert annotations.degenerate_items(loaded) == []
    assert (tmp_path / "test.csv").read_text().split() == [f"demo_test_{index:04d}" for index in range(1, 5)]
    vggss = METADATA / "vggss.json"
    if vggss.is_file():
        reference = json.loads(vggss.read_text())[0]
        ours = json.loads((tmp_path / "test_annotations.json").read_text())[0]
        assert list(ours) == list(reference)
        assert [type(value) for value in ours.values()] == [type(value) for value in reference.values()]
        assert all(isinstance(value, float) for value in ours["bbox"][0])


def _hsv(image):
    """Hue in [0, 1) and chroma (max - min, 0..255) of an H x W x 3 uint8 image."""
    pixels = image.astype(np.float64)
    red, green, blue = pixels[..., 0], pixels[..., 1], pixels[..., 2]
    high, low = pixels.max(axis=-1), pixels.min(axis=-1)
    chroma = high - low
    safe = np.where(chroma > 0, chroma, 1.0)
    hue = np.where(high == red, ((green - blue) / safe) % 6.0,
                   np.where(high == green, (blue - red) / safe + 2.0, (red - green) / safe + 4.0)) / 6.0
    return hue % 1.0, chroma


def test_every_frame_holds_two_or_three_visible_objects_of_distinct_classes(items):
    counts = set()
    for item in items:
        size = item.image.shape[0]
        assert item.image.shape == (128, 128, 3) and item.image.dtype == np.uint8
        classes = [scene_object.class_index for scene_object in item.objects]
        counts.add(len(classes))
        assert len(classes) in (2, 3) and len(set(classes)) == len(classes)
        assert len({scene_object.cell for scene_object in item.objects}) == len(classes)
        assert 0 <= item.sounding_index < len(classes)
        hue, chroma = _hsv(item.image)
        outside = np.ones((size, size), dtype=bool)
        for scene_object in item.objects:
            xmin, ymin, xmax, ymax = scene_object.box
            assert 0.0 <= xmin < xmax <= 1.0 and 0.0 <= ymin < ymax <= 1.0
            assert (xmax - xmin) * (ymax - ymin) >= 0.25 - 1e-6
            left, top = int(np.floor(xmin * size)), int(np.floor(ymin * size))
            right, bottom = int(np.ceil(xmax * size)), int(np.ceil(ymax * size))
            outside[top:bottom, left:right] = False
            # The object is really drawn: a good share of its box has its (strong) class colour.
            class_hue = make_demo.CLASSES[scene_object.class_index].hue
            hue_distance = np.abs((hue[top:bottom, left:right] - class_hue + 0.5) % 1.0 - 0.5)
            coloured = (chroma[top:bottom, left:right] > 120) & (hue_distance < 0.06)
            assert coloured.mean() >= 0.1, (scene_object, coloured.mean())
        # Nothing strongly coloured outside the objects: the clutter never looks like a class.
        assert chroma[outside].max() < 110
    assert counts == {2, 3}


def _dominant_frequency(wav_bytes):
    sample_rate, samples = scipy.io.wavfile.read(io.BytesIO(wav_bytes))
    assert samples.dtype == np.int16 and samples.ndim == 1
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64)))
    frequencies = np.fft.rfftfreq(samples.shape[0], d=1.0 / sample_rate)
    return frequencies[int(np.argmax(spectrum[1:])) + 1]


def test_audio_alone_identifies_the_sounding_class(items):
    base_frequencies = np.array([object_class.base_frequency for object_class in make_demo.CLASSES])
    for item in items:
        wav_bytes = make_demo.encode_wav(item.audio, 8000)
        sample_rate, samples = scipy.io.wavfile.read(io.BytesIO(wav_bytes))
        assert sample_rate == 8000 and samples.shape == (4000,)
        dominant = _dominant_frequency(wav_bytes)
        predicted = int(np.argmin(np.abs(np.log(base_frequencies / dominant))))
        assert abs(dominant - base_frequencies[predicted]) <= 4.0
        assert predicted == item.sounding_object.class_index


def test_no_vision_only_rule_finds_the_sounding_object(items):
    def area(scene_object):
        xmin, ymin, xmax, ymax = scene_object.box
        return (xmax - xmin) * (ymax - ymin)

    def centre_distance(scene_object):
        xmin, ymin, xmax, ymax = scene_object.box
        return np.hypot((xmin + xmax) / 2 - 0.5, (ymin + ymax) / 2 - 0.5)

    picking_rules = {
        "largest": lambda item: int(np.argmax([area(scene_object) for scene_object in item.objects])),
        "smallest": lambda item: int(np.argmin([area(scene_object) for scene_object in item.objects])),
        "drawn on top": lambda item: len(item.objects) - 1,
        "drawn first": lambda item: 0,
        "nearest the centre": lambda item: int(np.argmin([centre_distance(o) for o in item.objects])),
    }
    chance = np.mean([1.0 / len(item.objects) for item in items])
    assert 0.38 < chance < 0.47
    for name, rule in picking_rules.items():
        accuracy = np.mean([rule(item) == item.sounding_index for item in items])
        assert accuracy <= min(0.6, chance + 0.1), (name, accuracy, chance)
    for cell in range(4):
        accuracy = np.mean([item.sounding_object.cell == cell for item in items])
        assert accuracy <= 0.6, ("cell", cell, accuracy)
    for class_index in range(len(make_demo.CLASSES)):
        accuracy = np.mean([item.sounding_object.class_index == class_index for item in items])
        assert accuracy <= 0.6, ("class", class_index, accuracy)
    # Every class sounds sometimes and every cell holds the sounding object sometimes.
    assert {item.sounding_object.class_index for item in items} == set(range(len(make_demo.CLASSES)))
    assert {item.sounding_object.cell for item in items} == set(range(4))


def _shipped_arguments():
    """The parser defaults of make_demo.py, which are the arguments data/demo was generated with."""
    defaults = make_demo.build_parser().parse_args([])
    command = (f"--out_dir data/demo --train_count {defaults.train_count} --test_count {defaults.test_count} "
               f"--seed {defaults.seed}")
    assert command in make_demo.__doc__  # the documented regeneration command is the defaults
    assert (defaults.image_size, defaults.sample_rate, defaults.audio_seconds) == (128, 8000, 0.5)
    return {"train": defaults.train_count, "test": defaults.test_count, "seed": defaults.seed}


def test_shipped_demo_matches_the_generator():
    arguments = _shipped_arguments()
    assert DEMO.is_dir(), "data/demo is missing: run python data/make_demo.py"
    for split in ("train", "test"):
        records = json.loads((DEMO / f"{split}_annotations.json").read_text())
        count = arguments[split]
        names = [make_demo.item_name(split, index) for index in range(1, count + 1)]
        assert [record["file"] for record in records] == names
        assert list(annotations.load_vggss_annotations(DEMO / f"{split}_annotations.json")) == names
        on_disk = sorted(path.name for path in (DEMO / split).iterdir())
        assert on_disk == sorted([f"{name}.jpg" for name in names] + [f"{name}.wav" for name in names])
        for index in sorted({1, 2, 3, count // 2, count - 1, count}):
            item = make_demo.generate_item(index, seed=arguments["seed"], split=split)
            name = names[index - 1]
            assert (DEMO / split / f"{name}.jpg").read_bytes() == make_demo.encode_jpeg(item.image), name
            assert (DEMO / split / f"{name}.wav").read_bytes() == make_demo.encode_wav(item.audio, 8000), name
            assert records[index - 1] == make_demo.annotation_record(name, item)
    test_ids = (DEMO / "test.csv").read_text().split()
    assert test_ids == [make_demo.item_name("test", index) for index in range(1, arguments["test"] + 1)]


def test_shipped_demo_is_at_most_10_megabytes():
    total = sum(path.stat().st_size for path in DEMO.rglob("*") if path.is_file())
    assert 0 < total <= 10_000_000


def test_bad_settings_are_rejected():
    with pytest.raises(ValueError):
        make_demo.check_settings(128, 2000, 0.5)  # the highest tone would alias
    with pytest.raises(ValueError):
        make_demo.generate_item(1, split="validation")
    completed = subprocess.run(
        [sys.executable, str(ROOT / "data" / "make_demo.py"), "--train_count", "0", "--out_dir", "/nonexistent/x"],
        capture_output=True, text=True, timeout=120,
    )
    assert completed.returncode == 2
    assert "Traceback" not in completed.stderr
    assert "error:" in completed.stderr.strip().splitlines()[-1]
