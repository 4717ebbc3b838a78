"""data/make_demo_video.py: the clip shows the demo classes where its json says, the sound switches once between
their tones, and the score counts a map as following the sounding object only when its peak is there."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from pipeline import preprocessing
from pipeline import video

PROJECT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("make_demo_video", PROJECT / "data" / "make_demo_video.py")
make_demo_video = importlib.util.module_from_spec(spec)
spec.loader.exec_module(make_demo_video)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    folder = tmp_path_factory.mktemp("demo")
    path = make_demo_video.write_demo_video(folder, seconds=2.0, switch=1.2, size=96, fps=10, sample_rate=8000)
    return Path(path), json.loads((folder / "demo_video.json").read_text())


def dominant_frequency(samples, rate):
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return np.fft.rfftfreq(len(samples), 1 / rate)[np.argmax(spectrum)]


def test_clip_objects_and_sound_match_the_description(clip, tmp_path):
    path, description = clip
    info = video.probe(str(path))
    assert (info.width, info.height, info.fps, info.has_audio) == (96, 96, 10, True)
    frames = list(video.read_frames(str(path), info.fps))
    assert len(frames) == len(description["frames"]) == 20
    for frame, record in zip(frames[::5], description["frames"][::5]):
        disc, triangle = record["box"], record["silent_box"]
        if record["sounding"] != "red disc":
            disc, triangle = triangle, disc
        for box, channel in ((disc, 0), (triangle, 2)):  # a red disc, a blue triangle, where the json says
            x = int((box[0] + box[2]) / 2 * 96)
            y = int((box[1] * 0.3 + box[3] * 0.7) * 96)  # low in the box: inside the triangle too
            assert np.argmax(frame[y, x]) == channel and frame[y, x].max() > 180
    sounding = [record["sounding"] for record in description["frames"]]
    assert sounding == ["red disc"] * 12 + ["blue triangle"] * 8  # one switch, at 1.2 s
    tops = [record["box"][0] for record in description["frames"][:12]]
    assert all(later > earlier for earlier, later in zip(tops, tops[1:]))  # the sounding disc moves right
    video.extract_audio(str(path), str(tmp_path / "sound.wav"))
    samples, rate = preprocessing.read_audio(str(tmp_path / "sound.wav"))
    classes = {item.name: item.base_frequency for item in make_demo_video.make_demo.CLASSES}
    assert abs(dominant_frequency(samples[: int(1.0 * rate)], rate) - classes["red disc"]) < 5
    assert abs(dominant_frequency(samples[int(1.4 * rate):], rate) - classes["blue triangle"]) < 5


def test_score_needs_the_peak_on_the_sounding_object(clip):
    _, description = clip
    record = description["frames"][0]
    heatmaps = np.zeros((2, 7, 7), np.float32)
    for index, key in enumerate(("box", "silent_box")):
        box = record[key]
        heatmaps[index, int((box[1] + box[3]) / 2 * 7), int((box[0] + box[2]) / 2 * 7)] = 1.0
    inside, nearer = make_demo_video.peak_in_box(description, heatmaps, np.zeros(2))
    assert inside == [True, False] and nearer == [True, False]
