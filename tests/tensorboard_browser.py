"""Screenshot TensorBoard's images panel (the heatmaps train.py logs every epoch) in headless Chromium (Debian's
package, through Playwright), as a person sees it after `tensorboard --logdir runs/`.

Used by images/update.sh for the README's picture:
    python tests/tensorboard_browser.py --logdir runs/demo/trained/tensorboard --screenshot images/tensorboard_heatmaps.png
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

from app_browser import CHROMIUM, free_port

START_TIMEOUT_SECONDS = 120


def screenshot(log_dir, path, width=1280, height=560):
    """Serve log_dir with TensorBoard on a free port of 127.0.0.1 and save its images panel as a PNG at path."""
    from playwright.sync_api import sync_playwright

    port = free_port()
    tensorboard = shutil.which("tensorboard", path=os.path.dirname(sys.executable)) or "tensorboard"
    with tempfile.TemporaryFile() as log:
        server = subprocess.Popen([tensorboard, "--logdir", log_dir, "--host", "127.0.0.1", "--port", str(port)],
                                  stdout=log, stderr=log)
        try:
            url = f"http://127.0.0.1:{port}/"
            deadline = time.time() + START_TIMEOUT_SECONDS
            while True:
                try:
                    urllib.request.urlopen(url, timeout=2).close()
                    break
                except OSError:
                    if time.time() > deadline or server.poll() is not None:
                        log.seek(0)
                        raise SystemExit(f"error: tensorboard did not start: {log.read().decode()[-2000:]}")
                    time.sleep(0.5)
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
                page = browser.new_page(viewport={"width": width, "height": height})
                page.goto(url + "#images", wait_until="networkidle")
                page.wait_for_selector("img", timeout=60_000)
                page.get_by_text("Show actual image size").click()  # the grid at its own pixels, not a thumbnail
                page.wait_for_timeout(2000)  # the images finish loading
                page.screenshot(path=path)
                browser.close()
        finally:
            server.terminate()
            server.wait(timeout=30)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--logdir", required=True, help="a train.py run's tensorboard folder (or a folder of runs)")
    parser.add_argument("--screenshot", required=True, help="the PNG to write")
    arguments = parser.parse_args()
    if not os.path.isdir(arguments.logdir):
        parser.error(f"--logdir {arguments.logdir} is not a folder")
    screenshot(arguments.logdir, arguments.screenshot)
    print(f"saved {arguments.screenshot}")


if __name__ == "__main__":
    main()
