"""frames.load_frame's training decode at a reduced JPEG DCT scale, and audio.py's read of a wav at its own rate.

The reduced decode (PIL's Image.draft) moves training pixels: the augmented frame is bounded against today's full
decode (frames.prepare_frame on frames.open_frame, the path evaluation still takes), with the same random numbers,
on natural-looking 512 x 512 JPEGs as vggss_dl.py writes them (benchmarks/pipeline_speed.py's generator, ffmpeg's
mjpeg). Everything else (frames smaller than twice the training resize, PNGs, evaluation) must not move at all.
"""

import numpy as np
import pytest
import scipy.io.wavfile
import soundfile
from PIL import Image

from benchmarks import pipeline_speed
from pipeline import audio, frames

PIXEL_UNITS = frames.IMAGENET_STD * 255  # a normalised difference times this is in 0..255 units
# Measured mean absolute difference of the augmented 224 frame, full decode vs 1/2-scale decode, on 18 frame/seed
# pairs of the generator (75-80 KB JPEGs): 1.28 to 1.64 (mean 1.50) in 0..255 units; a sharp 720 x 477 photo squashed
# to 512 x 512 gave 4.4. For scale: moving the crop by one pixel gives 11.9 on these frames, a flip 55.
MAX_MEAN_DIFFERENCE = 3.0
MIN_MEAN_DIFFERENCE = 0.3  # below it, the reduced decode was not used


@pytest.fixture(scope="module")
def vggss_frames(tmp_path_factory):
    folder = tmp_path_factory.mktemp("vggss_like")
    names = pipeline_speed.write_vggss_like_pairs(str(folder), 3, seed=1)
    return [str(folder / f"{name}.jpg") for name in names]


def full_decode(path, seed, image_size=224, resize="crop"):
    """Today's training frame: the whole JPEG decoded, then the recipe (prepare_frame)."""
    return frames.prepare_frame(frames.open_frame(path), image_size, training=True, rng=np.random.default_rng(seed),
                                resize=resize)


def mean_difference(first, second):
    return float(np.abs((first - second) * PIXEL_UNITS).mean())


def test_reduced_decode_stays_close_to_the_full_decode(vggss_frames):
    with Image.open(vggss_frames[0]) as image:
        assert image.size == (512, 512)
        image.draft("RGB", frames.training_size(512, 512, 224, "crop"))
        assert image.size == (256, 256)  # 246 of 512: decoded at 1/2
    for path in vggss_frames:
        for seed in range(3):
            new = frames.load_frame(path, 224, training=True, rng=np.random.default_rng(seed))
            assert new.shape == (224, 224, 3) and new.dtype == np.float32
            difference = mean_difference(new, full_decode(path, seed))
            assert MIN_MEAN_DIFFERENCE < difference < MAX_MEAN_DIFFERENCE, (path, seed, difference)


def test_odd_sizes_and_squash_keep_the_crop_of_the_full_size_frame(tmp_path):
    """The resize target comes from the header, not from the reduced image (whose odd sides round up): the same
    crop and flip as the full decode, in both resize modes."""
    rng = np.random.default_rng(3)
    path = str(tmp_path / "odd.jpg")
    Image.fromarray(pipeline_speed.natural_frame(rng, size=640)).resize((601, 1013), Image.BICUBIC).save(path,
                                                                                                       quality=95)
    for resize in ("crop", "squash"):
        for seed in range(2):
            new = frames.load_frame(path, 160, training=True, rng=np.random.default_rng(seed), resize=resize)
            difference = mean_difference(new, full_decode(path, seed, 160, resize))
            assert MIN_MEAN_DIFFERENCE < difference < MAX_MEAN_DIFFERENCE, (resize, seed, difference)


@pytest.mark.parametrize("size,extension", [((320, 240), "jpg"), ((512, 512), "png")])
def test_small_jpegs_and_other_formats_decode_as_before(tmp_path, size, extension):
    """A JPEG under twice the training resize (320 x 240: 246 needs all of it) and a PNG (no DCT) are untouched."""
    path = str(tmp_path / f"frame.{extension}")
    Image.fromarray(pipeline_speed.natural_frame(np.random.default_rng(0), size=512)).resize(size).save(path)
    for seed in range(3):
        np.testing.assert_array_equal(frames.load_frame(path, 224, training=True, rng=np.random.default_rng(seed)),
                                      full_decode(path, seed))


def test_evaluation_decodes_in_full(vggss_frames):
    for resize in ("crop", "squash"):
        np.testing.assert_array_equal(frames.load_frame(vggss_frames[0], 224, resize=resize),
                                      frames.prepare_frame(frames.open_frame(vggss_frames[0]), 224, resize=resize))


def test_a_wav_at_the_models_rate_is_read_as_stored(tmp_path):
    """A 10 s 16 kHz 16-bit wav at 16 kHz: no resampling, every sample as libsndfile reads it (x / 32768)."""
    samples = pipeline_speed.natural_sound(np.random.default_rng(0))
    path = str(tmp_path / "clip.wav")
    scipy.io.wavfile.write(path, 16000, samples)
    waveform = audio.load_waveform(path, 16000, 10.0)
    assert waveform.dtype == np.float32 and waveform.shape == (160000,)
    np.testing.assert_array_equal(waveform, samples.astype(np.float32) / 32768)


def test_long_and_multichannel_files_read_block_by_block(tmp_path):
    """Over BLOCK_SAMPLES (two blocks joined) and with two channels (their mean), as libsndfile reads them."""
    rng = np.random.default_rng(1)
    mono = rng.integers(-32768, 32767, size=audio.BLOCK_SAMPLES + 5000, dtype=np.int16)
    scipy.io.wavfile.write(tmp_path / "long.wav", 16000, mono)
    samples, rate = audio.read_audio(str(tmp_path / "long.wav"))
    assert rate == 16000
    np.testing.assert_array_equal(samples, soundfile.read(tmp_path / "long.wav", dtype="float32")[0])
    stereo = rng.integers(-32768, 32767, size=(48000, 2), dtype=np.int16)  # frames x channels
    scipy.io.wavfile.write(tmp_path / "stereo.wav", 16000, stereo)
    expected = soundfile.read(tmp_path / "stereo.wav", dtype="float32", always_2d=True)[0].mean(axis=1)
    np.testing.assert_array_equal(audio.read_audio(str(tmp_path / "stereo.wav"))[0], expected)
