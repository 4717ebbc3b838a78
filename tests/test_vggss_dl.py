"""vggss_dl.py without the internet: clips made with ffmpeg, served by a real HTTP server on 127.0.0.1 with byte ranges.

The test video is 20 s, 160x120, 10 fps. Its "clock" is a white bar on black whose left edge is at x = 6 * t pixels
(t = the video time in seconds; drawn by ffmpeg's geq filter, no fonts needed), so the frame a pair holds says the
time it was taken at. Its sound is a chirp whose frequency is 200 + 50 * t Hz, so the middle of a wav says the time
it was cut around. yt-dlp's generic extractor downloads the direct http://127.0.0.1:PORT/ID.mp4 URLs given by
--url_template, and uses ffmpeg to fetch only the requested section.
"""

import csv
import http.server
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import scipy.io.wavfile
from PIL import Image

from downloading import clip_cutting
from downloading import item_lists
import vggss_dl

PROJECT = Path(__file__).resolve().parents[1]
VIDEO_SECONDS = 20
PIXELS_PER_SECOND = 6
BAR_WIDTH = 6

PRESENT = ["abcdefghijk_000003", "a-b_c-d_e-f_000007"]  # an id with '-' and '_' in it
SLOW_DOWN = "slow-down-1_000005"  # answered with HTTP 429 once, then served
GONE = "Gone_video0_000003"  # not on the server: HTTP 404
TOO_SHORT = "abcdefghijk_000015"  # the section 15..20 s holds no frame at 5 s
SERVED_IDS = ["abcdefghijk", "a-b_c-d_e-f", "slow-down-1"]


def middle_second(name):
    """Time in the full video of the middle of an item's section."""
    return item_lists.parse_item_name(name)[1] + 5


class RangeRequestHandler(http.server.BaseHTTPRequestHandler):
    """Serves files from `root` with Range support; logs (path, range, status); answers 429 to `throttle_once`."""

    root = None
    log = None
    log_lock = threading.Lock()
    throttle_once = set()

    def log_message(self, *arguments):
        pass

    def record(self, status):
        with self.log_lock:
            self.log.append((self.path, self.headers.get("Range"), status))

    def serve(self, with_body):
        filename = os.path.basename(self.path.split("?")[0])
        with self.log_lock:
            throttled = filename in self.throttle_once
            self.throttle_once.discard(filename)
        if throttled:
            self.record(429)
            self.send_error(429, "Too Many Requests")
            return
        path = os.path.join(self.root, filename)
        if not os.path.isfile(path):
            self.record(404)
            self.send_error(404, "Not Found")
            return
        size = os.path.getsize(path)
        first, last, status = 0, size - 1, 200
        match = re.fullmatch(r"bytes=(\d*)-(\d*)", self.headers.get("Range", ""))
        if match and (match.group(1) or match.group(2)):
            if match.group(1):
                first = int(match.group(1))
                last = min(int(match.group(2)), size - 1) if match.group(2) else size - 1
            else:
                first = max(0, size - int(match.group(2)))
            if first >= size:
                self.record(416)
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.end_headers()
                return
            status = 206
        self.record(status)
        self.send_response(status)
        self.send_header("Content-Type", "video/mp4")
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(last - first + 1))
        if status == 206:
            self.send_header("Content-Range", f"bytes {first}-{last}/{size}")
        self.end_headers()
        if with_body:
            with open(path, "rb") as handle:
                handle.seek(first)
                try:
                    self.wfile.write(handle.read(last - first + 1))
                except (BrokenPipeError, ConnectionResetError):
                    pass

    def do_GET(self):
        self.serve(True)

    def do_HEAD(self):
        self.serve(False)


def make_clock_video(path, seconds=VIDEO_SECONDS, start=0.0):
    """An H.264/AAC mp4 of the clock bar and the chirp, from video time `start` for `seconds`."""
    bar = f"if(between(X,T*{PIXELS_PER_SECOND},T*{PIXELS_PER_SECOND}+{BAR_WIDTH - 1}),255,16)"
    chirp = "0.5*sin(2*PI*(200*t+25*t*t))"
    subprocess.run(["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
                    "-f", "lavfi", "-i", f"color=c=black:s=160x120:r=10:d={VIDEO_SECONDS},format=gray,geq=lum='{bar}'",
                    "-f", "lavfi", "-i", f"aevalsrc=exprs='{chirp}|{chirp}':s=44100:d={VIDEO_SECONDS}",
                    "-ss", str(start), "-t", str(seconds), "-c:v", "libx264", "-pix_fmt", "yuv420p",
                    "-c:a", "aac", "-movflags", "+faststart", str(path)], check=True)
    return path


def frame_second(jpg_path):
    """Read the clock: the time shown by the white bar of a frame (of any width: 160 pixels stand for the video's)."""
    gray = np.asarray(Image.open(jpg_path).convert("L"), dtype=np.float64)
    columns = np.nonzero(gray.mean(axis=0) > 128)[0]
    assert len(columns) > 0, f"no clock bar in {jpg_path}"
    scale = gray.shape[1] / 160
    return ((columns.mean() + 0.5) / scale - 0.5 - (BAR_WIDTH - 1) / 2) / PIXELS_PER_SECOND


def wav_middle_second(wav_path):
    """Read the chirp: the video time at the middle of a wav, from its zero-crossing frequency there."""
    rate, samples = scipy.io.wavfile.read(wav_path)
    window = samples[len(samples) // 2 - rate // 20: len(samples) // 2 + rate // 20].astype(np.float64)
    frequency = np.count_nonzero(np.diff(np.signbit(window))) / 2 / 0.1
    return (frequency - 200) / 50


def write_items(path, names):
    path.write_text(json.dumps([{"file": name, "class": "clock tone", "bbox": [[0.1, 0.1, 0.5, 0.5]]}
                                for name in names]))
    return str(path)


def hidden_leftovers(folder):
    return sorted(name for name in os.listdir(folder)
                  if name.endswith(vggss_dl.TEMP_SUFFIX) or name == vggss_dl.WORK_DIR)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """(url_template, request log, handler class) of a threaded HTTP server with the clock video under 3 ids."""
    if shutil.which("ffmpeg") is None:
        pytest.fail("ffmpeg is needed (apt-get install ffmpeg)")
    root = tmp_path_factory.mktemp("served")
    make_clock_video(root / f"{SERVED_IDS[0]}.mp4")
    for video_id in SERVED_IDS[1:]:
        shutil.copy(root / f"{SERVED_IDS[0]}.mp4", root / f"{video_id}.mp4")
    handler = type("Handler", (RangeRequestHandler,), {"root": str(root), "log": [], "throttle_once": set()})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/{{id}}.mp4", handler.log, handler, root
    httpd.shutdown()
    httpd.server_close()


def pair_mtimes(folder):
    return {path.name: path.stat().st_mtime_ns for pattern in ("*.jpg", "*.wav") for path in folder.glob(pattern)}


def requests_for(log, video_id):
    return [entry for entry in log if entry[0] == f"/{video_id}.mp4"]


@pytest.fixture(scope="module")
def first_run(server, tmp_path_factory):
    """One download run over 2 present items, a throttled one, a 404 and a too-short section."""
    url_template, log, handler, _ = server
    folder = tmp_path_factory.mktemp("first_run")
    items = write_items(folder / "items.json", PRESENT + [SLOW_DOWN, GONE, TOO_SHORT])
    out_dir = folder / "pairs"
    handler.throttle_once.add("slow-down-1.mp4")
    result = vggss_dl.main(["--json", items, "--out_dir", str(out_dir), "--url_template", url_template,
                            "--workers", "2", "--sleep", "0", "--backoff", "0", "--retries", "2"])
    return out_dir, items, result, list(log)


def test_parse_item_name():
    assert item_lists.parse_item_name("zpWuikVorYg_000032") == ("zpWuikVorYg", 32)
    assert item_lists.parse_item_name("JIemsK_0lXc_000364") == ("JIemsK_0lXc", 364)
    assert item_lists.parse_item_name("-_-_-_-_-_-_7") == ("-_-_-_-_-_-", 7)
    for bad in ["zpWuikVorY_000032", "zpWuikVorYg000032", "zpWuikVorYg_", "zpWuik/orYg_000032",
                "zpWuikVorYg_00003a", "../../etc/pa_000001", "zpWuikVorYg_000032 ", 32]:
        with pytest.raises(ValueError):
            item_lists.parse_item_name(bad)


def test_failure_reasons_of_ytdlp_messages():
    cases = {
        "ERROR: [youtube] zpWuikVorYg: Video unavailable": ("unavailable", False),
        "ERROR: [youtube] x: Video unavailable. This video is private": ("private", False),
        "ERROR: [youtube] x: Private video. Sign in if you've been granted access to this video": ("private", False),
        "ERROR: [youtube] x: Video unavailable. This video has been removed by the uploader": ("removed", False),
        "ERROR: [youtube] x: Video unavailable. This video is no longer available because the YouTube account "
        "associated with this video has been terminated.": ("removed", False),
        "ERROR: [youtube] x: Sign in to confirm your age. This video may be inappropriate for some users.":
            ("age_restricted", False),
        "ERROR: [youtube] x: Sign in to confirm you\u2019re not a bot.": ("bot_check", True),
        "ERROR: [generic] x: Unable to download webpage: HTTP Error 404: Not Found": ("http_404", False),
        "ERROR: unable to download video data: HTTP Error 429: Too Many Requests": ("rate_limited", True),
        "ERROR: unable to download video data: HTTP Error 503: Service Unavailable": ("http_503", True),
        "ERROR: [youtube] x: Unable to download API page: The read operation timed out": ("timeout", True),
        "ERROR: [youtube] x: Unable to download webpage: <urlopen error [Errno 111] Connection refused>":
            ("network", True),
        "ERROR: Unsupported URL: http://example.com/": ("unsupported_url", False),
        "ffmpeg failed: Error writing trailer: No space left on device": ("disk_full", False),
        "something nobody expected": ("error", False),
    }
    for message, expected in cases.items():
        assert vggss_dl.failure_reason(message) == expected, message


def test_dry_run_parses_and_selects_the_real_list(metadata_dir, tmp_path, capsys):
    real_json = str(metadata_dir / "vggss.json")
    items = item_lists.load_items(real_json)
    raw = json.loads((metadata_dir / "vggss.json").read_text())
    assert [item.name for item in items] == [entry["file"] for entry in raw]
    assert all(len(item.video_id) == 11 and f"{item.video_id}_{item.start_seconds:06d}" == item.name for item in items)

    out_dir = tmp_path / "out"
    result = vggss_dl.main(["--json", real_json, "--out_dir", str(out_dir), "--dry_run",
                            "--classes", "elk bugling", "female speech, woman speaking", "--limit", "7"])
    wanted = [entry["file"] for entry in raw if entry["class"] in ("elk bugling", "female speech, woman speaking")]
    assert result["todo"] == wanted[:7]
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].split("\t")[:2] == [wanted[0], f"https://www.youtube.com/watch?v={wanted[0][:11]}"]
    assert "7 of 7 selected items would be fetched" in printed[-1]
    assert not out_dir.exists()  # a dry run writes nothing

    ids_file = tmp_path / "ids.csv"
    test_names = (metadata_dir / "vggss_test.csv").read_text().split()[:5]
    ids_file.write_text("name\n" + "\n".join(test_names[:4]) + f"\n{test_names[4][:11]}\n")  # header + a bare id
    result = vggss_dl.main(["--json", real_json, "--out_dir", str(out_dir), "--dry_run", "--ids", str(ids_file)])
    expected = [entry["file"] for entry in raw
                if entry["file"] in test_names[:4] or entry["file"][:11] == test_names[4][:11]]
    assert result["todo"] == expected and len(expected) >= 5

    with pytest.raises(SystemExit) as stop:
        vggss_dl.main(["--json", real_json, "--out_dir", str(out_dir), "--dry_run", "--classes", "elk bugeling"])
    assert "unknown class 'elk bugeling'" in stop.value.code and "elk bugling" in stop.value.code


def test_clear_one_line_errors(tmp_path, monkeypatch, capsys):
    out_dir = str(tmp_path / "out")
    broken = tmp_path / "broken.json"
    broken.write_text('[{"file": "zpWuikVorYg_000032",')
    not_a_list = tmp_path / "dict.json"
    not_a_list.write_text('{"file": "zpWuikVorYg_000032"}')
    bad_name = tmp_path / "bad_name.json"
    bad_name.write_text('[{"file": "zpWuikVorYg_000032"}, {"file": "x;rm -rf ~_000001"}]')
    for path in [broken, not_a_list, bad_name, tmp_path / "missing.json"]:
        with pytest.raises(SystemExit) as stop:
            vggss_dl.main(["--json", str(path), "--out_dir", out_dir, "--dry_run"])
        assert isinstance(stop.value.code, str) and "\n" not in stop.value.code
        assert stop.value.code.startswith("error: ") and str(path) in stop.value.code

    with pytest.raises(SystemExit) as stop:
        vggss_dl.main(["--json", str(broken), "--out_dir", out_dir, "--url_template", "http://mirror/video.mp4"])
    assert stop.value.code == 2 and "--url_template must contain {id}" in capsys.readouterr().err

    monkeypatch.setenv("PATH", str(tmp_path))  # a PATH without ffmpeg
    with pytest.raises(SystemExit) as stop:
        vggss_dl.main(["--json", str(broken), "--out_dir", out_dir])
    message = stop.value.code
    assert "\n" not in message and "ffmpeg" in message
    assert "apt-get install ffmpeg" in message and "conda install" in message


def test_download_cuts_middle_frame_and_audio(first_run):
    out_dir, _, result, _ = first_run
    assert (result["done"], result["failed"]) == (3, 2)
    for name in PRESENT + [SLOW_DOWN]:
        image = Image.open(out_dir / f"{name}.jpg")
        assert image.size == (512, 512)  # squashed to a square by default
        assert frame_second(out_dir / f"{name}.jpg") == pytest.approx(middle_second(name), abs=0.25)
        rate, samples = scipy.io.wavfile.read(out_dir / f"{name}.wav")
        assert (rate, samples.ndim, samples.dtype, len(samples)) == (16000, 1, np.int16, 3 * 16000)
        assert wav_middle_second(out_dir / f"{name}.wav") == pytest.approx(middle_second(name), abs=0.3)
    with open(out_dir / "manifest.csv", newline="") as handle:
        manifest = list(csv.DictReader(handle))
    assert sorted(row["name"] for row in manifest) == sorted(PRESENT + [SLOW_DOWN])
    assert {row["image"] for row in manifest} == {f"{name}.jpg" for name in PRESENT + [SLOW_DOWN]}
    assert hidden_leftovers(out_dir) == []


def test_failures_are_recorded_and_transient_errors_retried(first_run):
    out_dir, _, result, log = first_run
    with open(out_dir / "failures.csv", newline="") as handle:
        failures = {row["name"]: row for row in csv.DictReader(handle)}
    assert set(failures) == {GONE, TOO_SHORT}
    assert failures[GONE]["reason"] == "http_404" and "404" in failures[GONE]["message"]
    assert failures[TOO_SHORT]["reason"] == "too_short"
    assert result["failure_reasons"] == {"http_404": 1, "too_short": 1}
    assert not (out_dir / f"{GONE}.jpg").exists() and not (out_dir / f"{GONE}.wav").exists()
    throttled = requests_for(log, "slow-down-1")
    assert throttled[0][2] == 429 and any(entry[2] in (200, 206) for entry in throttled[1:])
    assert any(entry[1] is not None and entry[2] == 206 for entry in log)  # ffmpeg read the clips by byte ranges


def test_rerun_skips_finished_and_failed_and_retry_failed_retries(first_run, server):
    out_dir, items, _, _ = first_run
    url_template, log, _, _ = server
    common = ["--json", items, "--out_dir", str(out_dir), "--url_template", url_template, "--sleep", "0",
              "--backoff", "0"]
    mtimes = pair_mtimes(out_dir)
    (out_dir / f".{PRESENT[0]}.wav{vggss_dl.TEMP_SUFFIX}").write_bytes(b"half a wav")  # left by a killed run
    requests_before = len(log)
    result = vggss_dl.main(common)
    assert (result["done"], result["failed"], result["finished_before"], result["failed_before"]) == (0, 0, 3, 2)
    assert len(log) == requests_before  # nothing was fetched
    assert pair_mtimes(out_dir) == mtimes
    assert hidden_leftovers(out_dir) == []

    result = vggss_dl.main(common + ["--retry_failed", "http_404"])
    assert (result["done"], result["failed"], result["failed_before"]) == (0, 1, 1)
    assert len(requests_for(log, "Gone_video0")) == 2
    with open(out_dir / "failures.csv", newline="") as handle:
        assert {row["name"]: row["reason"] for row in csv.DictReader(handle)} == {GONE: "http_404",
                                                                                   TOO_SHORT: "too_short"}


def test_whole_section_audio_and_kept_video(server, tmp_path):
    url_template = server[0]
    items = write_items(tmp_path / "items.json", PRESENT)
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text(PRESENT[1] + "\n")
    out_dir = tmp_path / "pairs"
    result = vggss_dl.main(["--json", items, "--out_dir", str(out_dir), "--url_template", url_template,
                            "--ids", str(ids_file), "--audio_seconds", "10", "--sample_rate", "22050",
                            "--keep_video", "--sleep", "0"])
    assert result["done"] == 1 and sorted(os.listdir(out_dir / "videos")) == [f"{PRESENT[1]}.mp4"]
    rate, samples = scipy.io.wavfile.read(out_dir / f"{PRESENT[1]}.wav")
    assert (rate, samples.ndim, len(samples)) == (22050, 1, 10 * 22050)
    assert wav_middle_second(out_dir / f"{PRESENT[1]}.wav") == pytest.approx(middle_second(PRESENT[1]), abs=0.3)
    # the whole section, centred: its first samples are the chirp at the start second (200 + 50 * 7 Hz)
    head = samples[: rate // 10].astype(np.float64)
    assert np.count_nonzero(np.diff(np.signbit(head))) / 2 / 0.1 == pytest.approx(200 + 50 * 7.05, abs=15)
    kept = clip_cutting.probe_clip(str(out_dir / "videos" / f"{PRESENT[1]}.mp4"))
    assert kept["duration"] == pytest.approx(10.0, abs=0.3)  # only the section was fetched, not the 20 s video
    assert frame_second(out_dir / f"{PRESENT[1]}.jpg") == pytest.approx(middle_second(PRESENT[1]), abs=0.25)


def test_killed_run_resumes_without_redoing_pairs(server, tmp_path):
    url_template = server[0]
    names = ["abcdefghijk_000001", "abcdefghijk_000004", "a-b_c-d_e-f_000006", "slow-down-1_000009"]
    items = write_items(tmp_path / "items.json", names)
    out_dir = tmp_path / "pairs"
    command = [sys.executable, str(PROJECT / "vggss_dl.py"), "--json", items, "--out_dir", str(out_dir),
               "--url_template", url_template, "--workers", "1", "--backoff", "0"]
    with open(tmp_path / "stderr.txt", "wb") as stderr:
        process = subprocess.Popen(command + ["--sleep", "1"], stdout=subprocess.DEVNULL, stderr=stderr,
                                   start_new_session=True)
        try:
            deadline = time.monotonic() + 60
            while not list(out_dir.glob("*.jpg")) and process.poll() is None and time.monotonic() < deadline:
                time.sleep(0.02)
        finally:
            os.killpg(process.pid, signal.SIGKILL)  # the script and its ffmpeg children, as a crash would
            process.wait()
    assert process.returncode == -signal.SIGKILL, (tmp_path / "stderr.txt").read_text()
    finished = {path.stem for path in out_dir.glob("*.jpg")}
    assert 1 <= len(finished) < len(names)
    for name in finished:  # a frame never exists without its wav, and neither is truncated
        assert (out_dir / f"{name}.wav").is_file()
        assert len(scipy.io.wavfile.read(out_dir / f"{name}.wav")[1]) == 3 * 16000
        Image.open(out_dir / f"{name}.jpg").load()
    mtimes = {path.name: path.stat().st_mtime_ns for path in out_dir.iterdir() if path.stem in finished}

    result = vggss_dl.main(command[2:] + ["--sleep", "0"])
    assert result["finished_before"] == len(finished) and result["done"] == len(names) - len(finished)
    assert {path.name: path.stat().st_mtime_ns for path in out_dir.iterdir() if path.stem in finished} == mtimes
    for name in names:
        assert frame_second(out_dir / f"{name}.jpg") == pytest.approx(middle_second(name), abs=0.25)
        assert len(scipy.io.wavfile.read(out_dir / f"{name}.wav")[1]) == 3 * 16000
    assert hidden_leftovers(out_dir) == []


def test_from_videos_gives_the_same_pairs(first_run, tmp_path):
    download_dir, _, _, _ = first_run
    clips = tmp_path / "VGGSound" / "video"
    (clips / "part2").mkdir(parents=True)
    make_clock_video(clips / "abcdefghijk_3.mp4")  # a full 20 s video, start without zero padding
    make_clock_video(clips / "part2" / "a-b_c-d_e-f_000007.mp4", seconds=10, start=7)  # a VGGSound 10 s clip
    items = write_items(tmp_path / "items.json", PRESENT + [GONE])
    out_dir = tmp_path / "pairs"
    result = vggss_dl.main(["--json", items, "--out_dir", str(out_dir), "--from_videos", str(clips)])
    assert (result["done"], result["failed"], result["no_local_clip"]) == (2, 0, 1)
    for name in PRESENT:
        local = np.asarray(Image.open(out_dir / f"{name}.jpg").convert("L"), dtype=np.float64)
        downloaded = np.asarray(Image.open(download_dir / f"{name}.jpg").convert("L"), dtype=np.float64)
        assert local.shape == downloaded.shape and np.abs(local - downloaded).mean() < 4
        assert frame_second(out_dir / f"{name}.jpg") == pytest.approx(middle_second(name), abs=0.25)
        local_rate, local_samples = scipy.io.wavfile.read(out_dir / f"{name}.wav")
        rate, samples = scipy.io.wavfile.read(download_dir / f"{name}.wav")
        assert (local_rate, local_samples.shape) == (rate, samples.shape)
        assert wav_middle_second(out_dir / f"{name}.wav") == pytest.approx(middle_second(name), abs=0.3)
    assert not (out_dir / "failures.csv").read_text().strip().splitlines()[1:]  # a missing clip is not a failure
