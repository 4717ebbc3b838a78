"""app.py, the web demo, as its users meet it: a real server on 127.0.0.1 with a small untrained model, driven by
headless Chromium (Debian's, through Playwright) uploading through the page, and by gradio_client from Python.

Checks: the heatmap video of an uploaded clip (its duration and audio stream, with ffprobe), the strip, the four
panels and the colour scale on the page; a bad file explained on the page while the server goes on; the page
loads nothing from outside 127.0.0.1; both endpoints from Python give what predict.py gives for the same inputs;
every kind of bad input gets its own message; a path or an address the client names is never read; stopping
the server removes its uploads and results.
"""

import json
import os
import re
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import httpx
import numpy as np
import pytest
from gradio_client import Client, handle_file
from PIL import Image
from playwright.sync_api import sync_playwright

import predict
from app_browser import DEMO_CLIP, PROJECT, VIEWPORT, localize_video, open_browser, start_server, stop_server
from model import build_model
from video_media import coded_frames, write_video

DEMO_FRAME = PROJECT / "data" / "demo" / "test" / "demo_test_0001.jpg"
DEMO_SOUND = PROJECT / "data" / "demo" / "test" / "demo_test_0001.wav"
MAX_UPLOAD_MB = 5


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "model.keras"
    build_model(image_weights="none", image_size=112, sample_rate=8000, audio_seconds=0.5).save(path)
    return path


@pytest.fixture(scope="module")
def server(checkpoint, tmp_path_factory):
    """app.py on a free port; its temporary folders go to a folder of its own (TMPDIR), to see them removed."""
    folder = tmp_path_factory.mktemp("server")
    (folder / "tmp").mkdir()
    environment = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", TMPDIR=str(folder / "tmp"))
    process, url = start_server(checkpoint, folder / "app.log", ["--max_upload_mb", str(MAX_UPLOAD_MB)], environment)
    yield {"process": process, "url": url, "log": folder / "app.log", "tmp": folder / "tmp"}
    stop_server(process)


def streams(path):
    """ffprobe's view of a file: {"video": stream, "audio": stream, "duration": seconds}."""
    result = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "stream=codec_type,codec_name,width,height,"
                             "duration:format=duration", "-of", "json", str(path)], capture_output=True, text=True,
                            check=True)
    description = json.loads(result.stdout)
    found = {stream["codec_type"]: stream for stream in description["streams"]}
    found["duration"] = float(description["format"]["duration"])
    return found


def clip(path, size, seconds, audio_seconds, rate=1):
    """A flat grey clip from ffmpeg's own sources: `seconds` of video at `rate` frames/s, a tone of audio_seconds."""
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i",
                    f"color=c=gray:size={size}:rate={rate}:duration={seconds}", "-f", "lavfi", "-i",
                    f"sine=frequency=440:sample_rate=8000:duration={audio_seconds}", "-c:v", "libx264", "-preset",
                    "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac", str(path)], check=True)
    return path


def answers(url):
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.status == 200


def pixels(path):
    return np.asarray(Image.open(path).convert("RGB"))


def test_the_page_localizes_an_uploaded_video_and_explains_a_bad_file(server, tmp_path):
    outside = []
    with sync_playwright() as playwright:
        browser = open_browser(playwright)
        page = browser.new_page(viewport=VIEWPORT)
        page.on("request", lambda request: outside.append(request.url)
                if not re.match(r"(http://127\.0\.0\.1:\d+/|blob:http://127\.0\.0\.1:|data:)", request.url) else None)
        page.goto(server["url"])
        settings = page.locator("#settings").inner_text()
        assert "112 x 112 px" in settings and "0.5 s of sound at 8000 Hz" in settings, settings

        video_url = localize_video(page, DEMO_CLIP)
        result = tmp_path / "heatmap.mp4"
        result.write_bytes(urllib.request.urlopen(video_url, timeout=60).read())
        found = streams(result)
        assert found["duration"] == pytest.approx(8.0, abs=0.1)  # the demo clip's 8 s
        video, audio = found["video"], found["audio"]
        assert video["codec_name"] == "h264" and (video["width"], video["height"]) == (224, 224)
        assert audio["codec_name"] == "aac" and float(audio["duration"]) == pytest.approx(8.0, abs=0.1)
        scale = page.locator("#colour_scale").inner_text()
        low, high = map(float, re.search(r"from (-?\d+\.\d+) to (-?\d+\.\d+)", scale).groups())
        assert -1.0 <= low < high <= 1.0, scale
        figure_size = page.locator("#figure img").evaluate("image => [image.naturalWidth, image.naturalHeight]")
        assert figure_size[0] > 3 * figure_size[1]  # four panels side by side
        page.screenshot(path=str(tmp_path / "app_screenshot.png"), full_page=True)
        assert Image.open(tmp_path / "app_screenshot.png").size[0] == VIEWPORT["width"]

        not_media = tmp_path / "notes.mp4"
        not_media.write_text("not a video")
        page.locator("#video_input button[aria-label='Clear']").click()  # the x on the uploaded clip
        page.locator("#video_input input[type=file]").set_input_files(str(not_media))
        page.locator("#video_button").click()
        page.get_by_text("notes.mp4: not a readable video").wait_for(timeout=60000)

        assert server["process"].poll() is None and answers(server["url"])
        page.get_by_role("tab", name="Frame and sound").click()  # and it still works: a frame and its sound
        page.locator("#image_input input[type=file]").set_input_files(str(DEMO_FRAME))
        page.locator("#audio_input input[type=file]").set_input_files(str(DEMO_SOUND))
        page.locator("#image_input img").wait_for()  # both uploads have reached the server and show
        page.locator("#audio_input audio").first.wait_for(state="attached")
        page.locator("#pair_button").click()
        page.locator("#pair_figure img").wait_for(timeout=60000)
        browser.close()
    assert outside == [], f"the page loaded from outside 127.0.0.1: {outside}"


def test_the_endpoints_from_python_give_predict_py_results_and_refuse_bad_input(server, checkpoint, tmp_path):
    client = Client(server["url"], verbose=False, download_files=str(tmp_path / "downloads"))
    figure = client.predict(handle_file(str(DEMO_FRAME)), handle_file(str(DEMO_SOUND)), api_name="/localize_pair")
    predict.main(["--checkpoint", str(checkpoint), "--image", str(DEMO_FRAME), "--audio", str(DEMO_SOUND),
                  "--out_dir", str(tmp_path / "predict")])
    assert np.array_equal(pixels(figure), pixels(tmp_path / "predict" / "demo_test_0001.png"))  # the same figure
    _, strip, figure, _ = client.predict(handle_file(str(DEMO_CLIP)), api_name="/localize_video")
    predict.main(["--checkpoint", str(checkpoint), "--video", str(DEMO_CLIP), "--out_dir", str(tmp_path / "predict")])
    assert np.array_equal(pixels(strip), pixels(tmp_path / "predict" / "demo_video_strip.png"))
    assert np.array_equal(pixels(figure), pixels(tmp_path / "predict" / "demo_video.png"))

    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    not_media = tmp_path / "notes.mkv"
    not_media.write_text("not a video")
    silent = write_video(tmp_path / "silent.mp4", coded_frames(10), 25)
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(DEMO_CLIP.read_bytes()[: DEMO_CLIP.stat().st_size // 2])
    hours = clip(tmp_path / "hours.mp4", "16x16", 7200, 1)
    eight_k = clip(tmp_path / "eight_k.mp4", "7680x4320", 1, 1)
    for path, message in [(empty, "empty.mp4: the file is empty (0 bytes)"),
                          (not_media, "notes.mkv: not a readable video"),
                          (silent, "silent.mp4: no audio track"),
                          (truncated, "truncated.mp4: damaged or truncated"),
                          (hours, "hours.mp4: 7200 s long; this server takes videos of up to 600 s"),
                          (eight_k, "eight_k.mp4: frames of 7680 x 4320 pixels (33.2 megapixels); this server "
                                    "takes up to 8.3 megapixels a frame")]:
        with pytest.raises(Exception) as refused:
            client.predict(handle_file(str(path)), api_name="/localize_video")
        assert message in str(refused.value), (path.name, str(refused.value))
    with pytest.raises(Exception) as refused:
        client.predict(handle_file(str(not_media)), handle_file(str(DEMO_SOUND)), api_name="/localize_pair")
    assert "notes.mkv: unreadable image" in str(refused.value)

    too_large = httpx.post(f"{server['url']}gradio_api/upload",
                           files={"files": ("large.mp4", bytes(MAX_UPLOAD_MB * 2**20 + 1))})
    assert too_large.status_code == 413

    # a file the client names instead of uploading: a path on the server (Gradio refuses it) or an address (refused
    # before Gradio would download it)
    call = f"{server['url']}gradio_api/call/localize_pair"
    for named in (str(DEMO_FRAME), f"{server['url']}gradio_api/file={DEMO_FRAME}"):
        data = [{"path": named, "meta": {"_type": "gradio.FileData"}},
                {"path": str(DEMO_SOUND), "meta": {"_type": "gradio.FileData"}}]
        response = httpx.post(call, json={"data": data})
        if response.status_code == 200:
            events = httpx.get(f"{call}/{response.json()['event_id']}", timeout=60).text
            assert events.startswith("event: error") and "complete" not in events, events
        else:
            assert response.status_code == 400 and "only files uploaded" in response.text, response.text

    assert server["process"].poll() is None  # every refusal left the server up, and it still works
    assert Path(client.predict(handle_file(str(DEMO_FRAME)), handle_file(str(DEMO_SOUND)),
                               api_name="/localize_pair")).is_file()


def test_stopping_the_server_removes_its_uploads_and_results(server):
    assert list(server["tmp"].glob("lvs_app_*")), "the server keeps its uploads in a folder of its own"
    assert stop_server(server["process"]) == 0
    assert list(server["tmp"].glob("lvs_app_*")) == []
    log = server["log"].read_text()  # a refusal is one line; the only traceback is Gradio's, refusing the named path
    assert log.count("Traceback") == log.count("InvalidPathError: Cannot move") <= 1, log[-3000:]
    assert 'app.py", line' not in log, log[-3000:]
