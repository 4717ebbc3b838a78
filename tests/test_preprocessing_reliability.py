"""preprocessing.py on hostile-but-plausible input: every file is read, or named and skipped, at bounded cost."""

import io
import os
import struct
import subprocess
import sys
import tempfile
import zlib

import numpy as np
import pytest
import scipy.io.wavfile
import scipy.signal
from PIL import Image

from pipeline import preprocessing

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write_image(path, size=(64, 48), seed=0):
    pixels = np.random.default_rng(seed).integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return str(path)


def tone(rate, seconds, frequency=440.0):
    time = np.arange(int(round(rate * seconds))) / rate
    return (0.5 * np.sin(2 * np.pi * frequency * time)).astype(np.float32)


def write_pair(folder, name, rate=16000):
    os.makedirs(folder, exist_ok=True)
    write_image(os.path.join(folder, f"{name}.jpg"))
    scipy.io.wavfile.write(os.path.join(folder, f"{name}.wav"), rate, tone(rate, 0.5))


# --- non-finite samples ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_sample_is_a_named_skip_in_find_pairs_and_in_the_pipeline(tmp_path, bad):
    write_pair(tmp_path, "good")
    write_image(tmp_path / "poisoned.jpg")
    samples = tone(16000, 0.5)
    samples[1234] = bad
    scipy.io.wavfile.write(tmp_path / "poisoned.wav", 16000, samples)
    pairs, skipped = preprocessing.find_pairs(str(tmp_path))
    assert [pair.name for pair in pairs] == ["good"]
    assert skipped == [f"{tmp_path / 'poisoned.wav'}: non-finite samples (NaN or inf)"]
    # handed to the pipeline anyway (pairs built by a caller), it is skipped and named there too
    preprocessing.SKIPPED_WHILE_LOADING.clear()
    poisoned = preprocessing.Pair("poisoned", str(tmp_path / "poisoned.jpg"), str(tmp_path / "poisoned.wav"))
    settings = {"image_size": 32, "sample_rate": 8000, "audio_seconds": 0.25}
    batches = list(preprocessing.make_dataset(pairs + [poisoned], settings, training=False, batch_size=4))
    assert sum(batch["frame"].shape[0] for batch in batches) == 1
    assert all(np.isfinite(batch["spectrogram"].numpy()).all() for batch in batches)
    assert len(preprocessing.SKIPPED_WHILE_LOADING) == 1
    assert "poisoned.wav: ValueError: non-finite samples" in preprocessing.SKIPPED_WHILE_LOADING[0]


def test_samples_that_overflow_when_resampled_are_refused(tmp_path):
    huge = np.full(4000, 3.0e38, np.float32)
    huge[::2] = -3.0e38  # finite in the file, but resampling sums them past float32's range
    scipy.io.wavfile.write(tmp_path / "huge.wav", 22050, huge)
    samples, _ = preprocessing.read_audio(str(tmp_path / "huge.wav"))
    assert np.isfinite(samples).all()
    with pytest.raises(ValueError, match="non-finite"):
        preprocessing.read_audio(str(tmp_path / "huge.wav"), 16000)


# --- high bit depth frames ------------------------------------------------------------------------------------

def sixteen_bit_images(gray, rgb):
    """Each high-bit-depth variant of the 8-bit images, as PIL reads them back from files."""
    import cv2

    variants = {}
    with tempfile.TemporaryDirectory() as folder:
        wide = gray.astype(np.uint16) * 257
        Image.fromarray(wide).save(os.path.join(folder, "i16.png"))
        variants["I;16 png"] = Image.open(os.path.join(folder, "i16.png"))
        variants["I;16B"] = Image.frombytes("I;16B", gray.shape[::-1], wide.astype(">u2").tobytes())
        variants["I"] = Image.fromarray(wide.astype(np.int32))
        Image.fromarray(gray.astype(np.float32) / 255).save(os.path.join(folder, "f.tif"))
        variants["F tif"] = Image.open(os.path.join(folder, "f.tif"))
        rgb16 = rgb.astype(np.uint16) * 257
        cv2.imwrite(os.path.join(folder, "rgb16.png"), rgb16[..., ::-1])  # cv2 writes BGR
        variants["RGB 16-bit png"] = Image.open(os.path.join(folder, "rgb16.png"))
        alpha = np.full(rgb16.shape[:2] + (1,), 65535, np.uint16)
        cv2.imwrite(os.path.join(folder, "rgba16.png"), np.concatenate([rgb16[..., ::-1], alpha], axis=2))
        variants["RGBA 16-bit png"] = Image.open(os.path.join(folder, "rgba16.png"))
        for image in variants.values():
            image.load()
    return variants


def test_sixteen_bit_and_float_frames_equal_their_8_bit_version():
    rng = np.random.default_rng(0)
    gray = rng.integers(0, 256, size=(60, 80), dtype=np.uint8)
    rgb = rng.integers(0, 256, size=(60, 80, 3), dtype=np.uint8)
    expected_gray = preprocessing.prepare_frame(Image.fromarray(gray, "L"), 48)
    expected_rgb = preprocessing.prepare_frame(Image.fromarray(rgb, "RGB"), 48)
    for label, image in sixteen_bit_images(gray, rgb).items():
        expected = expected_rgb if label.startswith("RGB") else expected_gray
        np.testing.assert_array_equal(preprocessing.prepare_frame(image, 48), expected, err_msg=label)
        assert image.mode == label.split()[0] or label.startswith("RGB"), f"{label} read back as {image.mode}"


# --- bounded cost ---------------------------------------------------------------------------------------------

def tiny_wav_claiming(rate, channels=1):
    """A 50-byte wav whose header claims `rate` Hz and `channels` channels (6 bytes of 16-bit samples)."""
    data = struct.pack("<3h", 1000, -1000, 0)
    header = b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVEfmt " + struct.pack(
        "<IHHIIHH", 16, 1, channels, rate, rate * 2 * channels, 2 * channels, 16)
    return header + b"data" + struct.pack("<I", len(data)) + data


def png_header_only(width, height):
    """A valid PNG of width x height 8-bit gray whose pixel data is all zero (a few hundred bytes when flat)."""
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    rows = zlib.compress(b"\x00" * ((width + 1) * height), 9)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)) + chunk(
        b"IDAT", rows) + chunk(b"IEND", b"")


def peak_memory_of(code):
    """Run code in a fresh interpreter after importing the readers (audio, frames: what preprocessing re-exports,
    without TensorFlow's start-up); return (its output, peak RSS growth in MiB)."""
    program = (
        "import resource, sys\nsys.path.insert(0, %r)\nfrom pipeline import audio as preprocessing_audio, frames\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n%s\n"
        "print('growth', (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024)\n"
    ) % (ROOT, code)
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.strip().splitlines()
    return lines[:-1], float(lines[-1].split()[1])


def test_wav_header_claiming_megahertz_is_refused_cheaply(tmp_path):
    wav = tmp_path / "claims.wav"
    wav.write_bytes(tiny_wav_claiming(5_000_000))
    assert wav.stat().st_size == 50
    write_image(tmp_path / "claims.jpg")
    pairs, skipped = preprocessing.find_pairs(str(tmp_path))
    assert pairs == [] and len(skipped) == 1
    assert "claims.wav: sample rate of 5000000 Hz in the header is outside [1000, 384000] Hz" in skipped[0]
    output, growth = peak_memory_of(
        f"try:\n    preprocessing_audio.load_waveform({str(wav)!r}, 16000, 10.0)\nexcept ValueError as error:\n"
        "    print('refused', error)"
    )
    assert output[0].startswith("refused sample rate of 5000000 Hz")
    assert growth < 50, f"refusing a 50-byte wav grew the process by {growth:.0f} MiB"
    wav.write_bytes(tiny_wav_claiming(500))
    with pytest.raises(ValueError, match="sample rate of 500 Hz"):
        preprocessing.read_audio(str(wav))
    wav.write_bytes(tiny_wav_claiming(16000, channels=3))  # 6 bytes: one frame of 3 channels, fine
    assert preprocessing.read_audio(str(wav))[0].shape == (1,)
    wav.write_bytes(tiny_wav_claiming(16000, channels=200))
    with pytest.raises(ValueError, match="200 channels in the header"):
        preprocessing.load_waveform(str(wav), 16000, 1.0)


def test_a_file_whose_extension_lies_is_read_by_ffmpeg(tmp_path):
    scipy.io.wavfile.write(tmp_path / "source.wav", 16000, tone(16000, 1.0))
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(tmp_path / "source.wav"), "-c:a", "aac", "-f", "mp4",
                    str(tmp_path / "really_m4a.mp3")], check=True)
    assert preprocessing.audio_info(str(tmp_path / "really_m4a.mp3")).decoder == "ffmpeg"
    samples, rate = preprocessing.read_audio(str(tmp_path / "really_m4a.mp3"))
    assert rate == 16000 and abs(samples.shape[0] - 16000) < 2048 and np.abs(samples).max() > 0.4


def test_one_pixel_high_wide_png_and_bomb_are_refused_cheaply(tmp_path):
    (tmp_path / "strip.png").write_bytes(png_header_only(60000, 1))
    (tmp_path / "bomb.png").write_bytes(png_header_only(30000, 30000))
    for name in ("strip", "bomb"):
        scipy.io.wavfile.write(tmp_path / f"{name}.wav", 16000, tone(16000, 0.5))
    pairs, skipped = preprocessing.find_pairs(str(tmp_path))
    assert pairs == []
    text = "\n".join(skipped)
    assert "strip.png: image of 60000 x 1 pixels has aspect ratio 60000:1, beyond the 20:1" in text
    assert "bomb.png: decompression bomb: Image size (900000000 pixels) exceeds limit" in text
    output, growth = peak_memory_of(
        f"for path in ({str(tmp_path / 'strip.png')!r}, {str(tmp_path / 'bomb.png')!r}):\n"
        "    try:\n        frames.load_frame(path, 224)\n    except ValueError as error:\n"
        "        print('refused', error)"
    )
    assert output[0].startswith("refused image of 60000 x 1 pixels has aspect ratio")
    assert output[1].startswith("refused decompression bomb")
    assert growth < 50, f"refusing the frames grew the process by {growth:.0f} MiB"


# --- paths: symlinks, names, folders, globs -------------------------------------------------------------------

def test_dangling_and_looping_symlinks_and_non_utf8_names_are_named_skips(tmp_path):
    write_pair(tmp_path, "good")
    write_image(tmp_path / "dangling.jpg")
    os.symlink(tmp_path / "nowhere.wav", tmp_path / "dangling.wav")
    os.symlink("loop.jpg", tmp_path / "loop.jpg")  # points at itself
    scipy.io.wavfile.write(tmp_path / "loop.wav", 16000, tone(16000, 0.5))
    os.symlink(tmp_path, tmp_path / "cycle")  # a folder loop: never followed
    folder = os.fsencode(str(tmp_path))
    for extension, writer in ((b".jpg", write_image), (b".wav", None)):
        path = os.path.join(folder, b"caf\xe9" + extension)
        if writer:
            buffer = io.BytesIO()
            Image.new("RGB", (32, 32)).save(buffer, "JPEG")
            data = buffer.getvalue()
        else:
            buffer = io.BytesIO()
            scipy.io.wavfile.write(buffer, 16000, tone(16000, 0.5))
            data = buffer.getvalue()
        with open(path, "wb") as handle:
            handle.write(data)
    pairs, skipped = preprocessing.find_pairs(str(tmp_path))
    assert [pair.name for pair in pairs] == ["good"]
    text = "\n".join(skipped)
    assert "dangling.wav: cannot be read" in text and "dangling or looping symlink" in text
    assert "loop.jpg: cannot be read" in text
    assert "caf\\xe9.jpg: file name is not valid UTF-8" in text
    assert len(skipped) == 3
    text.encode("utf-8")  # printable as it is
    stream = io.StringIO()
    preprocessing.require_pairs(str(tmp_path), stream=stream)
    assert "3 file(s) skipped, 1 pair(s) usable" in stream.getvalue()


def test_unreadable_data_folder_is_one_error_line():
    """Read as an unprivileged user (the child drops root after its imports), the way a user meets it."""
    base = tempfile.mkdtemp()
    try:
        os.chmod(base, 0o755)
        locked = os.path.join(base, "locked")
        write_pair(locked, "x")
        write_pair(os.path.join(base, "partly", "0"), "y")
        write_pair(os.path.join(base, "partly", "1"), "z")
        os.chmod(locked, 0o000)
        os.chmod(os.path.join(base, "partly", "1"), 0o000)
        program = (
            "import os, sys; sys.path.insert(0, %r); from pipeline import preprocessing\n"
            "if os.geteuid() == 0:\n    os.setgid(65534); os.setuid(65534)  # nobody: root reads everything\n"
            "pairs = preprocessing.require_pairs(sys.argv[1])\nprint([pair.name for pair in pairs], flush=True)\n"
            "preprocessing.require_pairs(sys.argv[2])\n"
        ) % ROOT
        run = subprocess.run([sys.executable, "-c", program, os.path.join(base, "partly"), locked],
                             capture_output=True, text=True, timeout=300)
        assert run.returncode == 1 and "Traceback" not in run.stderr, run.stderr[-1500:]
        assert run.stdout.strip() == "['y']"
        assert f"skipped {os.path.join(base, 'partly', '1')}: unreadable folder (Permission denied)" in run.stderr
        assert run.stderr.strip().splitlines()[-1] == f"error: data folder cannot be read: {locked} (Permission denied)"
    finally:
        for root, folders, _ in os.walk(base):
            for name in folders:
                os.chmod(os.path.join(root, name), 0o755)
        subprocess.run(["rm", "-rf", base], check=True)


def test_a_data_dir_that_is_a_file_or_a_dangling_link_is_one_line(tmp_path):
    (tmp_path / "file").write_text("x")
    os.symlink(tmp_path / "nowhere", tmp_path / "dangling")
    with pytest.raises(SystemExit, match="error: data folder is a file, not a folder: "):
        preprocessing.require_pairs(str(tmp_path / "file"))
    with pytest.raises(SystemExit, match="error: data folder not found: "):
        preprocessing.require_pairs(str(tmp_path / "dangling"))


def test_glob_characters_in_paths_are_plain_characters(tmp_path):
    folder = tmp_path / "run [1] *?"
    write_pair(folder, "clip[0]*")
    write_pair(folder, "clip0")
    pairs, skipped = preprocessing.find_pairs(str(folder))
    assert [pair.name for pair in pairs] == ["clip0", "clip[0]*"] and skipped == []
    batches = list(preprocessing.make_dataset(pairs, {"image_size": 32, "sample_rate": 8000, "audio_seconds": 0.25},
                                              training=False, batch_size=2))
    assert batches[0]["frame"].shape[0] == 2


# --- wav variants -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["24-bit", "pipe"])
def test_24_bit_and_pipe_written_wavs_are_read(tmp_path, kind):
    reference = tone(16000, 0.5)
    scipy.io.wavfile.write(tmp_path / "source.wav", 16000, reference)
    write_image(tmp_path / "clip.jpg")
    arguments = ["-c:a", "pcm_s24le", str(tmp_path / "clip.wav")] if kind == "24-bit" else ["-f", "wav", "pipe:1"]
    with open(tmp_path / "clip.wav", "ab") as stdout:
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(tmp_path / "source.wav"), *arguments], check=True,
                       stdout=stdout if kind == "pipe" else None)
    os.remove(tmp_path / "source.wav")
    if kind == "pipe":
        assert (tmp_path / "clip.wav").read_bytes()[4:8] == b"\xff\xff\xff\xff"  # the size field is unset
    pairs, skipped = preprocessing.find_pairs(str(tmp_path))
    assert [pair.name for pair in pairs] == ["clip"] and skipped == []
    waveform = preprocessing.load_waveform(pairs[0].audio_path, 16000, 0.5)
    np.testing.assert_allclose(waveform, reference, atol=1e-4)


# --- ambiguity and the skipped count ------------------------------------------------------------------------

def test_two_frames_with_one_name_are_both_refused(tmp_path):
    write_pair(tmp_path, "a")
    write_image(tmp_path / "a.png", seed=1)
    write_pair(tmp_path, "b")
    pairs, skipped = preprocessing.find_pairs(str(tmp_path))
    assert [pair.name for pair in pairs] == ["b"]
    assert len(skipped) == 2
    for extension in ("jpg", "png"):
        assert any(line.startswith(f"{tmp_path / ('a.' + extension)}: ambiguous, 2 frames are named a") for line in skipped)


def test_report_skipped_count_matches_its_list():
    preprocessing.SKIPPED_WHILE_LOADING[:] = ["x.jpg: broken", "y.wav: broken", "x.jpg: broken"]  # two epochs
    stream = io.StringIO()
    lines = preprocessing.report_skipped(stream)
    printed = stream.getvalue().splitlines()
    assert printed[0] == "2 file(s) failed to decode and were skipped:"
    assert printed[1:] == ["  x.jpg: broken", "  y.wav: broken"] and lines == ["x.jpg: broken", "y.wav: broken"]
    preprocessing.SKIPPED_WHILE_LOADING.clear()
    stream = io.StringIO()
    assert preprocessing.report_skipped(stream) == [] and stream.getvalue() == ""


# --- Flickr-SoundNet layouts ----------------------------------------------------------------------------------

@pytest.mark.parametrize("layout", ["Data flat", "Data nested", "Data itself", "frames+audio"])
def test_flickr_soundnet_layouts(tmp_path, layout):
    root = tmp_path / "flickr"
    names = ["10000130166", "10000533", "2000911"]
    for index, name in enumerate(names):
        if layout == "frames+audio":
            os.makedirs(root / "frames", exist_ok=True)
            os.makedirs(root / "audio", exist_ok=True)
            write_image(root / "frames" / f"{name}.jpg", seed=index)
            scipy.io.wavfile.write(root / "audio" / f"{name}.wav", 22050, tone(22050, 0.5))
        else:
            folder = root / "Data" / (str(index % 10) if layout == "Data nested" else "")
            write_pair(folder, name, rate=22050)
    (root / "Annotations").mkdir()
    (root / "Annotations" / f"{names[0]}.xml").write_text("<annotation/>")
    data_dir = root / "Data" if layout == "Data itself" else root
    pairs, skipped = preprocessing.find_pairs(str(data_dir))
    assert sorted(pair.name for pair in pairs) == sorted(names) and skipped == []
    for pair in pairs:
        assert os.path.basename(pair.image_path) == pair.name + ".jpg"
        assert os.path.basename(pair.audio_path) == pair.name + ".wav"
    only, _ = preprocessing.find_pairs(str(data_dir), names=[names[1]])
    assert [pair.name for pair in only] == [names[1]]


# --- resampling quality -----------------------------------------------------------------------------------------

def test_soxr_resampling_keeps_the_passband_and_rejects_aliases_better_than_resample_poly(tmp_path):
    rate = 44100
    results = {}
    for frequency in (7200, 8400):  # 0.9 x the new Nyquist (8 kHz), and above it (would alias to 7.6 kHz)
        samples = tone(rate, 2.0, frequency) * 2  # amplitude 1
        scipy.io.wavfile.write(tmp_path / f"{frequency}.wav", rate, samples)
        ours, _ = preprocessing.read_audio(str(tmp_path / f"{frequency}.wav"), 16000)
        previous = scipy.signal.resample_poly(samples, 160, 441)
        results[frequency] = [np.sqrt(2 * np.mean(signal[4000:-4000] ** 2)) for signal in (ours, previous)]
    (ours_pass, previous_pass), (ours_alias, previous_alias) = results[7200], results[8400]
    assert abs(ours_pass - 1) < 0.01 and abs(previous_pass - 1) > 0.05  # measured: 0.999 vs 0.927
    assert ours_alias < 1e-4 and previous_alias > 0.1  # measured: 6e-8 vs 0.245
