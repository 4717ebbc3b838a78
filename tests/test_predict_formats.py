"""predict.py on frame/audio pairs: every audio format against the same signal as wav, non-square frames with
--resize crop|squash, --sample_rate for an official checkpoint, output names that never collide."""

import subprocess

import keras
import numpy as np
import pytest
import scipy.io.wavfile
import torch
from PIL import Image

import predict
from pipeline import preprocessing
from model import build_model, load_checkpoint
from benchmarks.torch_reference import random_official_state_dict

RATE = 16000


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "model.keras"
    keras.utils.set_random_seed(0)  # fixed weights: how much a lossy codec moves the map is measured on this model
    build_model(image_weights="none", image_size=64, sample_rate=8000, audio_seconds=0.5).save(path)
    return path


def chord(frequencies, seconds=1.0, seed=0):
    times = np.arange(int(seconds * RATE)) / RATE
    noise = np.random.default_rng(seed).normal(0, 0.01, times.shape)
    return (sum(0.25 * np.sin(2 * np.pi * frequency * times) for frequency in frequencies) + noise).astype(np.float32)


def frame(path, width=64, height=64, seed=0):
    pixels = np.random.default_rng(seed).integers(0, 255, (height // 8, width // 8, 3)).astype(np.uint8)
    Image.fromarray(pixels).resize((width, height), Image.NEAREST).save(path)


def model_map(model, settings, image_path, audio_path, resize):
    """S_ii computed here from the preprocessing API: what predict.py must have saved."""
    pixels = preprocessing.prepare_frame(Image.open(image_path), settings["image_size"], resize=resize)
    samples, rate = preprocessing.read_audio(str(audio_path), settings["sample_rate"])
    waveform = preprocessing.prepare_waveform(samples, rate, settings["audio_seconds"])
    spectrogram = preprocessing.spectrogram(waveform[None], rate)[..., None]  # 1 x 257 x T x 1
    return model({"frame": pixels[None], "spectrogram": spectrogram})["similarity"].numpy()[0]


def test_audio_formats_match_the_same_signal_as_wav(checkpoint, tmp_path):
    folder = tmp_path / "pairs"
    folder.mkdir()
    signal, other = chord([440.0, 1250.0]), chord([250.0, 2100.0], seed=1)
    scipy.io.wavfile.write(folder / "as_wav.wav", RATE, signal)
    scipy.io.wavfile.write(folder / "other.wav", RATE, other)
    codecs = {"flac": [], "ogg": ["-c:a", "libvorbis", "-q:a", "8"], "mp3": ["-b:a", "192k"],
              "m4a": ["-c:a", "aac", "-b:a", "192k"]}
    for extension, arguments in codecs.items():
        subprocess.run(["ffmpeg", "-v", "error", "-i", str(folder / "as_wav.wav"), *arguments,
                        str(folder / f"as_{extension}.{extension}")], check=True)
    for stem in ["as_wav", "other", *(f"as_{extension}" for extension in codecs)]:
        frame(folder / f"{stem}.jpg")  # the same picture for every pair
    out = tmp_path / "out"
    predict.main(["--checkpoint", str(checkpoint), "--data_dir", str(folder), "--out_dir", str(out),
                  "--save_heatmaps"])
    maps = {path.stem: np.load(path) for path in out.glob("*.npy")}
    assert sorted(maps) == sorted(["as_wav", "other", *(f"as_{extension}" for extension in codecs)])
    different_sound = np.abs(maps["other"] - maps["as_wav"]).max()
    assert different_sound > 1e-3  # the map depends on the sound, so the comparisons below can fail
    np.testing.assert_allclose(maps["as_flac"], maps["as_wav"], atol=1e-5)  # lossless
    for extension in ("ogg", "mp3", "m4a"):  # lossy: much nearer the wav's map than another sound's
        assert np.abs(maps[f"as_{extension}"] - maps["as_wav"]).max() < 0.2 * different_sound, extension
    # --image with --audio reads them too, and writes the map computed from the preprocessing API
    model = load_checkpoint(str(checkpoint))
    predict.main(["--checkpoint", str(checkpoint), "--image", str(folder / "as_mp3.jpg"), "--audio",
                  str(folder / "as_mp3.mp3"), "--out_dir", str(tmp_path / "one"), "--save_heatmaps"])
    np.testing.assert_allclose(np.load(tmp_path / "one" / "as_mp3.npy"),
                               model_map(model, model.settings, folder / "as_mp3.jpg", folder / "as_mp3.mp3", "crop"),
                               atol=1e-5)


def test_non_square_frames_and_resize_modes(checkpoint, tmp_path):
    image, audio = tmp_path / "wide.png", tmp_path / "wide.wav"
    frame(image, width=160, height=64)
    scipy.io.wavfile.write(audio, RATE, chord([600.0]))
    model = load_checkpoint(str(checkpoint))
    results = {}
    for resize in ("crop", "squash"):
        out = tmp_path / resize
        predict.main(["--checkpoint", str(checkpoint), "--image", str(image), "--audio", str(audio), "--out_dir",
                      str(out), "--save_heatmaps", "--resize", resize])
        results[resize] = np.load(out / "wide.npy")
        np.testing.assert_allclose(results[resize], model_map(model, model.settings, image, audio, resize), atol=1e-5)
    assert np.abs(results["crop"] - results["squash"]).max() > 1e-4  # the two modes show the model different frames


def test_sample_rate_overrides_an_official_checkpoint_only(tmp_path, metadata_dir):
    path = tmp_path / "lvs.pth.tar"
    torch.save({"model_state_dict": random_official_state_dict(metadata_dir / "lvs_state_dict_keys.tsv", seed=2)}, path)
    model, settings = predict.load_model_and_settings(str(path), 11025)
    assert settings == {"image_size": 224, "sample_rate": 11025, "audio_seconds": 10.0}
    assert predict.load_model_and_settings(str(path), "native")[1]["sample_rate"] == "native"
    assert predict.load_model_and_settings(str(path), None)[1]["sample_rate"] == 16000
    frame(tmp_path / "a.jpg", 224, 224)
    scipy.io.wavfile.write(tmp_path / "a.wav", 22050, chord([500.0], seconds=2.0))
    predict.main(["--checkpoint", str(path), "--image", str(tmp_path / "a.jpg"), "--audio", str(tmp_path / "a.wav"),
                  "--out_dir", str(tmp_path / "out"), "--save_heatmaps", "--sample_rate", "native"])
    expected = model_map(model, dict(settings, sample_rate="native"), tmp_path / "a.jpg", tmp_path / "a.wav", "crop")
    np.testing.assert_allclose(np.load(tmp_path / "out" / "a.npy"), expected, atol=1e-4)


def test_output_names_never_collide():
    assert predict.output_names(["d/a.jpg", "d/a.png", "d/b.jpg"]) == ["a_jpg", "a_png", "b"]
    assert predict.output_names(["x/clip.mp4", "y/clip.mp4"]) == ["clip_mp4_0", "clip_mp4_1"]
    assert predict.output_names(["d/a.JPG", "d/a.jpg"]) == ["a_jpg_0", "a_jpg_1"]
