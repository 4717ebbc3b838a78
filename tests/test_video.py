"""video.py and video_prediction.py on real generated videos (ffmpeg): each map sees its own frame and its own
audio window, the output video keeps the input's frames, duration and audio, and broken input leaves nothing."""

import json
import subprocess

import numpy as np
import pytest
import tensorflow as tf

from pipeline import preprocessing
from pipeline import video
from visualization import video_prediction
from video_media import coded_frames, tones, write_video

FPS = 25
RATE = 16000
SETTINGS = {"image_size": 32, "sample_rate": 8000, "audio_seconds": 1.0}
LOW_TONE, HIGH_TONE, SWITCH, SECONDS = 400.0, 1000.0, 1.2, 3.0


def probe_forward(inputs):
    """A forward whose 2 x 2 "map" reports what it was fed: [0, 0] the frame's red value (0..255), [0, 1] the share
    of the window's power in the low tone's band (the rest is in the high tone's)."""
    frames = inputs["frame"]  # B x S x S x 3, ImageNet-normalised
    red = tf.reduce_mean(frames[..., 0] * preprocessing.IMAGENET_STD[0] + preprocessing.IMAGENET_MEAN[0], axis=[1, 2])
    power = tf.reduce_sum(tf.exp(inputs["spectrogram"][..., 0] * preprocessing.LOG_DIVISOR), axis=2)  # B x 257
    hertz_per_bin = SETTINGS["sample_rate"] / preprocessing.SPECTROGRAM_SEGMENT
    low = tf.reduce_sum(power[:, int(LOW_TONE / hertz_per_bin) - 4: int(LOW_TONE / hertz_per_bin) + 5], axis=1)
    high = tf.reduce_sum(power[:, int(HIGH_TONE / hertz_per_bin) - 4: int(HIGH_TONE / hertz_per_bin) + 5], axis=1)
    zeros = tf.zeros_like(red)
    similarity = tf.stack([tf.stack([red * 255.0, low / (low + high)], -1), tf.stack([zeros, zeros], -1)], 1)
    return {"similarity": similarity, "positive_mask": similarity}  # B x 2 x 2


def frames_seen(path, reds):
    """Which frame of the file each map's red value comes from: the decoded frame of nearest red (every frame's
    red differs from its neighbours' by about 3 levels, compression moves it by less than 0.5 here)."""
    decoded = np.array([frame[..., 0].mean() for frame in video.read_frames(str(path), video.probe(str(path)).fps)])
    distances = np.abs(np.asarray(reds)[:, None] - decoded[None, :])  # maps x frames
    assert distances.min(axis=1).max() < 0.5
    return list(distances.argmin(axis=1))


def expected_low_share(time, audio_length=SECONDS):
    """The stated rule: the window of audio_seconds centred on `time`, shifted to stay inside the audio."""
    begin = min(max(time - SETTINGS["audio_seconds"] / 2, 0.0), audio_length - SETTINGS["audio_seconds"])
    return min(max(SWITCH - begin, 0.0), SETTINGS["audio_seconds"]) / SETTINGS["audio_seconds"]


def ffprobe_streams(path):
    result = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-show_entries",
                             "stream=codec_type,width,height,nb_read_frames:format=duration", "-of", "json", str(path)],
                            capture_output=True, text=True, check=True)
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """3 s at 25 fps, frame colour = its index, 400 Hz until 1.2 s then 1000 Hz."""
    folder = tmp_path_factory.mktemp("clip")
    return write_video(folder / "clip.mp4", coded_frames(int(SECONDS * FPS)), FPS,
                       tones([(LOW_TONE, SWITCH), (HIGH_TONE, SECONDS - SWITCH)], RATE))


def run(path, out, **options):
    options = video_prediction.VideoOptions(save_heatmaps=True, batch_size=5, **options)
    summary = video_prediction.predict_video(probe_forward, SETTINGS, str(path), "clip", str(out), options)
    return summary, np.load(out / "clip_heatmaps.npy"), np.load(out / "clip_times.npy")


def test_each_map_uses_its_own_frame_and_audio_window(clip, tmp_path):
    summary, maps, times = run(clip, tmp_path, heatmap_fps=4.0)
    # maps at frames round(k * 25 / 4): 0, 6, 13, 19, 25, ...; their times are those frames' times
    indices = np.floor(np.arange(len(times)) * FPS / 4.0 + 0.5).astype(int)
    assert len(times) == 12 and summary["frame_count"] == 75
    np.testing.assert_allclose(times, indices / FPS)
    assert frames_seen(clip, maps[:, 0, 0]) == list(indices)
    shares = [expected_low_share(time) for time in times]
    np.testing.assert_allclose(maps[:, 0, 1], shares, atol=0.08)
    # the end rule is visible: at t = 0 the window is [0, 1] s (all low tone), at the last map [2, 3] s (all high)
    assert maps[0, 0, 1] > 0.9 and maps[-1, 0, 1] < 0.1 and 0.3 < maps[5, 0, 1] < 0.8  # t = 1.24 s straddles
    assert maps.dtype == np.float32 and maps.shape == (12, 2, 2)
    # the heatmap video: the input's frame count, duration, size, and an audio stream
    description = ffprobe_streams(tmp_path / "clip_heatmap.mp4")
    streams = {stream["codec_type"]: stream for stream in description["streams"]}
    assert int(streams["video"]["nb_read_frames"]) == 75
    assert (streams["video"]["width"], streams["video"]["height"]) == (64, 48)
    assert "audio" in streams and abs(float(description["format"]["duration"]) - SECONDS) < 0.1
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "clip.png", "clip_heatmap.mp4", "clip_heatmaps.npy", "clip_strip.png", "clip_times.npy"]


def test_start_and_duration_choose_the_span(clip, tmp_path):
    summary, maps, times = run(clip, tmp_path, start=1.0, duration=1.5, heatmap_fps=2.0)
    assert summary["frame_count"] == 38 and times[0] == pytest.approx(1.0) and times[-1] < 2.5
    assert frames_seen(clip, maps[:, 0, 0]) == [round(time * FPS) for time in times]
    np.testing.assert_allclose(maps[:, 0, 1], [expected_low_share(time) for time in times], atol=0.08)
    description = ffprobe_streams(tmp_path / "clip_heatmap.mp4")
    video_stream = [stream for stream in description["streams"] if stream["codec_type"] == "video"][0]
    assert int(video_stream["nb_read_frames"]) == 38 and abs(float(description["format"]["duration"]) - 1.52) < 0.1


@pytest.mark.parametrize("extension", [".webm", ".mkv", ".avi", ".mov"])
def test_containers_and_codecs(tmp_path, extension):
    path = write_video(tmp_path / f"clip{extension}", coded_frames(25), FPS, tones([(LOW_TONE, 1.0)], RATE))
    summary, maps, times = run(path, tmp_path / "out", heatmap_fps=FPS)  # every frame
    assert summary["frame_count"] == 25 and len(times) == 25
    assert frames_seen(path, maps[:, 0, 0]) == list(range(25))
    assert int([stream for stream in ffprobe_streams(tmp_path / "out" / "clip_heatmap.mp4")["streams"]
                if stream["codec_type"] == "video"][0]["nb_read_frames"]) == 25


def test_short_audio_is_tiled_and_interpolation_between_maps():
    samples = np.arange(3, dtype=np.float32) / 10
    np.testing.assert_array_equal(video_prediction.audio_window(samples, 4, 0.5, 2.0), np.tile(samples, 3)[:8])
    samples = np.arange(100, dtype=np.float32) / 100
    np.testing.assert_array_equal(video_prediction.audio_window(samples, 10, 5.0, 1.0), samples[45:55])
    np.testing.assert_array_equal(video_prediction.audio_window(samples, 10, 0.1, 1.0), samples[:10])
    np.testing.assert_array_equal(video_prediction.audio_window(samples, 10, 9.9, 1.0), samples[90:])
    maps = np.array([[[0.0]], [[1.0]]])
    indices = np.array([2, 6])
    assert [float(video_prediction.interpolated_map(index, indices, maps)[0, 0]) for index in range(8)] == [
        0.0, 0.0, 0.0, 0.25, 0.5, 0.75, 1.0, 1.0]
    assert list(video_prediction.computed_frame_indices(10, 25, 4)) == [0, 6]
    assert list(video_prediction.computed_frame_indices(5, 25, 50)) == [0, 1, 2, 3, 4]


def test_broken_truncated_and_silent_videos_leave_nothing(clip, tmp_path):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    with pytest.raises(video.VideoError, match="not a readable video"):
        video_prediction.check_video(str(broken))
    silent = write_video(tmp_path / "silent.mp4", coded_frames(10), FPS)
    with pytest.raises(video.VideoError, match="no audio track"):
        video_prediction.check_video(str(silent))
    webm = write_video(tmp_path / "long.webm", coded_frames(75), FPS, tones([(LOW_TONE, 3.0)], RATE))
    faststart = tmp_path / "faststart.mp4"  # the index first, so a cut file still opens
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(clip), "-c", "copy", "-movflags", "+faststart", str(faststart)],
                   check=True)
    for source in (webm, faststart, clip):
        truncated = tmp_path / f"truncated{source.suffix}"
        truncated.write_bytes(source.read_bytes()[: source.stat().st_size * 6 // 10])
        out = tmp_path / f"out_{source.stem}"
        with pytest.raises(video.VideoError, match="damaged or truncated|not a readable video"):
            video_prediction.check_video(str(truncated))
            run(truncated, out)
        assert not out.exists() or list(out.iterdir()) == []  # no output, no temporary file


def test_rotated_video_is_read_upright(tmp_path):
    source = write_video(tmp_path / "wide.mp4", coded_frames(5, 64, 48), FPS, tones([(LOW_TONE, 0.2)], RATE))
    rotated = tmp_path / "rotated.mp4"  # as a phone stores a portrait video: landscape pixels + a display rotation
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(source), "-c", "copy", "-metadata:s:v:0", "rotate=90",
                    str(rotated)], check=True)
    info = video.probe(str(rotated))
    assert (info.width, info.height) == (48, 64)
    frames = list(video.read_frames(str(rotated), info.fps))
    assert len(frames) == 5 and frames[0].shape == (64, 48, 3)


def test_writer_removes_its_file_on_failure(tmp_path):
    path = tmp_path / "out.mp4"
    with pytest.raises(ValueError, match="frame must be"):
        with video.VideoWriter(str(path), 32, 32, FPS) as writer:
            writer.write(np.zeros((32, 32, 3), np.uint8))
            writer.write(np.zeros((16, 16, 3), np.uint8))
    assert list(tmp_path.iterdir()) == []
    with video.VideoWriter(str(path), 32, 32, FPS) as writer:
        for _ in range(5):
            writer.write(np.zeros((32, 32, 3), np.uint8))
    assert video.probe(str(path)).width == 32 and not video.probe(str(path)).has_audio
