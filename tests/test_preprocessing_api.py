"""The preprocessing API other scripts build on: resize modes, any audio format, native rates grouped per batch."""

import subprocess

import numpy as np
import pytest
import scipy.io.wavfile
import scipy.signal
import torch  # noqa: F401  (torch before tensorflow in one process)
import torchvision.transforms as transforms
import tensorflow as tf
from PIL import Image

from pipeline import preprocessing

FORMATS = {  # extension -> (ffmpeg codec arguments, lossless)
    "flac": ([], True),
    "ogg": (["-c:a", "libvorbis", "-q:a", "8"], False),
    "mp3": (["-b:a", "256k"], False),
    "m4a": (["-c:a", "aac", "-b:a", "256k"], False),
    "aac": (["-c:a", "aac", "-b:a", "256k"], False),
}


def write_image(path, size=(200, 150), seed=0):
    pixels = np.random.default_rng(seed).integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return str(path)


def chord(rate, seconds, frequencies=(440.0, 1250.0), amplitude=0.3):
    time = np.arange(int(round(rate * seconds))) / rate
    return sum(amplitude * np.sin(2 * np.pi * frequency * time) for frequency in frequencies).astype(np.float32)


def expected_spectrogram(samples, rate):
    _, _, power = scipy.signal.spectrogram(samples, rate, nperseg=512, noverlap=274)
    return np.log(power + 1e-7) / 12


@pytest.mark.parametrize("size", [(320, 180), (180, 320), (100, 100)])
def test_squash_equals_torchvision_resize_square(tmp_path, size):
    path = write_image(tmp_path / "frame.png", size=size)
    reference = transforms.Compose([
        transforms.Resize((112, 112), interpolation=transforms.InterpolationMode.BICUBIC),
        transforms.ToTensor(),
        transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    ])(Image.open(path).convert("RGB"))
    ours = preprocessing.load_frame(path, 112, resize="squash")
    np.testing.assert_allclose(ours, reference.permute(1, 2, 0).numpy(), atol=1e-5)
    with Image.open(path) as image:
        np.testing.assert_array_equal(preprocessing.prepare_frame(image, 112, resize="squash"), ours)


def test_squash_training_is_a_crop_of_the_246_square(tmp_path):
    path = write_image(tmp_path / "frame.png", size=(320, 180))
    side = int(round(112 * 246 / 224))  # 123
    square = Image.open(path).convert("RGB").resize((side, side), Image.BICUBIC)
    full = (np.asarray(square, np.float32) / 255 - preprocessing.IMAGENET_MEAN) / preprocessing.IMAGENET_STD
    for seed in range(3):
        frame = preprocessing.load_frame(path, 112, training=True, rng=np.random.default_rng(seed), resize="squash")
        matches = [
            (top, left)
            for candidate in (full, full[:, ::-1])
            for top in range(side - 112 + 1)
            for left in range(side - 112 + 1)
            if np.allclose(candidate[top : top + 112, left : left + 112], frame, atol=1e-6)
        ]
        assert matches, "not a crop of the squashed 246/224 square (or its mirror)"
    with pytest.raises(ValueError, match="resize must be one of crop, squash"):
        preprocessing.load_frame(path, 112, resize="stretch")


def encode(wav_path, extension, tmp_path):
    codec, _ = FORMATS[extension]
    out = tmp_path / f"signal.{extension}"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(wav_path), *codec, str(out)], check=True)
    return str(out)


@pytest.mark.parametrize("extension", sorted(FORMATS))
def test_every_format_reads_as_the_same_signal_as_its_wav(tmp_path, extension):
    rate = 22050
    stereo = np.stack([chord(rate, 1.0), chord(rate, 1.0, (440.0,))], axis=1)  # frames x channels
    wav_path = tmp_path / "signal.wav"
    scipy.io.wavfile.write(wav_path, rate, (stereo * 32767).astype(np.int16))
    reference, reference_rate = preprocessing.read_audio(str(wav_path))
    assert reference_rate == rate and reference.shape == (rate,)
    path = encode(wav_path, extension, tmp_path)
    assert preprocessing.audio_sample_rate(path) == rate
    samples, found_rate = preprocessing.read_audio(path)
    assert found_rate == rate and samples.dtype == np.float32 and samples.ndim == 1
    if FORMATS[extension][1]:
        np.testing.assert_allclose(samples, reference, atol=1e-6)
        return
    # lossy codecs may add priming samples (raw aac has no edit list): align on the best lag, then compare.
    # Measured here: vorbis 0.8%, aac 0.07%, mp3 5.0% of the signal's RMS (LAME at 22.05 kHz)
    assert abs(samples.shape[0] - rate) <= 2112
    middle = reference[2000:18000]
    lags = range(0, 2113)
    errors = [np.sqrt(np.mean((samples[lag + 2000 : lag + 18000] - middle) ** 2)) for lag in lags
              if lag + 18000 <= samples.shape[0]]
    relative_error = min(errors) / np.sqrt(np.mean(middle**2))
    assert relative_error < 0.08, f"{extension}: {relative_error:.3f} of the signal differs from the wav's"


def test_resampled_read_and_waveform_rules(tmp_path):
    rate = 44100
    wav_path = tmp_path / "long.wav"
    scipy.io.wavfile.write(wav_path, rate, chord(rate, 3.0))
    samples, found_rate = preprocessing.read_audio(str(wav_path), 16000)
    assert found_rate == 16000 and samples.shape == (48000,)
    native, native_rate = preprocessing.read_audio(str(wav_path), preprocessing.NATIVE)
    assert native_rate == rate and native.shape == (3 * rate,)
    # only audio_seconds (+ a margin) is decoded, yet the cut equals resampling the whole file and cutting
    waveform = preprocessing.load_waveform(str(wav_path), 16000, 1.0)
    np.testing.assert_allclose(waveform, samples[:16000], atol=1e-4)
    assert preprocessing.load_waveform(str(wav_path), "native", 1.0).shape == (rate,)
    pattern = np.array([0.5, -2.0, 0.25], np.float32)
    np.testing.assert_array_equal(preprocessing.prepare_waveform(pattern, 4, 2.0), [0.5, -1, 0.25, 0.5, -1, 0.25, 0.5, -1])


def write_rate_folder(folder, rates):
    folder.mkdir()
    for index, rate in enumerate(rates):
        write_image(folder / f"clip{index}.jpg", seed=index)
        scipy.io.wavfile.write(folder / f"clip{index}.wav", rate, chord(rate, 0.7, (300.0 + 100 * index,)))
    return folder


@pytest.mark.parametrize("training", [False, True])
def test_native_rates_are_grouped_per_batch(tmp_path, training):
    rates = [8000, 11025, 8000, 11025, 8000, 11025, 8000]
    folder = write_rate_folder(tmp_path / "pairs", rates)
    pairs, skipped = preprocessing.find_pairs(str(folder))
    assert len(pairs) == 7 and skipped == []
    settings = {"image_size": 32, "sample_rate": "native", "audio_seconds": 0.5}
    assert preprocessing.check_settings(settings)["sample_rate"] == "native"
    dataset = preprocessing.make_dataset(pairs, settings, training=training, batch_size=3, with_names=True)
    width_to_rate = {preprocessing.spectrogram_width(rate, 0.5): rate for rate in (8000, 11025)}
    seen = []
    for inputs, names in dataset:
        if training:  # 8-bit frames and waveforms, finished by the model's input step (on the device)
            assert inputs["frame"].dtype == tf.uint8 and inputs["waveform"].dtype == tf.float32
            assert len(set(inputs["sample_rate"].numpy())) == 1  # one rate per batch, one per item
            prepared = preprocessing.model_inputs(inputs)
            # the same bits as the host's normalisation (what load_frame(training=True) gives)
            np.testing.assert_array_equal(prepared["frame"].numpy(), preprocessing.normalise(inputs["frame"].numpy()))
            inputs = prepared
        width = inputs["spectrogram"].shape[2]
        rate = width_to_rate[width]  # one width per batch: one rate per batch
        for index, name in enumerate(names.numpy()):
            name = name.decode()
            number = int(name[len("clip"):])
            assert rates[number] == rate
            waveform = preprocessing.load_waveform(str(folder / f"{name}.wav"), "native", 0.5)
            np.testing.assert_allclose(inputs["spectrogram"][index, ..., 0].numpy(),
                                       expected_spectrogram(waveform, rate), atol=1e-5)
            seen.append(name)
    assert sorted(seen) == [f"clip{index}" for index in range(7)]


def test_check_settings_rejects_absurd_values():
    for seconds in (1e9, float("inf"), float("nan"), 0, -1):
        with pytest.raises(ValueError, match="audio_seconds"):
            preprocessing.check_settings({"audio_seconds": seconds})
    for rate in (10_000_000, 10, "fast"):
        with pytest.raises(ValueError, match="sample_rate"):
            preprocessing.check_settings({"sample_rate": rate})
