"""tensorflow_decode.py, the data service workers' decode, against the local one (frames.py, audio.py).

- JPEG at a reduced DCT scale: TensorFlow's decoder gives PIL's draft pixels bit for bit.
- The training resize (float antialiased bicubic instead of PIL's 8-bit fixed point) is bounded against
  frames.training_resized on natural-looking 512 x 512 JPEGs as vggss_dl.py writes them, odd sizes, a grayscale
  JPEG, a PNG and a frame too small for the reduced decode.
- The crop is a window of the resized frame, the flip happens about half the time, both are functions of the item
  seed.
- 16-bit PCM audio: the worker's int16 / 32768 is audio.load_waveform bit for bit, cut and tiled; what it cannot
  decode is refused.
"""

import numpy as np
import pytest
import scipy.io.wavfile
import tensorflow as tf
from PIL import Image

from benchmarks import pipeline_speed
from pipeline import audio, frames, preprocessing, tensorflow_decode

# Measured on the frames below: mean absolute difference 0.15 to 0.22, largest 2 (0..255 units); moving the crop by
# one pixel gives about 12 on these frames.
MAX_MEAN_DIFFERENCE = 0.35
MAX_DIFFERENCE = 3


@pytest.fixture(scope="module")
def frame_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tensorflow_decode")
    names = pipeline_speed.write_vggss_like_pairs(str(folder), 3, seed=2)
    paths = [str(folder / f"{name}.jpg") for name in names]
    photo = np.asarray(Image.open(paths[0]).convert("RGB"))
    extra = {"odd.jpg": photo[:501, :333], "wide.png": photo[:300, :511], "small.jpg": photo[:200, :260]}
    for name, pixels in extra.items():
        Image.fromarray(pixels).save(folder / name, quality=90)
    Image.fromarray(photo[:, :, 0]).save(folder / "gray.jpg", quality=90)
    return paths + [str(folder / name) for name in (*extra, "gray.jpg")]


def test_reduced_jpeg_decode_is_pils_draft_bit_for_bit(frame_files):
    for path in frame_files[:3]:
        image = Image.open(path)
        image.draft("RGB", (246, 246))
        contents = tf.io.read_file(path)
        decoded = tf.io.decode_jpeg(contents, channels=3, ratio=2, dct_method="INTEGER_ACCURATE").numpy()
        assert decoded.shape == (256, 256, 3)
        np.testing.assert_array_equal(decoded, np.asarray(image.convert("RGB")))


@pytest.mark.parametrize("resize", ["crop", "squash"])
def test_training_resize_is_bounded_against_pil(frame_files, resize):
    for path in frame_files:
        expected = frames.training_resized(path, 224, resize)
        got = tensorflow_decode.training_resized(tf.io.read_file(path), 224, resize).numpy()
        assert got.shape == expected.shape and got.dtype == np.uint8, path
        difference = np.abs(got.astype(np.int64) - expected)
        assert difference.mean() <= MAX_MEAN_DIFFERENCE, path
        assert difference.max() <= MAX_DIFFERENCE, path


def test_frame_shape_reads_headers(frame_files):
    for path in frame_files:
        width, height = Image.open(path).size
        assert tensorflow_decode.frame_shape(tf.io.read_file(path)).numpy().tolist() == [height, width]


def test_crop_and_flip_is_a_seeded_window_flipped_half_the_time(frame_files):
    resized = frames.training_resized(frame_files[3], 64, "crop")  # the odd-sized frame: 64 wide, taller
    flips = 0
    for position in range(40):
        seed = tf.constant([7, 0, 2, position], tf.int64)
        crop = tensorflow_decode.crop_and_flip(tf.constant(resized), 64, seed).numpy()
        again = tensorflow_decode.crop_and_flip(tf.constant(resized), 64, seed).numpy()
        np.testing.assert_array_equal(crop, again)
        assert crop.shape == (64, 64, 3)
        windows = [crop, crop[:, ::-1]]
        found = [any(np.array_equal(window, resized[top:top + 64, left:left + 64])
                     for top in range(resized.shape[0] - 63) for left in range(resized.shape[1] - 63))
                 for window in windows]
        assert any(found)
        flips += int(not found[0])
    assert 10 <= flips <= 30  # about half of 40


def test_decode_training_frame_in_a_dataset(frame_files):
    dataset = tf.data.Dataset.from_tensor_slices(frame_files).map(
        lambda path: tensorflow_decode.decode_training_frame(path, tf.constant([0, 0, 0, 1], tf.int64), 96, "squash"))
    for frame in dataset:
        assert frame.shape == (96, 96, 3) and frame.dtype == tf.uint8


def test_bombs_and_broken_files_raise_inside_the_graph(tmp_path):
    wide = tmp_path / "wide.png"
    Image.new("RGB", (2100, 100)).save(wide)  # 21:1
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    for path in (wide, broken):
        with pytest.raises(tf.errors.InvalidArgumentError):
            tensorflow_decode.decode_training_frame(tf.constant(str(path)), tf.constant([0, 0, 0, 0], tf.int64), 64,
                                                    "crop")


def test_waveform_is_the_local_one_bit_for_bit(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "sound.wav"
    scipy.io.wavfile.write(path, 16000, (rng.standard_normal(24000) * 6000).clip(-32768, 32767).astype(np.int16))
    for seconds in (1.0, 1.5, 3.7):  # cut, exact, tiled
        expected = audio.load_waveform(str(path), 16000, seconds)
        got = tensorflow_decode.decode_training_waveform(tf.constant(str(path)), 16000, seconds).numpy()
        assert got.dtype == np.int16
        np.testing.assert_array_equal(got.astype(np.float32) / preprocessing.PCM16_SCALE, expected)


def test_waveform_at_another_rate_or_stereo_raises(tmp_path):
    other_rate = tmp_path / "rate.wav"
    scipy.io.wavfile.write(other_rate, 8000, np.zeros(8000, np.int16))
    stereo = tmp_path / "stereo.wav"
    scipy.io.wavfile.write(stereo, 16000, np.zeros((16000, 2), np.int16))
    for path in (other_rate, stereo):
        with pytest.raises(tf.errors.InvalidArgumentError):
            tensorflow_decode.decode_training_waveform(tf.constant(str(path)), 16000, 1.0)


def test_model_inputs_takes_int16_waveforms_as_the_float_ones():
    rng = np.random.default_rng(1)
    samples = rng.integers(-32768, 32767, size=(2, 8000)).astype(np.int16)
    frame = rng.integers(0, 255, size=(2, 32, 32, 3)).astype(np.uint8)
    rate = tf.constant([8000, 8000], tf.int32)
    from_int16 = preprocessing.model_inputs({"frame": frame, "waveform": samples, "sample_rate": rate})
    from_float = preprocessing.model_inputs({"frame": frame, "sample_rate": rate,
                                             "waveform": samples.astype(np.float32) / preprocessing.PCM16_SCALE})
    for key in ("frame", "spectrogram"):
        np.testing.assert_array_equal(from_int16[key].numpy(), from_float[key].numpy())
