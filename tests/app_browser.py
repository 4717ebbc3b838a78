"""Drive app.py as a person does: start it on a free port of 127.0.0.1, open it in headless Chromium (Debian's
package, through Playwright), upload a file through the page's own file input, press Localize, read the result.

Used by tests/test_app.py, and by images/update.sh for the README's screenshot of the page with a trained model:
    python tests/app_browser.py --checkpoint runs/demo/trained/model.keras --screenshot images/app_screenshot.png
"""

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
DEMO_CLIP = PROJECT / "data" / "demo" / "demo_video.mp4"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"  # Debian's; Playwright's own download is not used
START_TIMEOUT_SECONDS = 300
RESULT_TIMEOUT_SECONDS = 300
VIEWPORT = {"width": 1280, "height": 900}


def free_port():
    """A TCP port of 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(checkpoint, log_path, arguments=(), environment=None):
    """Start app.py on a free port and wait until its page answers.

    Args:
        checkpoint: the model it serves.
        log_path: where its stdout and stderr go.
        arguments: more app.py flags.
        environment: its environment (default: this process's).

    Returns:
        (the subprocess.Popen, the page's URL).

    Raises:
        RuntimeError with the log's end when it exits or does not answer within START_TIMEOUT_SECONDS.
    """
    port = free_port()
    with open(log_path, "w") as log:
        process = subprocess.Popen([sys.executable, str(PROJECT / "app.py"), "--checkpoint", str(checkpoint),
                                    "--port", str(port), *arguments], cwd=PROJECT, stdout=log,
                                   stderr=subprocess.STDOUT, env=environment)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"app.py exited with code {process.returncode}:\n{Path(log_path).read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return process, url
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    stop_server(process)
    raise RuntimeError(f"app.py did not answer within {START_TIMEOUT_SECONDS} s:\n{Path(log_path).read_text()[-3000:]}")


def stop_server(process, timeout=60):
    """Stop app.py as a service manager does (SIGTERM), then kill it if it has not ended; returns its exit code."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


def open_browser(playwright):
    """Headless Chromium from Debian's package."""
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True)


def localize_video(page, path):
    """Upload a video through the page's file input, press Localize, and wait for the heatmap video.

    Args:
        page: a Playwright page showing app.py, with no result yet.
        path: the video file.

    Returns:
        the absolute URL of the heatmap video the page plays.
    """
    page.locator("#video_input input[type=file]").set_input_files(str(path))
    page.locator("#video_input video").wait_for()  # the upload has reached the server and shows
    page.locator("#video_button").click()
    result = page.locator("#heatmap_video video[src]")
    result.wait_for(timeout=RESULT_TIMEOUT_SECONDS * 1000)
    for output in ("#strip img", "#figure img"):
        page.locator(output).wait_for()
    return urllib.parse.urljoin(page.url, result.get_attribute("src"))


def screenshot(checkpoint, out_path):
    """The page after the demo clip was uploaded and localized, as a PNG (the README's images/app_screenshot.png)."""
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="app_screenshot_") as folder:
        process, url = start_server(checkpoint, os.path.join(folder, "app.log"))
        try:
            with sync_playwright() as playwright:
                browser = open_browser(playwright)
                page = browser.new_page(viewport=VIEWPORT)
                page.goto(url)
                localize_video(page, DEMO_CLIP)
                page.screenshot(path=str(out_path), full_page=True)
                browser.close()
        finally:
            stop_server(process)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="the model app.py serves")
    parser.add_argument("--screenshot", required=True, help="the PNG to write")
    arguments = parser.parse_args(argv)
    screenshot(arguments.checkpoint, arguments.screenshot)
    print(f"wrote {arguments.screenshot}")


if __name__ == "__main__":
    main()
