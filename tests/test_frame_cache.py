"""train.py --cache: decoded, pre-resized training frames kept in a folder give the same batches, bit for bit, and
survive damaged entries, edited frames and a folder that cannot be written."""

import io
import os
import subprocess
import sys

import numpy as np
import scipy.io.wavfile
from PIL import Image

from pipeline import frames, preprocessing
from pipeline.frame_cache import FrameCache

PROJECT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SETTINGS = {"image_size": 32, "sample_rate": 8000, "audio_seconds": 0.1}


def write_pairs(folder, count=6):
    folder.mkdir()
    rng = np.random.default_rng(7)
    for index in range(count):
        width, height = (96, 64) if index % 2 else (64, 80)
        pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"clip{index}.{'jpg' if index % 3 else 'png'}", quality=90)
        samples = (np.sin(np.arange(800) * (0.05 + 0.01 * index)) * 12000).astype(np.int16)
        scipy.io.wavfile.write(folder / f"clip{index}.wav", 8000, samples)
    return folder


def batches(pairs, cache_dir, count=3, seed=0):
    """The first `count` training batches (frames as uint8 arrays, names) of a repeating stream."""
    dataset = preprocessing.make_dataset(pairs, SETTINGS, training=True, batch_size=2, seed=seed, with_names=True,
                                         repeat=True, last_batch=count, cache_dir=cache_dir)
    return [(inputs["frame"].numpy(), list(names.numpy())) for inputs, names in dataset.take(count)]


def entries(folder):
    return sorted(str(path) for path in folder.rglob("*.npy"))


def test_cached_batches_equal_decoded_ones_bit_for_bit(tmp_path):
    pairs, _ = preprocessing.find_pairs(str(write_pairs(tmp_path / "pairs")))
    cache = tmp_path / "cache"
    expected = batches(pairs, None, count=6)  # two passes over the 6 pairs, decoded every time
    first = batches(pairs, str(cache), count=6)  # writes every entry in the first pass, reads them in the second
    assert len(entries(cache)) == len(pairs)
    second = batches(pairs, str(cache), count=6)  # every frame read from the folder
    for got in (first, second):
        assert [names for _, names in got] == [names for _, names in expected]
        for (frame, _), (want, _) in zip(got, expected):
            np.testing.assert_array_equal(frame, want)
    entry = np.load(entries(cache)[0])
    assert entry.dtype == np.uint8 and entry.shape[2] == 3 and min(entry.shape[:2]) == round(32 * 246 / 224)


def test_a_damaged_entry_is_made_again_and_an_edited_frame_gets_a_new_one(tmp_path):
    folder = write_pairs(tmp_path / "pairs", count=1)
    path = str(folder / "clip0.png")
    cache = FrameCache(str(tmp_path / "cache"))
    fresh = frames.training_resized(path, 32)
    np.testing.assert_array_equal(cache.get(path, 32, "crop", frames.training_resized), fresh)
    entry = cache.entry_path(path, 32, "crop")
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "|u1", "fortran_order": False, "shape": (10**6, 10**6, 3)})
    huge = header.getvalue() + b"\0" * 1000  # a header that claims 3 TB: must not be allocated
    for damage in (b"", b"\x93NUMPY garbage", open(entry, "rb").read()[:100], huge):  # empty, corrupt, truncated
        with open(entry, "wb") as handle:
            handle.write(damage)
        np.testing.assert_array_equal(cache.get(path, 32, "crop", frames.training_resized), fresh)
        np.testing.assert_array_equal(np.load(entry), fresh)  # rewritten whole
    np.save(entry, np.zeros((8, 8, 3), np.uint8))  # readable but of the wrong size for the crop
    np.testing.assert_array_equal(cache.get(path, 32, "crop", frames.training_resized), fresh)
    assert cache.entry_path(path, 32, "squash") != entry and cache.entry_path(path, 48, "crop") != entry
    Image.fromarray(np.full((80, 64, 3), 200, np.uint8)).save(path)  # the frame is edited
    os.utime(path, ns=(os.stat(path).st_atime_ns, os.stat(path).st_mtime_ns + 10**9))
    assert cache.entry_path(path, 32, "crop") != entry
    assert (cache.get(path, 32, "crop", frames.training_resized) == 200).all()  # the new pixels, not the old entry


def test_a_folder_that_cannot_be_written_is_reported_once_and_training_reads_on(tmp_path, capsys):
    # Every entry's subfolder (00 ... ff) is taken by a file, so no entry can be written: the writes fail for real
    # (as on a full disk or a read-only folder, and also as root, who may write into read-only folders).
    pairs, _ = preprocessing.find_pairs(str(write_pairs(tmp_path / "pairs")))
    cache = tmp_path / "cache"
    cache.mkdir()
    for number in range(256):
        (cache / f"{number:02x}").write_text("")
    expected = batches(pairs, None)
    got = batches(pairs, str(cache))
    for (frame, names), (want, want_names) in zip(got, expected):
        np.testing.assert_array_equal(frame, want)
        assert names == want_names
    assert capsys.readouterr().err.count("cannot be written") == 1
    assert entries(cache) == []


def test_train_py_with_cache_fills_the_folder_and_refuses_a_file(tmp_path):
    pairs = write_pairs(tmp_path / "pairs")
    cache = tmp_path / "frames"
    command = [sys.executable, os.path.join(PROJECT, "train.py"), "--data_dir", str(pairs), "--image_size", "32",
               "--sample_rate", "8000", "--audio_seconds", "0.1", "--image_weights", "none", "--batch_size", "2",
               "--epochs", "1", "--no_tensorboard"]
    result = subprocess.run(command + ["--out_dir", str(tmp_path / "run"), "--cache", str(cache)], cwd=PROJECT,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert len(entries(cache)) == 6
    (tmp_path / "a_file").write_text("")
    result = subprocess.run(command + ["--out_dir", str(tmp_path / "run2"), "--cache", str(tmp_path / "a_file")],
                            cwd=PROJECT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 2 and result.stderr.strip().splitlines()[-1].endswith(
        f"--cache is a file, not a folder: {tmp_path / 'a_file'}"), result.stderr[-2000:]
    assert "Traceback" not in result.stderr
