"""Build the VGG-SS frame/wav pairs: fetch 10 s sections with yt-dlp, cut the frame and the audio with ffmpeg.

For every item of vggss.json (name = 11-character YouTube id + '_' + start second), the 10 s section that starts
at the start second is downloaded (only that section: yt-dlp download ranges, cut at exact times), then ffmpeg
writes into --out_dir
    NAME.wav  mono 16-bit PCM at --sample_rate, --audio_seconds long, centred on the middle of the section
    NAME.jpg  the frame at the middle of the section (start + 5 s), at the resolution of the video
which is the layout train.py, predict.py and evaluate.py read (preprocessing.find_pairs).

Run:
    python vggss_dl.py --out_dir data/vggss                       # fetches vggss.json, downloads every item
    python vggss_dl.py --json vggss.json --out_dir data/vggss --workers 4 --sleep 2
    python vggss_dl.py --json vggss.json --out_dir data/vggss --classes "dog barking" "elk bugling" --limit 50 --dry_run
    python vggss_dl.py --json vggss.json --out_dir data/vggss --retry_failed rate_limited timeout
    python vggss_dl.py --json vggss.json --out_dir data/vggss --from_videos /data/VGGSound/video

Long runs: a rerun skips finished pairs and redoes unfinished ones. Each file is written under a temporary name and
renamed (the wav first, the jpg last), and a pair counts as finished only when both files exist, so a killed run
never leaves a frame without its wav or a truncated file; stale temporary files are removed on start. Items that
fail (about a fifth of the videos are gone) are listed in OUT_DIR/failures.csv with a reason (unavailable, private,
removed, http_404, timeout, rate_limited, ffmpeg, ...) and are tried again only with --retry_failed. Transient
errors (rate limiting, timeouts, network, HTTP 403/5xx) are retried with exponential backoff first; rate limiting
pauses every worker. The end prints a summary and writes OUT_DIR/manifest.csv, the finished pairs of the list.

--from_videos DIR cuts the same pairs from clips already on disk, named like the VGGSound archives:
ID_START.mp4 or ID_000START.mp4 (any folder depth, also .mkv/.webm/.avi/.mov/.m4v). Assumption: such a clip is the
10 s section that starts at START (the VGGSound archives hold exactly that), so its middle is at 5 s of the clip.
ffprobe checks the duration: a clip longer than 11 s is taken as the full video and cut from START, as a download.

Needs ffmpeg and ffprobe on PATH. Downloading from YouTube itself also needs what yt-dlp needs for YouTube (recent
yt-dlp versions want a JavaScript runtime such as deno); --url_template points at a mirror or a local server.
"""

import argparse
import concurrent.futures
import csv
import datetime
import difflib
import errno
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter, namedtuple

from tqdm import tqdm

try:
    import fcntl
except ImportError:  # not on Windows: the single-run lock is skipped there
    fcntl = None

# The annotation list as the authors publish it in their repository (metadata/vggss.json).
VGGSS_JSON_URL = "https://raw.githubusercontent.com/hche11/Localizing-Visual-Sounds-the-Hard-Way/main/metadata/vggss.json"
DEFAULT_URL_TEMPLATE = "https://www.youtube.com/watch?v={id}"
# mp4 (H.264 + AAC) first: the section is re-encoded to cut at exact times, and VP9 re-encoding is slow.
DEFAULT_FORMAT = "bv*[ext=mp4]+ba[ext=m4a]/b[ext=mp4]/bv*+ba/b"
SECTION_SECONDS = 10.0
FULL_VIDEO_SECONDS = 11.0  # a local clip longer than this is a full video, cut from START
SHORT_AUDIO_TOLERANCE = 0.5  # seconds of audio that may be missing at the end (padded with silence)
YOUTUBE_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{11}")
NAME_PATTERN = re.compile(r"([A-Za-z0-9_-]{11})_(\d{1,9})")
VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v")
FAILURES_CSV = "failures.csv"
MANIFEST_CSV = "manifest.csv"
LOCK_FILE = ".vggss_dl.lock"
WORK_DIR = ".vggss_dl_work"  # per-item download folders, removed on start
VIDEO_DIR = "videos"  # --keep_video keeps the sections here as NAME.EXT
TEMP_SUFFIX = ".vggss_tmp"  # temporary names: .NAME.wav.vggss_tmp, .NAME.jpg.vggss_tmp, *.csv.vggss_tmp
FAILURE_FIELDS = ("name", "reason", "message", "time")
MANIFEST_FIELDS = ("name", "class", "start_seconds", "image", "audio")
TRANSIENT_REASONS = {"rate_limited", "bot_check", "timeout", "network", "http_403", "http_500", "http_502",
                     "http_503", "http_504"}
PAUSE_ALL_REASONS = {"rate_limited", "bot_check"}  # the site is pushing back: every worker waits
# (reason, pattern) in order: the first that matches a yt-dlp / ffmpeg message names the failure.
REASON_PATTERNS = (
    ("disk_full", r"No space left on device"),
    ("rate_limited", r"HTTP Error 429|Too Many Requests|rate[- ]?limit"),
    ("bot_check", r"not a bot"),
    ("age_restricted", r"confirm your age|age[- ]restricted|inappropriate for some users"),
    ("private", r"private video|video is private"),
    ("removed", r"removed|terminated|no longer available|copyright|violat"),
    ("geo_blocked", r"in your country|geo[- ]?restrict"),
    ("members_only", r"members[- ]only|join this channel"),
    ("timeout", r"timed? ?out"),
    ("http", r"HTTP Error (\d{3})"),  # before "unavailable": "HTTP Error 503: Service Unavailable"
    ("unavailable", r"unavailable|not available|no video formats"),
    ("network", r"Unable to connect|Connection (refused|reset|aborted)|name resolution|Name or service not known|"
                r"Network is unreachable|Remote end closed|IncompleteRead|Failed to resolve"),
    ("unsupported_url", r"Unsupported URL"),
)

Item = namedtuple("Item", ["name", "video_id", "start_seconds", "class_name"])


class PairError(Exception):
    """One item could not be turned into a pair; `reason` is the short word written to failures.csv."""

    def __init__(self, reason, message):
        super().__init__(message)
        self.reason = reason
        self.transient = reason in TRANSIENT_REASONS
        self.fatal = reason == "disk_full"


def parse_item_name(name):
    """Split a VGG-SS item name into its YouTube id and start second.

    Args:
        name: "YOUTUBEID_START", e.g. "zpWuikVorYg_000032" (the id is 11 characters of [A-Za-z0-9_-] and may itself
            contain '_'; START is the start second, zero-padded to 6 digits in vggss.json, any padding accepted).

    Returns:
        (video_id, start_seconds) as (str, int).

    Raises:
        ValueError: the name is not of that form.
    """
    match = NAME_PATTERN.fullmatch(name) if isinstance(name, str) else None
    if match is None:
        raise ValueError(f"{name!r} is not a VGG-SS name (11-character YouTube id + '_' + start second)")
    return match.group(1), int(match.group(2))


def canonical_name(video_id, start_seconds):
    """The vggss.json spelling of an item name: id + '_' + start second on 6 digits."""
    return f"{video_id}_{start_seconds:06d}"


def load_items(json_path):
    """Read a vggss.json list and validate every item name before anything uses it.

    Args:
        json_path: a JSON list of {"file": NAME, "class": CLASS, "bbox": [...]} items.

    Returns:
        A list of Item(name, video_id, start_seconds, class_name) in file order, duplicates dropped.

    Raises:
        ValueError: the file cannot be read or is not such a list (the message names the file).
    """
    try:
        with open(json_path, encoding="utf-8") as handle:
            entries = json.load(handle)
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"cannot read {json_path}: {error}") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"{json_path} is not valid JSON: {error}") from None
    if not isinstance(entries, list):
        raise ValueError(f"{json_path} is not a VGG-SS list (expected a JSON list of items)")
    items, seen = [], set()
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("file"), str):
            raise ValueError(f"{json_path}: item {index} has no \"file\" name")
        try:
            video_id, start_seconds = parse_item_name(entry["file"])
        except ValueError as error:
            raise ValueError(f"{json_path}: item {index}: {error}") from None
        if entry["file"] in seen:
            continue
        seen.add(entry["file"])
        items.append(Item(entry["file"], video_id, start_seconds, str(entry.get("class", ""))))
    return items


def fetch_item_list(destination, url=VGGSS_JSON_URL, timeout=60.0):
    """Download the VGG-SS list to `destination` (atomically) unless it is already there.

    Args:
        destination: path of the local vggss.json.
        url: where to fetch it from.
        timeout: seconds before giving up on the connection.

    Returns:
        destination.

    Raises:
        ValueError: the download failed or did not give a JSON list.
    """
    if os.path.isfile(destination):
        return destination
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            payload = response.read()
        if not isinstance(json.loads(payload), list):
            raise ValueError("not a JSON list")
    except (OSError, ValueError) as error:
        raise ValueError(f"could not fetch the VGG-SS list from {url} ({error}); download it and pass --json")
    write_bytes_atomically(destination, payload)
    return destination


def read_id_file(path):
    """Read the names or bare YouTube ids listed in a text/CSV file (first comma-separated field of each line).

    Blank lines and lines starting with '#' are ignored, and so is a first line that is neither (a header).

    Args:
        path: the file.

    Returns:
        A list of (video_id, start_seconds or None) keys; None selects every item of that video.

    Raises:
        ValueError: unreadable file or an entry that is neither a name nor an id.
    """
    try:
        with open(path, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"cannot read {path}: {error}") from None
    keys = []
    for number, line in enumerate(lines, start=1):
        entry = line.split(",")[0].strip().strip('"')
        if not entry or entry.startswith("#"):
            continue
        if YOUTUBE_ID_PATTERN.fullmatch(entry):
            keys.append((entry, None))
            continue
        try:
            keys.append(parse_item_name(entry))
        except ValueError:
            if number == 1:
                continue
            raise ValueError(f"{path} line {number}: {entry!r} is neither a VGG-SS name nor a YouTube id") from None
    return keys


def select_items(items, keys=None, classes=None, limit=None):
    """Keep the items that match the id list and the classes, then the first `limit` of them.

    The limit applies before finished or failed items are skipped, so rerunning with the same --limit finishes
    the same items instead of starting new ones.

    Args:
        items: list of Item.
        keys: optional (video_id, start_seconds or None) keys from read_id_file.
        classes: optional class names (case-insensitive, exact).
        limit: optional maximum number of items.

    Returns:
        The selected items, in list order.

    Raises:
        ValueError: a class that no item has (with the closest known names).
    """
    selected = list(items)
    if keys is not None:
        exact = {key for key in keys if key[1] is not None}
        whole_videos = {key[0] for key in keys if key[1] is None}
        selected = [item for item in selected
                    if (item.video_id, item.start_seconds) in exact or item.video_id in whole_videos]
    if classes:
        known = sorted({item.class_name.lower() for item in items})
        wanted = {name.strip().lower() for name in classes}
        for name in sorted(wanted - set(known)):
            close = difflib.get_close_matches(name, known, n=3)
            hint = f" (did you mean: {'; '.join(close)})" if close else ""
            raise ValueError(f"unknown class {name!r}{hint}")
        selected = [item for item in selected if item.class_name.lower() in wanted]
    if limit is not None:
        selected = selected[:limit]
    return selected


def failure_reason(message):
    """Name the cause of a yt-dlp or ffmpeg error message.

    Args:
        message: the error text (e.g. str(yt_dlp.utils.DownloadError)).

    Returns:
        (reason, transient): reason is one of disk_full, rate_limited, bot_check, age_restricted, private, removed,
        geo_blocked, members_only, unavailable, timeout, http_NNN, network, unsupported_url or error; transient
        says whether trying again later can help (then it is retried with backoff).
    """
    for reason, pattern in REASON_PATTERNS:
        match = re.search(pattern, message, flags=re.IGNORECASE)
        if match:
            if reason == "http":
                reason = f"http_{match.group(1)}"
            return reason, reason in TRANSIENT_REASONS
    return "error", False


def one_line(text, limit=300):
    """Collapse an error text to one line of at most `limit` characters (for the CSV and the console)."""
    text = " ".join(str(text).replace("ERROR: ", "").split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def flush_to_disk(path):
    """fsync a written file, so that after a rename even a power cut cannot leave it truncated."""
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def write_bytes_atomically(path, payload):
    """Write `payload` to a temporary name beside `path`, then rename it over `path`."""
    temporary = os.path.join(os.path.dirname(path) or ".", f".{os.path.basename(path)}{TEMP_SUFFIX}")
    with open(temporary, "wb") as handle:
        handle.write(payload)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def write_csv_atomically(path, fieldnames, rows):
    """Write dict rows as a CSV through a temporary file and os.replace."""
    temporary = os.path.join(os.path.dirname(path) or ".", f".{os.path.basename(path)}{TEMP_SUFFIX}")
    with open(temporary, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=fieldnames)
        writer.writeheader()
        writer.writerows(rows)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def read_failures(path):
    """Read failures.csv into {name: row} (empty when the file does not exist)."""
    if not os.path.isfile(path):
        return {}
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            return {row["name"]: row for row in csv.DictReader(handle) if row.get("name")}
    except (OSError, UnicodeDecodeError, csv.Error, KeyError) as error:
        raise ValueError(f"cannot read {path}: {error}") from None


def pair_paths(out_dir, name):
    """(wav path, jpg path) of a pair."""
    return os.path.join(out_dir, f"{name}.wav"), os.path.join(out_dir, f"{name}.jpg")


def pair_is_finished(out_dir, name):
    """A pair is finished when both its wav and its jpg exist (the jpg is always renamed into place last)."""
    return all(os.path.isfile(path) for path in pair_paths(out_dir, name))


def clean_stale_files(out_dir):
    """Remove what an interrupted run can leave: temporary files and the per-item download folders.

    Returns:
        The number of paths removed.
    """
    stale = glob.glob(os.path.join(glob.escape(out_dir), f".*{TEMP_SUFFIX}"))
    for path in stale:
        os.remove(path)
    work_dir = os.path.join(out_dir, WORK_DIR)
    if os.path.isdir(work_dir):
        stale.append(work_dir)
        shutil.rmtree(work_dir, ignore_errors=True)
    return len(stale)


def lock_output_folder(out_dir):
    """Make sure only one run writes to `out_dir` (the lock is released when the process ends, even by kill -9).

    Returns:
        The open lock file; keep it open for the whole run.

    Raises:
        ValueError: another run holds the lock.
    """
    handle = open(os.path.join(out_dir, LOCK_FILE), "a")
    if fcntl is not None:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            raise ValueError(f"another vggss_dl.py run is writing to {out_dir}") from None
    return handle


def find_local_videos(video_dir):
    """Index clips named like the VGGSound archives (ID_START.mp4 or ID_000START.mp4) under `video_dir`.

    Args:
        video_dir: folder searched recursively.

    Returns:
        {canonical item name: clip path}; the first path in sorted order wins when a name appears twice.
    """
    found = {}
    for folder, subfolders, filenames in os.walk(video_dir):
        subfolders.sort()
        for filename in sorted(filenames):
            stem, extension = os.path.splitext(filename)
            match = NAME_PATTERN.fullmatch(stem)
            if match and extension.lower() in VIDEO_EXTENSIONS:
                name = canonical_name(match.group(1), int(match.group(2)))
                found.setdefault(name, os.path.join(folder, filename))
    return found


def run_tool(arguments, timeout):
    """Run ffmpeg/ffprobe with a list of arguments (never a shell string) and return its stdout.

    Raises:
        PairError: "ffmpeg" (or "disk_full") with the tool's last error line.
    """
    try:
        completed = subprocess.run(arguments, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                   timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise PairError("ffmpeg", f"{arguments[0]} took more than {timeout:.0f} s") from None
    except OSError as error:
        raise PairError("disk_full" if error.errno == errno.ENOSPC else "ffmpeg", str(error)) from None
    if completed.returncode != 0:
        lines = [line for line in completed.stderr.splitlines() if line.strip()]
        message = f"{arguments[0]} failed: {lines[-1] if lines else f'exit code {completed.returncode}'}"
        raise PairError("disk_full" if "No space left" in completed.stderr else "ffmpeg", message)
    return completed.stdout


def ffmpeg_file(path):
    """An explicit local-file URL for ffmpeg, so that a ':' in a folder name is never read as a protocol."""
    return "file:" + os.path.abspath(path)


def probe_clip(clip_path, timeout=60.0):
    """Read a clip's duration and which streams it has, with ffprobe.

    Returns:
        {"duration": seconds or None, "has_video": bool, "has_audio": bool}.
    """
    output = run_tool(["ffprobe", "-v", "error", "-show_entries", "format=duration:stream=codec_type",
                       "-of", "json", ffmpeg_file(clip_path)], timeout)
    try:
        report = json.loads(output)
        duration = report.get("format", {}).get("duration")
        duration = float(duration) if duration not in (None, "N/A") else None
    except ValueError:
        raise PairError("ffmpeg", f"ffprobe gave no readable report for {clip_path}") from None
    kinds = {stream.get("codec_type") for stream in report.get("streams", [])}
    return {"duration": duration, "has_video": "video" in kinds, "has_audio": "audio" in kinds}


def cut_pair(clip_path, start_seconds, out_dir, name, sample_rate=16000, audio_seconds=3.0, timeout=120.0):
    """Write NAME.wav then NAME.jpg from a clip, each through a temporary name and os.replace.

    The clip is taken as the 10 s section that starts at `start_seconds` (middle at 5 s of the clip) unless it is
    longer than FULL_VIDEO_SECONDS, in which case it is the full video and its middle is start_seconds + 5.

    Args:
        clip_path: the video file.
        start_seconds: the item's start second in the full video.
        out_dir: where NAME.wav and NAME.jpg go.
        name: the item name.
        sample_rate: wav sample rate (mono, 16-bit PCM).
        audio_seconds: wav length, centred on the middle (10 keeps the whole section).
        timeout: seconds allowed per ffmpeg call.

    Returns:
        (wav path, jpg path).

    Raises:
        PairError: no_video, no_audio, too_short, ffmpeg or disk_full.
    """
    clip = probe_clip(clip_path, timeout)
    if not clip["has_video"]:
        raise PairError("no_video", f"{os.path.basename(clip_path)} has no video stream")
    if not clip["has_audio"]:
        raise PairError("no_audio", f"{os.path.basename(clip_path)} has no audio stream")
    duration = clip["duration"]
    is_full_video = duration is not None and duration > FULL_VIDEO_SECONDS
    middle = (start_seconds if is_full_video else 0.0) + SECTION_SECONDS / 2
    audio_start = middle - audio_seconds / 2
    needed = middle + audio_seconds / 2
    if duration is not None and duration < needed - SHORT_AUDIO_TOLERANCE:
        raise PairError("too_short", f"clip is {duration:.1f} s long, the pair needs {needed:.1f} s")
    wav_path, jpg_path = pair_paths(out_dir, name)
    wav_temporary = os.path.join(out_dir, f".{name}.wav{TEMP_SUFFIX}")
    jpg_temporary = os.path.join(out_dir, f".{name}.jpg{TEMP_SUFFIX}")
    common = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y"]
    try:
        # apad + -t: a clip whose audio ends a few ms early still gives exactly audio_seconds * sample_rate samples.
        run_tool(common + ["-ss", f"{audio_start:.3f}", "-i", ffmpeg_file(clip_path), "-map", "0:a:0", "-vn",
                           "-t", f"{audio_seconds:.3f}", "-af", "apad", "-ac", "1", "-ar", str(sample_rate),
                           "-c:a", "pcm_s16le", "-f", "wav", ffmpeg_file(wav_temporary)], timeout)
        run_tool(common + ["-ss", f"{middle:.3f}", "-i", ffmpeg_file(clip_path), "-map", "0:v:0", "-an",
                           "-frames:v", "1", "-q:v", "2", "-c:v", "mjpeg", "-update", "1", "-f", "image2",
                           ffmpeg_file(jpg_temporary)], timeout)
        if not os.path.isfile(jpg_temporary) or os.path.getsize(jpg_temporary) == 0:
            raise PairError("too_short", f"no frame at {middle:.1f} s of {os.path.basename(clip_path)}")
        if os.path.getsize(wav_temporary) <= 44:
            raise PairError("no_audio", f"no audio samples in {os.path.basename(clip_path)}")
        flush_to_disk(wav_temporary)
        flush_to_disk(jpg_temporary)
        os.replace(wav_temporary, wav_path)
        os.replace(jpg_temporary, jpg_path)
    finally:
        for path in (wav_temporary, jpg_temporary):
            if os.path.exists(path):
                os.remove(path)
    return wav_path, jpg_path


class _YtDlpLog:
    """yt-dlp logger that keeps its output off the console (errors come back as DownloadError)."""

    def debug(self, message):
        pass

    def info(self, message):
        pass

    def warning(self, message):
        pass

    def error(self, message):
        pass


def download_section(url, start_seconds, work_dir, name, video_format=DEFAULT_FORMAT, sleep=0.0, timeout=30.0):
    """Download only the 10 s section [start, start + 10) of a video with yt-dlp's Python API.

    The section is cut at exact times (download_ranges + force_keyframes_at_cuts: yt-dlp hands the range to
    ffmpeg, which reads only what it needs and re-encodes the section so it starts on a keyframe).

    Args:
        url: the video page or direct video URL.
        start_seconds: section start in the full video.
        work_dir: folder the clip is written to (as NAME.EXT).
        name: the item name.
        video_format: yt-dlp format selector.
        sleep: seconds between yt-dlp's requests (sleep_interval_requests).
        timeout: socket timeout, also ffmpeg's read timeout.

    Returns:
        Path of the downloaded clip.

    Raises:
        PairError: with the reason failure_reason gives for yt-dlp's error.
    """
    import yt_dlp  # imported here so that --dry_run and the parsing helpers work without it
    from yt_dlp.utils import download_range_func

    options = {
        "format": video_format,
        "merge_output_format": "mp4",
        "outtmpl": {"default": os.path.join(work_dir, f"{name}.%(ext)s")},
        "download_ranges": download_range_func(None, [(start_seconds, start_seconds + SECTION_SECONDS)]),
        "force_keyframes_at_cuts": True,
        "quiet": True,
        "no_warnings": True,
        "noprogress": True,
        "logger": _YtDlpLog(),
        "noplaylist": True,
        "overwrites": True,
        "socket_timeout": timeout,
        "sleep_interval_requests": sleep,
        "retries": 2,
        "fragment_retries": 2,
        "extractor_retries": 1,
        "external_downloader_args": {"ffmpeg_i": ["-rw_timeout", str(int(timeout * 1_000_000))]},
    }
    try:
        with yt_dlp.YoutubeDL(options) as downloader:
            info = downloader.extract_info(url, download=True)
    except yt_dlp.utils.YoutubeDLError as error:
        raise PairError(failure_reason(str(error))[0], one_line(error)) from None
    downloads = (info or {}).get("requested_downloads") or []
    paths = [entry.get("filepath") for entry in downloads if entry.get("filepath")]
    if not paths or not os.path.isfile(paths[0]):
        raise PairError("error", "yt-dlp reported no downloaded file")
    return paths[0]


class RequestPacer:
    """Shared pause for all workers: when the site rate-limits one of them, every worker waits."""

    def __init__(self):
        self._lock = threading.Lock()
        self._not_before = 0.0

    def push_back(self, seconds):
        """Make every worker wait at least `seconds` from now before its next request."""
        with self._lock:
            self._not_before = max(self._not_before, time.monotonic() + seconds)

    def wait(self, stop_event):
        """Block until requests are allowed again (or the run stops)."""
        while not stop_event.is_set():
            with self._lock:
                remaining = self._not_before - time.monotonic()
            if remaining <= 0:
                return
            stop_event.wait(remaining)


def kept_video(out_dir, name):
    """Path of a section kept by an earlier --keep_video run, or None."""
    for extension in VIDEO_EXTENSIONS:
        path = os.path.join(out_dir, VIDEO_DIR, name + extension)
        if os.path.isfile(path):
            return path
    return None


def make_pair(item, settings, pacer, stop_event):
    """Produce one pair: from a local clip, a kept section, or a download (retrying transient errors).

    Args:
        item: the Item.
        settings: dict with out_dir, local_videos ({name: path} or None), url_template, video_format,
            sample_rate, audio_seconds, sleep, timeout, retries, backoff, keep_video.
        pacer: the RequestPacer shared by the workers.
        stop_event: threading.Event set when the run stops.

    Returns:
        ("done", "", "") or ("failed", reason, message) or ("cancelled", "", "").

    Raises:
        PairError: only for fatal reasons (disk_full), which stop the run.
    """
    if stop_event.is_set():
        return "cancelled", "", ""
    out_dir = settings["out_dir"]
    cut_options = dict(sample_rate=settings["sample_rate"], audio_seconds=settings["audio_seconds"],
                       timeout=max(120.0, settings["timeout"]))
    local_clip = (settings["local_videos"] or {}).get(item.name) or kept_video(out_dir, item.name)
    if local_clip is not None:
        try:
            cut_pair(local_clip, item.start_seconds, out_dir, item.name, **cut_options)
        except PairError as error:
            if error.fatal:
                raise
            return "failed", error.reason, str(error)
        return "done", "", ""
    url = settings["url_template"].format(id=item.video_id, start=item.start_seconds, name=item.name)
    work_dir = os.path.join(out_dir, WORK_DIR, item.name)
    try:
        for attempt in range(settings["retries"] + 1):
            pacer.wait(stop_event)
            if stop_event.is_set():
                return "cancelled", "", ""
            shutil.rmtree(work_dir, ignore_errors=True)
            os.makedirs(work_dir)
            try:
                clip_path = download_section(url, item.start_seconds, work_dir, item.name,
                                             settings["video_format"], settings["sleep"], settings["timeout"])
                cut_pair(clip_path, item.start_seconds, out_dir, item.name, **cut_options)
                if settings["keep_video"]:
                    os.makedirs(os.path.join(out_dir, VIDEO_DIR), exist_ok=True)
                    extension = os.path.splitext(clip_path)[1]
                    os.replace(clip_path, os.path.join(out_dir, VIDEO_DIR, item.name + extension))
                return "done", "", ""
            except PairError as error:
                if error.fatal:
                    raise
                if not error.transient or attempt == settings["retries"]:
                    return "failed", error.reason, str(error)
                delay = settings["backoff"] * 2 ** attempt
                if error.reason in PAUSE_ALL_REASONS:
                    pacer.push_back(delay)
                stop_event.wait(delay)
        return "failed", "error", "no attempt made"
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
        stop_event.wait(settings["sleep"])  # polite pause between this worker's items


def guarded_make_pair(item, settings, pacer, stop_event):
    """make_pair that turns an unexpected exception into a failure, so one odd item cannot end a long run."""
    try:
        return make_pair(item, settings, pacer, stop_event)
    except PairError:
        raise
    except OSError as error:
        if error.errno == errno.ENOSPC:
            raise PairError("disk_full", str(error)) from None
        return "failed", "error", one_line(f"{type(error).__name__}: {error}")
    except Exception as error:  # noqa: BLE001 - recorded in failures.csv with its type, the run goes on
        return "failed", "error", one_line(f"{type(error).__name__}: {error}")


def write_manifest(path, out_dir, items):
    """Write the finished pairs among `items` (the whole list, not just this run's selection) as a CSV.

    Returns:
        The number of rows written.
    """
    rows = []
    for item in items:
        if pair_is_finished(out_dir, item.name):
            rows.append({"name": item.name, "class": item.class_name, "start_seconds": item.start_seconds,
                         "image": f"{item.name}.jpg", "audio": f"{item.name}.wav"})
    write_csv_atomically(path, MANIFEST_FIELDS, rows)
    return len(rows)


def build_parser():
    """The command-line interface."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out_dir", required=True, help="folder that receives NAME.jpg + NAME.wav pairs, "
                        "failures.csv and manifest.csv")
    parser.add_argument("--json", help=f"local vggss.json; without it the list is fetched from {VGGSS_JSON_URL} "
                        "into OUT_DIR/vggss.json (once)")
    parser.add_argument("--ids", help="file of item names (ID_START) or bare YouTube ids, one per line or as the "
                        "first CSV column (e.g. vggss_test.csv); only those items are processed")
    parser.add_argument("--classes", nargs="+", help="only items of these classes (quote each class name; "
                        "names contain commas and spaces)")
    parser.add_argument("--limit", type=int, help="only the first LIMIT selected items (applied before skipping "
                        "finished ones, so a rerun finishes the same items)")
    parser.add_argument("--workers", type=int, default=4, help="parallel downloads (default 4)")
    parser.add_argument("--sleep", type=float, default=1.0, help="seconds each worker waits between items, also "
                        "yt-dlp's pause between requests (default 1)")
    parser.add_argument("--retries", type=int, default=3, help="extra attempts for transient errors "
                        "(rate limiting, timeouts, network, HTTP 403/5xx) (default 3)")
    parser.add_argument("--backoff", type=float, default=10.0, help="first wait before a retry in seconds, "
                        "doubled at every retry (default 10)")
    parser.add_argument("--timeout", type=float, default=30.0, help="network timeout in seconds (default 30)")
    parser.add_argument("--sample_rate", type=int, default=16000, help="wav sample rate (default 16000)")
    parser.add_argument("--audio_seconds", type=float, default=3.0, help="wav length centred on the middle of the "
                        "section (default 3, as the seed; 10 keeps the whole section like the official data)")
    parser.add_argument("--url_template", default=DEFAULT_URL_TEMPLATE, help="video URL with {id} (also {start}, "
                        "{name}) for a mirror or a local server (default %(default)s)")
    parser.add_argument("--format", dest="video_format", default=DEFAULT_FORMAT, help="yt-dlp format selector "
                        "(default: best mp4; e.g. 'b[height<=480]/bv*[height<=480]+ba' is faster)")
    parser.add_argument("--keep_video", action="store_true", help=f"keep each downloaded 10 s section as "
                        f"OUT_DIR/{VIDEO_DIR}/NAME.EXT (a rerun cuts from it instead of downloading)")
    parser.add_argument("--from_videos", help="folder of local VGGSound clips (ID_START.mp4 or ID_000START.mp4, "
                        "searched recursively) to cut the pairs from instead of downloading")
    parser.add_argument("--retry_failed", nargs="*", metavar="REASON", help="try the items of failures.csv again: "
                        "all of them, or only those with these reasons (e.g. rate_limited timeout)")
    parser.add_argument("--dry_run", action="store_true", help="list what would be fetched (name, URL or clip, "
                        "section) and stop, without downloading anything (only the list itself when --json is not "
                        "given)")
    return parser


def check_arguments(parser, args):
    """Stop with one line (parser.error) on a flag value that cannot work."""
    if args.limit is not None and args.limit < 1:
        parser.error("--limit must be at least 1")
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    if args.sleep < 0 or args.backoff < 0 or args.retries < 0:
        parser.error("--sleep, --backoff and --retries cannot be negative")
    if args.timeout <= 0:
        parser.error("--timeout must be positive")
    if args.sample_rate < 1000:
        parser.error("--sample_rate must be at least 1000")
    if not 0 < args.audio_seconds <= SECTION_SECONDS:
        parser.error(f"--audio_seconds must be in (0, {SECTION_SECONDS:g}]")
    if "{id}" not in args.url_template and "{name}" not in args.url_template:
        parser.error("--url_template must contain {id} or {name}")
    try:
        args.url_template.format(id="a" * 11, start=0, name="a" * 11 + "_000000")
    except (KeyError, IndexError, ValueError) as error:
        parser.error(f"--url_template: only {{id}}, {{start}} and {{name}} can be used ({error!r})")
    if args.from_videos is not None and not os.path.isdir(args.from_videos):
        parser.error(f"--from_videos: no folder {args.from_videos}")


def main(argv=None):
    """Run the downloader; returns the summary counts (also printed).

    Args:
        argv: command-line arguments (sys.argv[1:] when None).

    Returns:
        dict with done, failed, skipped, finished_before, failed_before, no_local_clip, pairs (finished pairs of
        the whole list in out_dir) and failure_reasons (Counter of this run's failures).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    check_arguments(parser, args)
    out_dir = args.out_dir
    if not args.dry_run:
        missing = [tool for tool in ("ffmpeg", "ffprobe") if shutil.which(tool) is None]
        if missing:
            sys.exit(f"error: {' and '.join(missing)} not found on PATH; install ffmpeg "
                     "(apt-get install ffmpeg, or conda install -c conda-forge ffmpeg)")
    try:
        os.makedirs(out_dir, exist_ok=True)
        json_path = args.json or fetch_item_list(os.path.join(out_dir, "vggss.json"), timeout=args.timeout)
        items = load_items(json_path)
        keys = read_id_file(args.ids) if args.ids else None
        selected = select_items(items, keys, args.classes, args.limit)
        failures_path = os.path.join(out_dir, FAILURES_CSV)
        failures = read_failures(failures_path)
    except ValueError as error:
        sys.exit(f"error: {error}")
    except OSError as error:
        sys.exit(f"error: cannot use {out_dir}: {error}")
    local_videos = find_local_videos(args.from_videos) if args.from_videos else None

    retry_reasons = None if args.retry_failed is None else set(args.retry_failed)
    finished, failed_before, no_local_clip, todo = [], [], [], []
    for item in selected:
        previous = failures.get(item.name)
        if pair_is_finished(out_dir, item.name):
            finished.append(item)
        elif previous is not None and (retry_reasons is None or
                                       (retry_reasons and previous.get("reason") not in retry_reasons)):
            failed_before.append(item)
        elif local_videos is not None and item.name not in local_videos:
            no_local_clip.append(item)
        else:
            todo.append(item)
    skipped = len(finished) + len(failed_before) + len(no_local_clip)

    if args.dry_run:
        for item in todo:
            source = (local_videos[item.name] if local_videos is not None else kept_video(out_dir, item.name) or
                      args.url_template.format(id=item.video_id, start=item.start_seconds, name=item.name))
            print(f"{item.name}\t{source}\t{item.start_seconds}-{item.start_seconds + SECTION_SECONDS:g} s"
                  f"\t{item.class_name}")
        print(f"dry run: {len(todo)} of {len(selected)} selected items would be fetched ({len(finished)} finished, "
              f"{len(failed_before)} failed before, {len(no_local_clip)} without a local clip)")
        return {"done": 0, "failed": 0, "skipped": skipped, "todo": [item.name for item in todo]}

    try:
        lock = lock_output_folder(out_dir)
        removed = clean_stale_files(out_dir)
    except ValueError as error:
        sys.exit(f"error: {error}")
    except OSError as error:
        sys.exit(f"error: cannot write to {out_dir}: {error}")
    if removed:
        print(f"removed {removed} temporary file(s) left by an interrupted run", file=sys.stderr)

    settings = {"out_dir": out_dir, "local_videos": local_videos, "url_template": args.url_template,
                "video_format": args.video_format, "sample_rate": args.sample_rate,
                "audio_seconds": args.audio_seconds, "sleep": 0.0 if local_videos is not None else args.sleep,
                "timeout": args.timeout, "retries": args.retries, "backoff": args.backoff,
                "keep_video": args.keep_video}
    counts = Counter(done=0, failed=0)
    reasons = Counter()
    pacer, stop_event = RequestPacer(), threading.Event()
    progress = tqdm(total=len(selected), initial=skipped, unit="clip", desc="vggss", mininterval=0.5)
    progress.set_postfix_str(f"done=0 failed=0 skipped={skipped}")
    executor = concurrent.futures.ThreadPoolExecutor(max_workers=args.workers, thread_name_prefix="vggss")
    futures = {executor.submit(guarded_make_pair, item, settings, pacer, stop_event): item for item in todo}
    stop_message = None
    try:
        for future in concurrent.futures.as_completed(futures):
            item = futures[future]
            try:
                status, reason, message = future.result()
            except PairError as error:
                stop_message = f"error: {item.name}: {error.reason}: {error} (run stopped; rerun to resume)"
                break
            if status == "done":
                counts["done"] += 1
                if failures.pop(item.name, None) is not None:
                    write_csv_atomically(failures_path, FAILURE_FIELDS, failures.values())
            elif status == "failed":
                counts["failed"] += 1
                reasons[reason] += 1
                failures[item.name] = {"name": item.name, "reason": reason, "message": one_line(message),
                                       "time": datetime.datetime.now().isoformat(timespec="seconds")}
                write_csv_atomically(failures_path, FAILURE_FIELDS, failures.values())
                progress.write(f"failed {item.name}: {reason}: {one_line(message, 160)}")
            progress.update(1)
            progress.set_postfix_str(f"done={counts['done']} failed={counts['failed']} skipped={skipped}")
    except KeyboardInterrupt:
        stop_message = "interrupted; rerun the same command to resume"
    finally:
        stop_event.set()
        executor.shutdown(wait=stop_message is None, cancel_futures=True)
        progress.close()

    if stop_message is None:
        try:
            os.rmdir(os.path.join(out_dir, WORK_DIR))  # empty once every worker has finished
        except OSError:
            pass
    failures = {name: row for name, row in failures.items() if not pair_is_finished(out_dir, name)}
    write_csv_atomically(failures_path, FAILURE_FIELDS, failures.values())
    manifest_path = os.path.join(out_dir, MANIFEST_CSV)
    pair_count = write_manifest(manifest_path, out_dir, items)
    lock.close()
    transient = sum(1 for row in failures.values() if row.get("reason") in TRANSIENT_REASONS)
    print(f"done {counts['done']}, failed {counts['failed']}, skipped {skipped} ({len(finished)} already "
          f"finished, {len(failed_before)} failed before, {len(no_local_clip)} without a local clip)")
    if reasons:
        print("failures this run: " + ", ".join(f"{reason} {count}" for reason, count in reasons.most_common()))
    print(f"{pair_count} pairs in {out_dir}; manifest {manifest_path}; {len(failures)} failures in {failures_path}"
          + (f" ({transient} transient: rerun with --retry_failed to try them again)" if transient else ""))
    if stop_message is not None and stop_message.startswith("error"):
        sys.exit(stop_message)
    if stop_message is not None:
        print(stop_message, file=sys.stderr)
        sys.exit(130)
    return {"done": counts["done"], "failed": counts["failed"], "skipped": skipped,
            "finished_before": len(finished), "failed_before": len(failed_before),
            "no_local_clip": len(no_local_clip), "pairs": pair_count, "failure_reasons": reasons}


if __name__ == "__main__":
    main()
