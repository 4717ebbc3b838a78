"""vggss_dl.py against hostile-but-plausible conditions: a server that trickles, kill -9 mid-work, paths with glob
characters. Real yt-dlp and ffmpeg against generated media on 127.0.0.1 (helpers from test_vggss_dl.py).
"""

import csv
import http.server
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import vggss_dl
from test_vggss_dl import PRESENT, RangeRequestHandler, frame_second, make_clock_video, middle_second, write_items

PROJECT = Path(__file__).resolve().parents[1]
TRICKLE_ID = "trickle-000"


class TrickleHandler(RangeRequestHandler):
    """Serves the clock video like RangeRequestHandler, except /trickle-000.mp4: headers at once, then one byte a
    second, so that no socket timeout ever fires."""

    def serve(self, with_body):
        if os.path.basename(self.path.split("?")[0]) != f"{TRICKLE_ID}.mp4":
            return super().serve(with_body)
        self.record(200)
        self.send_response(200)
        self.send_header("Content-Type", "video/mp4")
        self.send_header("Content-Length", str(10_000_000))
        self.end_headers()
        for _ in range(300 if with_body else 0):
            try:
                self.wfile.write(b"\0")
                self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                return
            time.sleep(1)


@pytest.fixture(scope="module")
def trickle_server(tmp_path_factory):
    """url_template of a server with the clock video as abcdefghijk.mp4 and a trickling trickle-000.mp4."""
    root = tmp_path_factory.mktemp("served")
    make_clock_video(root / "abcdefghijk.mp4")
    handler = type("Handler", (TrickleHandler,), {"root": str(root), "log": [], "throttle_once": set()})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/{{id}}.mp4"
    httpd.shutdown()
    httpd.server_close()


def processes_mentioning(text):
    """Pids of the live (not zombie) processes whose command line contains `text`."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                command = handle.read().replace(b"\0", b" ").decode(errors="replace")
            with open(f"/proc/{entry}/stat") as handle:
                state = handle.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if text in command and state != "Z":
            found.append(int(entry))
    return found


def wait_for(condition, seconds):
    """Poll `condition` until it is true or `seconds` have passed; returns its last value."""
    deadline = time.monotonic() + seconds
    while not (value := condition()) and time.monotonic() < deadline:
        time.sleep(0.1)
    return value


def test_trickling_server_fails_the_item_with_timeout(trickle_server, tmp_path):
    # only the trickling item: a small deadline must not depend on how fast this machine cuts a good one
    items = write_items(tmp_path / "items.json", [f"{TRICKLE_ID}_000003"])
    out_dir = tmp_path / "pairs"
    result = vggss_dl.main(["--json", items, "--out_dir", str(out_dir), "--url_template", trickle_server,
                            "--sleep", "0", "--backoff", "0", "--retries", "2", "--timeout", "20",
                            "--item_timeout", "4"])
    assert (result["done"], result["failed"], result["failure_reasons"]) == (0, 1, {"timeout": 1})
    with open(out_dir / "failures.csv", newline="") as handle:
        failures = list(csv.DictReader(handle))
    assert [(row["name"], row["reason"]) for row in failures] == [(f"{TRICKLE_ID}_000003", "timeout")]
    assert "--item_timeout" in failures[0]["message"]
    assert processes_mentioning(f"{TRICKLE_ID}.mp4") == []  # yt-dlp and its ffmpeg were killed with the item


def test_kill_9_leaves_no_ffmpeg_or_ytdlp_running(trickle_server, tmp_path):
    # a download stuck on the trickling server (yt-dlp + ffmpeg), and a cut stuck on a clip that is a FIFO (ffprobe
    # blocks opening it until a writer comes, which never happens)
    clips = tmp_path / "clips"
    clips.mkdir()
    fifo = clips / "fifofifofif_000003.mp4"
    os.mkfifo(fifo)
    download_items = write_items(tmp_path / "download.json", [f"{TRICKLE_ID}_000003"])
    cut_items = write_items(tmp_path / "cut.json", ["fifofifofif_000003"])
    script = [sys.executable, str(PROJECT / "vggss_dl.py"), "--sleep", "0", "--item_timeout", "600"]
    runs = {
        f"{TRICKLE_ID}.mp4": script + ["--json", download_items, "--out_dir", str(tmp_path / "downloaded"),
                                       "--url_template", trickle_server, "--timeout", "60"],
        str(fifo): script + ["--json", cut_items, "--out_dir", str(tmp_path / "cut"), "--from_videos", str(clips)],
    }
    processes = {}
    try:
        for marker, command in runs.items():
            processes[marker] = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for marker, process in processes.items():
            children = wait_for(lambda: [pid for pid in processes_mentioning(marker) if pid != process.pid], 60)
            assert children, f"no child process working on {marker}"
            os.kill(process.pid, signal.SIGKILL)  # the script only: its children are left to the watcher
            process.wait()
        for marker in processes:
            assert wait_for(lambda: not processes_mentioning(marker), 30), f"orphans left on {marker}"
    finally:
        for marker, process in processes.items():
            if process.poll() is None:
                process.kill()
                process.wait()
            for pid in processes_mentioning(marker):  # only after a failure: leave no orphans behind
                os.kill(pid, signal.SIGKILL)
    # the killed runs' folders resume: the lock is free again
    result = vggss_dl.main(runs[str(fifo)][2:] + ["--item_timeout", "2"])
    assert result["failure_reasons"] == {"timeout": 1}


def test_paths_with_glob_characters_resume(trickle_server, tmp_path):
    clips = tmp_path / "clips [x]*?"
    clips.mkdir()
    make_clock_video(clips / "a-b_c-d_e-f_000007.mp4")
    out_dir = tmp_path / "out [1]*? 100%(id)s"
    items = write_items(tmp_path / "items.json", PRESENT)
    result = vggss_dl.main(["--json", items, "--out_dir", str(out_dir), "--from_videos", str(clips)])
    assert (result["done"], result["no_local_clip"]) == (1, 1)
    # a download into the same folder: yt-dlp's output template must take the '%' of the path literally
    common = ["--json", items, "--out_dir", str(out_dir), "--url_template", trickle_server, "--sleep", "0"]
    result = vggss_dl.main(common)
    assert (result["done"], result["finished_before"]) == (1, 1)
    stale = out_dir / f".{PRESENT[0]}.wav{vggss_dl.TEMP_SUFFIX}"
    stale.write_bytes(b"left by a killed run")
    mtimes = {path.name: path.stat().st_mtime_ns for path in out_dir.glob("*.jpg")}
    result = vggss_dl.main(common)
    assert (result["done"], result["finished_before"]) == (0, 2)  # resumed: nothing redone
    assert not stale.exists()
    assert {path.name: path.stat().st_mtime_ns for path in out_dir.glob("*.jpg")} == mtimes
    for name in PRESENT:
        assert frame_second(out_dir / f"{name}.jpg") == pytest.approx(middle_second(name), abs=0.25)
