"""preprocessing.py: spectrogram = scipy's, frames = torchvision's transforms, pairs and bad files."""

import os

import numpy as np
import pytest
import scipy.io.wavfile
import scipy.signal
import torch
import torchvision.transforms as transforms
import tensorflow as tf
from PIL import Image

from pipeline import preprocessing


def write_wav(path, samples, rate):
    scipy.io.wavfile.write(path, rate, samples)
    return str(path)


def write_image(path, size=(200, 150), mode="RGB", seed=0):
    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
    pixels = rng.integers(0, 256, size=(size[1], size[0], channels), dtype=np.uint8)
    Image.fromarray(pixels[..., 0] if mode == "L" else pixels, mode).save(path)
    return str(path)


def tone(rate, seconds, frequency=440.0, amplitude=0.5):
    time = np.arange(int(rate * seconds)) / rate
    return (amplitude * np.sin(2 * np.pi * frequency * time)).astype(np.float32)


@pytest.mark.parametrize("rate,width", [(16000, 671), (22050, 925)])
def test_spectrogram_equals_scipy(rate, width):
    samples = np.random.default_rng(rate).uniform(-1, 1, size=rate * 10).astype(np.float32)
    _, _, power = scipy.signal.spectrogram(samples, rate, nperseg=512, noverlap=274)
    expected = np.log(power + 1e-7) / 12
    ours = preprocessing.spectrogram(samples, rate).numpy()
    assert ours.shape == expected.shape == (257, width)
    assert preprocessing.spectrogram_width(rate, 10) == width
    np.testing.assert_allclose(ours, expected, atol=1e-5)


def test_spectrogram_batched_equals_one_by_one():
    samples = np.random.default_rng(1).uniform(-1, 1, size=(3, 8000)).astype(np.float32)
    batched = preprocessing.spectrogram(samples, 8000).numpy()
    for index in range(3):
        np.testing.assert_allclose(batched[index], preprocessing.spectrogram(samples[index], 8000).numpy(), atol=1e-6)


def test_short_audio_is_tiled_and_cut(tmp_path):
    pattern = np.linspace(-0.5, 0.5, 3000).astype(np.float32)  # 0.1875 s at 16 kHz
    path = write_wav(tmp_path / "short.wav", pattern, 16000)
    samples = preprocessing.load_waveform(path, 16000, 1.0)
    assert samples.shape == (16000,)
    np.testing.assert_allclose(samples[:3000], pattern)
    np.testing.assert_allclose(samples[3000:6000], pattern)
    np.testing.assert_allclose(samples[15000:], pattern[:1000])


def test_loud_float_audio_is_clipped_and_int16_scaled(tmp_path):
    loud = np.array([2.0, -3.0, 0.25] * 1000, np.float32)
    samples = preprocessing.load_waveform(write_wav(tmp_path / "loud.wav", loud, 8000), 8000, 0.375)
    assert samples.max() == 1.0 and samples.min() == -1.0
    assert samples[2] == pytest.approx(0.25)
    pcm = np.array([16384, -32768, 0] * 1000, np.int16)
    samples = preprocessing.load_waveform(write_wav(tmp_path / "pcm.wav", pcm, 8000), 8000, 0.375)
    np.testing.assert_allclose(samples[:3], [0.5, -1.0, 0.0])


def test_stereo_to_mono_and_resampling_keep_the_tone(tmp_path):
    left, right = tone(22050, 1.0, 1000.0, 0.6), tone(22050, 1.0, 1000.0, 0.2)
    stereo = (np.stack([left, right], axis=1) * 32767).astype(np.int16)  # frames x channels
    samples = preprocessing.load_waveform(write_wav(tmp_path / "stereo.wav", stereo, 22050), 16000, 1.0)
    assert samples.shape == (16000,)
    spectrum = np.abs(np.fft.rfft(samples))
    assert np.argmax(spectrum) * 16000 / 16000 == pytest.approx(1000, abs=2)  # 1 Hz bins
    assert np.abs(samples[2000:14000]).max() == pytest.approx(0.4, abs=0.01)  # mean of 0.6 and 0.2


def test_zero_length_audio_is_an_error(tmp_path):
    path = write_wav(tmp_path / "empty.wav", np.zeros(0, np.int16), 16000)
    with pytest.raises(ValueError, match="zero-length"):
        preprocessing.load_waveform(path, 16000, 1.0)


@pytest.mark.parametrize("size", [(320, 240), (240, 320), (224, 224)])
def test_evaluation_frame_equals_torchvision(tmp_path, size):
    path = write_image(tmp_path / "frame.jpg", size=size)
    reference = transforms.Compose([
        transforms.Resize(224, interpolation=transforms.InterpolationMode.BICUBIC),
        transforms.CenterCrop(224),
        transforms.ToTensor(),
        transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    ])(Image.open(path).convert("RGB"))
    ours = preprocessing.load_frame(path, 224)
    np.testing.assert_allclose(ours, reference.permute(1, 2, 0).numpy(), atol=1e-5)


def test_training_frame_is_a_crop_of_the_246_resize(tmp_path):
    path = write_image(tmp_path / "frame.png", size=(300, 200))
    first = preprocessing.load_frame(path, 224, training=True, rng=np.random.default_rng(3))
    again = preprocessing.load_frame(path, 224, training=True, rng=np.random.default_rng(3))
    np.testing.assert_array_equal(first, again)
    resized = Image.open(path).convert("RGB").resize((369, 246), Image.BICUBIC)
    full = (np.asarray(resized, np.float32) / 255 - preprocessing.IMAGENET_MEAN) / preprocessing.IMAGENET_STD
    found = False
    for flipped in (full, full[:, ::-1]):
        for top in range(246 - 224 + 1):
            for left in range(369 - 224 + 1):
                if np.allclose(flipped[top : top + 224, left : left + 224], first, atol=1e-6):
                    found = True
                    break
            if found:
                break
    assert found, "the training frame is not a 224 crop of the shorter-side-246 resize (or its mirror)"
    seeds = [preprocessing.load_frame(path, 224, training=True, rng=np.random.default_rng(seed)) for seed in range(6)]
    assert len({frame.tobytes() for frame in seeds}) > 1


@pytest.mark.parametrize("mode,extension", [("L", "jpg"), ("RGBA", "png"), ("RGB", "jpeg")])
def test_grayscale_rgba_png_frames_become_rgb(tmp_path, mode, extension):
    path = write_image(tmp_path / f"frame.{extension}", mode=mode)
    frame = preprocessing.load_frame(path, 64)
    assert frame.shape == (64, 64, 3) and frame.dtype == np.float32


def test_very_large_frame_and_silent_audio_are_usable(tmp_path):
    Image.new("RGB", (6000, 4000), (200, 30, 30)).save(tmp_path / "large.png")
    write_wav(tmp_path / "large.wav", np.zeros(16000, np.int16), 16000)  # silent: valid, just uninformative
    pairs, skipped = preprocessing.find_pairs(str(tmp_path))
    assert [pair.name for pair in pairs] == ["large"] and skipped == []
    frame = preprocessing.load_frame(pairs[0].image_path, 224)
    expected = (np.array([200, 30, 30], np.float32) / 255 - preprocessing.IMAGENET_MEAN) / preprocessing.IMAGENET_STD
    np.testing.assert_allclose(frame[112, 112], expected, atol=1e-5)
    silent = preprocessing.spectrogram(preprocessing.load_waveform(pairs[0].audio_path, 16000, 1.0), 16000).numpy()
    np.testing.assert_allclose(silent, np.log(1e-7) / 12, rtol=1e-6)


def make_folder(folder):
    """A folder with every kind of pair and of broken file."""
    folder.mkdir()
    rate = 16000
    for name in ("a", "b"):
        write_image(folder / f"{name}.jpg")
        write_wav(folder / f"{name}.wav", tone(rate, 0.5), rate)
    write_image(folder / "c.png", mode="RGBA")
    write_wav(folder / "c.wav", tone(22050, 0.5), 22050)  # another rate: resampled, same width
    write_image(folder / "image_7.jpg")
    write_wav(folder / "audio_7.wav", tone(rate, 0.5), rate)  # the seed's naming
    write_image(folder / "lonely.jpg")  # no wav
    write_wav(folder / "orphan.wav", tone(rate, 0.5), rate)  # no frame
    (folder / "corrupt.jpg").write_bytes(b"not a jpeg at all")
    write_wav(folder / "corrupt.wav", tone(rate, 0.5), rate)
    write_image(folder / "silent_empty.jpg")
    write_wav(folder / "silent_empty.wav", np.zeros(0, np.int16), rate)
    write_image(folder / "zero.jpg")
    (folder / "zero.wav").write_bytes(b"")
    # a frame whose header is fine but whose data is cut: found by find_pairs, fails while decoding
    whole = (folder / "a.jpg").read_bytes()
    (folder / "truncated.jpg").write_bytes(whole[: len(whole) // 3])
    write_wav(folder / "truncated.wav", tone(rate, 0.5), rate)
    return folder


def test_find_pairs_lists_usable_pairs_and_reasons(tmp_path):
    folder = make_folder(tmp_path / "pairs")
    pairs, skipped = preprocessing.find_pairs(str(folder))
    assert [pair.name for pair in pairs] == ["a", "b", "c", "image_7", "truncated"]
    assert pairs[3].audio_path.endswith("audio_7.wav")
    text = "\n".join(skipped)
    assert "lonely.jpg: no matching audio" in text
    assert "orphan.wav: no matching frame" in text
    assert "corrupt.jpg: unreadable image" in text
    assert "silent_empty.wav: zero-length audio" in text
    assert "zero.wav: unreadable audio" in text
    assert len(skipped) == 5


def test_official_frames_and_audio_layout(tmp_path):
    (tmp_path / "frames").mkdir()
    (tmp_path / "audio").mkdir()
    for name in ("x", "y"):
        write_image(tmp_path / "frames" / f"{name}.jpg")
        write_wav(tmp_path / "audio" / f"{name}.wav", tone(16000, 0.5), 16000)
    write_wav(tmp_path / "audio" / "z.wav", tone(16000, 0.5), 16000)
    pairs, skipped = preprocessing.find_pairs(str(tmp_path))
    assert [(pair.name, os.path.basename(os.path.dirname(pair.audio_path))) for pair in pairs] == [("x", "audio"), ("y", "audio")]
    assert skipped == [f"{tmp_path / 'audio' / 'z.wav'}: no matching frame"]


def test_dataset_skips_files_that_fail_to_decode(tmp_path, capsys):
    folder = make_folder(tmp_path / "pairs")
    pairs, _ = preprocessing.find_pairs(str(folder))
    preprocessing.SKIPPED_WHILE_LOADING.clear()
    settings = {"image_size": 64, "sample_rate": 16000, "audio_seconds": 1.0}
    dataset = preprocessing.make_dataset(pairs, settings, training=False, batch_size=2, with_names=True)
    names = []
    for inputs, batch_names in dataset:
        assert inputs["frame"].shape[1:] == (64, 64, 3)
        assert inputs["spectrogram"].shape[1:] == (257, preprocessing.spectrogram_width(16000, 1.0), 1)
        names += [name.decode() for name in batch_names.numpy()]
    assert names == ["a", "b", "c", "image_7"]
    assert len(preprocessing.SKIPPED_WHILE_LOADING) == 1 and "truncated.jpg" in preprocessing.SKIPPED_WHILE_LOADING[0]
    assert "warning: skipped" in capsys.readouterr().err


def test_training_dataset_shapes_and_augmentation(tmp_path):
    folder = make_folder(tmp_path / "pairs")
    pairs, _ = preprocessing.find_pairs(str(folder))
    settings = {"image_size": 32, "sample_rate": 8000, "audio_seconds": 0.5}
    dataset = preprocessing.make_dataset(pairs[:4], settings, training=True, batch_size=4, drop_remainder=True)
    first = next(iter(dataset))
    assert first["frame"].shape == (4, 32, 32, 3) and first["frame"].dtype == tf.uint8
    assert first["waveform"].shape == (4, 4000) and list(first["sample_rate"].numpy()) == [8000] * 4
    prepared = preprocessing.model_inputs(first)  # the model's input step
    assert prepared["frame"].shape == (4, 32, 32, 3) and prepared["frame"].dtype == tf.float32
    assert prepared["spectrogram"].shape == (4, 257, preprocessing.spectrogram_width(8000, 0.5), 1)
    for index in range(4):  # each item's spectrogram is the host's, bit for bit
        expected = preprocessing.spectrogram(first["waveform"][index][None], 8000)[0, ..., None]
        np.testing.assert_array_equal(prepared["spectrogram"][index].numpy(), expected.numpy())


def test_require_pairs_stops_with_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit, match="no usable frame/audio pairs"):
        preprocessing.require_pairs(str(tmp_path / "empty"))
    with pytest.raises(SystemExit, match="data folder not found"):
        preprocessing.require_pairs(str(tmp_path / "missing"))


def test_bad_settings_are_value_errors():
    with pytest.raises(ValueError, match="image_size"):
        preprocessing.check_settings({"image_size": 8})
    with pytest.raises(ValueError, match="samples"):
        preprocessing.check_settings({"sample_rate": 1000, "audio_seconds": 0.1})


@pytest.mark.parametrize("jit_compile", [False, True])
def test_the_models_input_step_equals_the_host_preparation(jit_compile):
    # Training batches carry 8-bit frames and waveforms; the model normalises them and takes the spectrogram on its
    # device, inside the train step (compiled with XLA where Keras' jit_compile="auto" picks it). The result must
    # be what the host prepares for evaluation: the spectrogram to 1e-5 (issue 21), the frame bit for bit (a lookup
    # of the host's values, so that training runs repeat the runs that normalised on the host).
    rng = np.random.default_rng(0)
    waveforms = np.clip(rng.standard_normal((3, 16000)) * 0.3, -1, 1).astype(np.float32)
    waveforms[1] *= 1e-4  # quiet: the log's offset dominates
    waveforms[2] = 0.0  # silence
    frames = rng.integers(0, 256, (3, 48, 48, 3), dtype=np.uint8)
    batch = {"frame": tf.constant(frames), "waveform": tf.constant(waveforms),
             "sample_rate": tf.constant([8000, 8000, 8000])}
    prepared = tf.function(preprocessing.model_inputs, jit_compile=jit_compile)(batch)
    expected = np.stack([preprocessing.spectrogram(waveform, 8000).numpy() for waveform in waveforms])[..., None]
    np.testing.assert_allclose(prepared["spectrogram"].numpy(), expected, rtol=0, atol=1e-5)
    np.testing.assert_array_equal(prepared["frame"].numpy(), preprocessing.normalise(frames))
    assert preprocessing.model_inputs({"frame": prepared["frame"], "spectrogram": prepared["spectrogram"]}) \
        ["spectrogram"] is prepared["spectrogram"]  # prepared batches (evaluation) pass through
