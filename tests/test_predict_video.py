"""predict.py --video / --video_dir as a user runs it: outputs, named skips, one-line errors, nothing partial."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import predict
from model import build_model
from video_media import coded_frames, tones, write_video

PROJECT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "model.keras"
    build_model(image_weights="none", image_size=64, sample_rate=8000, audio_seconds=0.5).save(path)
    return path


def count_frames(path):
    result = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-show_entries",
                             "stream=codec_type,width,height,nb_read_frames", "-of", "json", str(path)],
                            capture_output=True, text=True, check=True)
    return {stream["codec_type"]: stream for stream in json.loads(result.stdout)["streams"]}


def test_video_dir_names_every_skip_and_keeps_names_apart(checkpoint, tmp_path, capsys):
    folder = tmp_path / "videos[1]*"  # glob characters in a user path are just characters
    folder.mkdir()
    sound = tones([(300.0, 0.6), (900.0, 0.4)], 16000)
    write_video(folder / "same.mp4", coded_frames(25, 80, 60), 25, sound)
    write_video(folder / "same.webm", coded_frames(25, 80, 60), 25, sound)
    write_video(folder / "silent.mkv", coded_frames(10), 25)
    (folder / "broken.avi").write_bytes(b"RIFF\x10\x00\x00\x00AVI LIST" + bytes(200))
    (folder / "notes.txt").write_text("not a video")
    out = tmp_path / "out"
    predict.main(["--checkpoint", str(checkpoint), "--video_dir", str(folder), "--out_dir", str(out),
                  "--max_side", "40", "--heatmap_fps", "10"])
    captured = capsys.readouterr()
    assert "silent.mkv: no audio track" in captured.err and "broken.avi: not a readable video" in captured.err
    assert "2 video(s) skipped" in captured.err
    assert sorted(path.name for path in out.iterdir()) == sorted(
        f"same_{kind}{suffix}" for kind in ("mp4", "webm") for suffix in ("_heatmap.mp4", ".png", "_strip.png"))
    streams = count_frames(out / "same_webm_heatmap.mp4")
    assert int(streams["video"]["nb_read_frames"]) == 25 and "audio" in streams
    assert (streams["video"]["width"], streams["video"]["height"]) == (40, 30)  # --max_side, aspect kept


def test_one_video_errors_are_one_line_and_leave_nothing(checkpoint, tmp_path):
    silent = write_video(tmp_path / "silent.mp4", coded_frames(10), 25)
    source = write_video(tmp_path / "clip.webm", coded_frames(50), 25, tones([(440.0, 2.0)], 16000))
    truncated = tmp_path / "truncated.webm"
    truncated.write_bytes(source.read_bytes()[: source.stat().st_size // 2])
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, str(PROJECT / "predict.py"), "--checkpoint", str(checkpoint),
                             "--video", str(silent), "--out_dir", str(out)], cwd=PROJECT, capture_output=True,
                            text=True, timeout=300, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode != 0 and len(lines) == 1 and "no audio track" in lines[0], result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    for path, message in [(truncated, "damaged or truncated"), (tmp_path / "missing.mp4", "file not found")]:
        with pytest.raises(SystemExit) as stop:
            predict.main(["--checkpoint", str(checkpoint), "--video", str(path), "--out_dir", str(out)])
        assert str(stop.value.code).startswith("error: ") and message in str(stop.value.code)
        assert "\n" not in str(stop.value.code)
    assert not out.exists() or list(out.iterdir()) == []


def test_bad_video_flags(checkpoint, tmp_path):
    clip = write_video(tmp_path / "clip.mp4", coded_frames(25), 25, tones([(440.0, 1.0)], 16000))
    for arguments, message in [(["--start", "5"], "past the video's end"),
                               (["--sample_rate", "16000"], "--sample_rate is for official"),
                               (["--heatmap_fps", "0"], None), (["--start", "nan"], None),
                               (["--out_dir", str(clip)], "is a file, not a folder")]:
        with pytest.raises(SystemExit) as stop:
            predict.main(["--checkpoint", str(checkpoint), "--video", str(clip), "--out_dir", str(tmp_path / "o"),
                          *arguments])
        assert message is None or message in str(stop.value.code)
    assert not (tmp_path / "o").exists() or list((tmp_path / "o").iterdir()) == []
