"""Build VGGSound / VGG-SS frame/wav pairs: fetch 10 s sections with yt-dlp, cut a frame and the audio with ffmpeg.

For every item of a list (name = 11-character YouTube id + '_' + start second) -- the VGG-SS test set (--json, the
shipped data/metadata/vggss.json by default) or a training list (--train_list: the shipped vggss_144k.txt,
vggss_10k.txt, vggss_heard.txt, vggss_144k_fnac.txt, or VGGSound's own vggsound.csv) -- the 10 s section that
starts at the start second is downloaded (only that section: yt-dlp download sections, cut at exact times), then
clip_cutting.py writes into --out_dir
    NAME.wav  mono 16-bit PCM at --sample_rate (16000, VGG-SS's rate; "native" keeps the clip's), --audio_seconds
              long, centred on the middle of the section
    NAME.jpg  the frame at the middle of the section (start + 5 s), squashed to --frame_size x --frame_size
              (512; --keep_aspect keeps the video's shape)
which is the layout train.py, predict.py and evaluate.py read (preprocessing.find_pairs).

Run:
    python vggss_dl.py --out_dir data/vggss --audio_seconds 10                  # VGG-SS, the 5,158 test items
    python vggss_dl.py --train_list data/metadata/vggss_144k.txt --out_dir data/vggsound144k --audio_seconds 10
    python vggss_dl.py --train_list vggsound.csv --split train --out_dir data/vggsound --dry_run
    python vggss_dl.py --out_dir data/vggss --classes "dog barking" "elk bugling" --limit 50 --dry_run
    python vggss_dl.py --out_dir data/vggss --retry_failed rate_limited timeout
    python vggss_dl.py --out_dir data/vggss --from_videos /data/VGGSound/video

Test items stay out of training sets: a --train_list is built without the items of the shipped test lists
(VGG-SS and the heard/unheard tests; downloading/held_out.py, downloading/item_lists.py). The run prints how many were left out and writes their names to
OUT_DIR/excluded_test_items.txt; --allow_test_overlap keeps them (the lists as published).

Long runs: a rerun skips finished pairs and redoes unfinished ones. Each file is written under a temporary name and
renamed (the wav first, the jpg last), and a pair counts as finished only when both files exist, so a killed run
never leaves a frame without its wav or a truncated file; stale temporary files are removed on start. Items that
fail (about a fifth of the videos are gone) are listed in OUT_DIR/failures.csv with a reason (unavailable, private,
removed, http_404, timeout, rate_limited, ffmpeg, ...) and are tried again only with --retry_failed. Transient
errors (rate limiting, timeouts, network, HTTP 403/5xx) are retried with exponential backoff first; rate limiting
pauses every worker. An item that takes longer than --item_timeout (a server that trickles) fails with reason
timeout. yt-dlp and ffmpeg run as child processes that are killed with the run, even by kill -9
(downloading/child_processes.py). The end prints a summary and writes OUT_DIR/manifest.csv, the finished pairs of the list.

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
import errno
import importlib.util
import math
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter

from tqdm import tqdm

from downloading.child_processes import ChildStopped, OrphanWatcher, run_child
from downloading.clip_cutting import (DEFAULT_FRAME_SIZE, NATIVE, SECTION_SECONDS, TEMP_SUFFIX, Deadline, PairError, cut_pair,
                          pair_paths)
from downloading.item_lists import (DEFAULT_JSON, NAME_PATTERN, canonical_name, leave_out_test_items, load_items,
                        load_train_list, read_id_file, select_items)

try:
    import fcntl
except ImportError:  # not on Windows: the single-run lock is skipped there
    fcntl = None

DEFAULT_URL_TEMPLATE = "https://www.youtube.com/watch?v={id}"
# mp4 (H.264 + AAC) first: the section is re-encoded to cut at exact times, and VP9 re-encoding is slow.
DEFAULT_FORMAT = "bv*[ext=mp4]+ba[ext=m4a]/b[ext=mp4]/bv*+ba/b"
DEFAULT_ITEM_TIMEOUT = 300.0  # seconds per item: a 10 s section takes seconds to a minute on a normal line
LOCK_WAIT_SECONDS = 15.0  # a killed run's watcher holds the lock until its children are gone
VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v")
FAILURES_CSV = "failures.csv"
MANIFEST_CSV = "manifest.csv"
LOCK_FILE = ".vggss_dl.lock"
WORK_DIR = ".vggss_dl_work"  # per-item download folders, removed on start
VIDEO_DIR = "videos"  # --keep_video keeps the sections here as NAME.EXT
EXCLUDED_TXT = "excluded_test_items.txt"
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


def pair_is_finished(out_dir, name):
    """A pair is finished when both its wav and its jpg exist (the jpg is always renamed into place last)."""
    return all(os.path.isfile(path) for path in pair_paths(out_dir, name))


def clean_stale_files(out_dir):
    """Remove what an interrupted run can leave: temporary files and the per-item download folders.

    Returns:
        The number of paths removed.
    """
    stale = [os.path.join(out_dir, filename) for filename in os.listdir(out_dir)
             if filename.startswith(".") and filename.endswith(TEMP_SUFFIX)]  # no glob: the path is the user's
    for path in stale:
        os.remove(path)
    work_dir = os.path.join(out_dir, WORK_DIR)
    if os.path.isdir(work_dir):
        stale.append(work_dir)
        shutil.rmtree(work_dir, ignore_errors=True)
    return len(stale)


def lock_output_folder(out_dir, wait_seconds=LOCK_WAIT_SECONDS):
    """Make sure only one run writes to `out_dir` (the lock is released when the process ends, even by kill -9).

    A run killed a moment ago may still hold the lock through its watcher (child_processes.OrphanWatcher) until its
    children are gone; the lock is tried for `wait_seconds` before giving up.

    Returns:
        The open lock file; keep it open for the whole run.

    Raises:
        ValueError: another run holds the lock.
    """
    handle = open(os.path.join(out_dir, LOCK_FILE), "a")
    if fcntl is not None:
        deadline = time.monotonic() + wait_seconds
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError:
                if time.monotonic() >= deadline:
                    handle.close()
                    raise ValueError(f"another vggss_dl.py run is writing to {out_dir}") from None
                time.sleep(0.2)
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


def download_section(url, start_seconds, work_dir, name, video_format=DEFAULT_FORMAT, sleep=0.0, timeout=30.0,
                     time_limit=DEFAULT_ITEM_TIMEOUT, stop_event=None):
    """Download only the 10 s section [start, start + 10) of a video with yt-dlp (a child process).

    The section is cut at exact times (--download-sections + --force-keyframes-at-cuts: yt-dlp hands the range
    to ffmpeg, which reads only what it needs and re-encodes the section so it starts on a keyframe). yt-dlp runs
    as `python -m yt_dlp` in its own process group, so that `time_limit` can end it and its ffmpeg together.

    Args:
        url: the video page or direct video URL.
        start_seconds: section start in the full video.
        work_dir: folder the clip is written to (as NAME.EXT).
        name: the item name.
        video_format: yt-dlp format selector.
        sleep: seconds between yt-dlp's requests (--sleep-requests).
        timeout: socket timeout, also ffmpeg's read timeout (both restart with every byte received).
        time_limit: seconds after which the download is killed (reason timeout), however slowly bytes arrive.
        stop_event: optional threading.Event that kills the download when the run stops.

    Returns:
        Path of the downloaded clip.

    Raises:
        PairError: with the reason failure_reason gives for yt-dlp's error, or timeout / cancelled.
    """
    template = os.path.join(work_dir.replace("%", "%%"), f"{name}.%(ext)s")  # '%' in a user path is literal
    arguments = [sys.executable, "-m", "yt_dlp", "--ignore-config", "--no-warnings", "--no-progress",
                 "--no-playlist", "--force-overwrites", "--format", video_format, "--merge-output-format", "mp4",
                 "--output", template, "--download-sections", f"*{start_seconds}-{start_seconds + SECTION_SECONDS:g}",
                 "--force-keyframes-at-cuts", "--socket-timeout", f"{timeout:g}", "--sleep-requests", f"{sleep:g}",
                 "--retries", "2", "--fragment-retries", "2", "--extractor-retries", "1",
                 "--downloader-args", f"ffmpeg_i:-rw_timeout {int(timeout * 1_000_000)}",
                 "--print", "after_move:filepath", "--", url]
    try:
        completed = run_child(arguments, time_limit, stop_event)
    except subprocess.TimeoutExpired:
        raise PairError("timeout", f"no result within {time_limit:.0f} s (--item_timeout)") from None
    except ChildStopped:
        raise PairError("cancelled", "the run is stopping") from None
    if completed.returncode != 0:
        errors = [line for line in completed.stderr.splitlines() if "ERROR" in line] or \
            completed.stderr.splitlines()[-1:] or [f"yt-dlp exit code {completed.returncode}"]
        return_message = one_line(errors[-1])
        raise PairError(failure_reason(return_message)[0], return_message)
    paths = [line.strip() for line in completed.stdout.splitlines() if line.strip()]
    if not paths or not os.path.isfile(paths[-1]):
        raise PairError("error", "yt-dlp reported no downloaded file")
    return paths[-1]


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
            sample_rate, audio_seconds, frame_size, keep_aspect, sleep, timeout, item_timeout, retries, backoff,
            keep_video.
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
                       frame_size=settings["frame_size"], keep_aspect=settings["keep_aspect"], stop_event=stop_event)
    local_clip = (settings["local_videos"] or {}).get(item.name) or kept_video(out_dir, item.name)
    if local_clip is not None:
        try:
            cut_pair(local_clip, item.start_seconds, out_dir, item.name, timeout=settings["item_timeout"],
                     **cut_options)
        except PairError as error:
            if error.fatal:
                raise
            return ("cancelled", "", "") if error.reason == "cancelled" else ("failed", error.reason, str(error))
        return "done", "", ""
    url = settings["url_template"].format(id=item.video_id, start=item.start_seconds, name=item.name)
    work_dir = os.path.join(out_dir, WORK_DIR, item.name)
    deadline = None  # --item_timeout counts from the first attempt, retries and their backoff included
    try:
        for attempt in range(settings["retries"] + 1):
            pacer.wait(stop_event)
            if stop_event.is_set():
                return "cancelled", "", ""
            deadline = deadline or Deadline(settings["item_timeout"])
            shutil.rmtree(work_dir, ignore_errors=True)
            os.makedirs(work_dir)
            try:
                clip_path = download_section(url, item.start_seconds, work_dir, item.name, settings["video_format"],
                                             settings["sleep"], settings["timeout"], deadline.remaining(), stop_event)
                cut_pair(clip_path, item.start_seconds, out_dir, item.name, timeout=deadline.remaining(),
                         **cut_options)
                if settings["keep_video"]:
                    os.makedirs(os.path.join(out_dir, VIDEO_DIR), exist_ok=True)
                    extension = os.path.splitext(clip_path)[1]
                    os.replace(clip_path, os.path.join(out_dir, VIDEO_DIR, item.name + extension))
                return "done", "", ""
            except PairError as error:
                if error.fatal:
                    raise
                if error.reason == "cancelled":
                    return "cancelled", "", ""
                if error.reason not in TRANSIENT_REASONS or attempt == settings["retries"] or deadline.expired():
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


def sample_rate_value(text):
    """argparse type of --sample_rate: an integer number of Hz or "native"."""
    if text == NATIVE:
        return NATIVE
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is neither a whole number of Hz nor {NATIVE!r}") from None


def build_parser():
    """The command-line interface."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out_dir", required=True, help="folder that receives NAME.jpg + NAME.wav pairs, "
                        f"failures.csv, manifest.csv (and {EXCLUDED_TXT} for a training list)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--json", help="VGG-SS list (JSON of {\"file\", \"class\", \"bbox\"} items; default: the "
                        "shipped data/metadata/vggss.json, the 5,158 test items)")
    source.add_argument("--train_list", help="training list to build instead: ID_START names one a line "
                        "(data/metadata/vggss_144k.txt, vggss_10k.txt, vggss_heard.txt, vggss_144k_fnac.txt) or "
                        "VGGSound's vggsound.csv (ID,start,label,split rows; see --split)")
    parser.add_argument("--split", choices=("train", "test"), default="train", help="rows of a vggsound.csv "
                        "--train_list to take (default train; the test split is a test set, nothing is left out)")
    parser.add_argument("--allow_test_overlap", action="store_true", help="keep the items of a --train_list that "
                        "are on the shipped test lists (VGG-SS, heard/unheard tests), to reproduce the lists as "
                        "published; by default they are left out and named in OUT_DIR/" + EXCLUDED_TXT)
    parser.add_argument("--ids", help="file of item names (ID_START) or bare YouTube ids, one per line or as the "
                        "first CSV column (e.g. vggss_test.csv); only those items are processed")
    parser.add_argument("--classes", nargs="+", help="only items of these classes (quote each class name; "
                        "names contain commas and spaces; vggss.json and vggsound.csv carry classes, .txt lists "
                        "do not)")
    parser.add_argument("--limit", type=int, help="only the first LIMIT selected items (applied before skipping "
                        "finished ones, so a rerun finishes the same items)")
    parser.add_argument("--workers", type=int, default=4, help="parallel downloads (default 4)")
    parser.add_argument("--sleep", type=float, default=1.0, help="seconds each worker waits between items, also "
                        "yt-dlp's pause between requests (default 1; 0 allowed)")
    parser.add_argument("--retries", type=int, default=3, help="extra attempts for transient errors "
                        "(rate limiting, timeouts, network, HTTP 403/5xx) (default 3)")
    parser.add_argument("--backoff", type=float, default=10.0, help="first wait before a retry in seconds, "
                        "doubled at every retry (default 10)")
    parser.add_argument("--timeout", type=float, default=30.0, help="network timeout in seconds: how long a "
                        "connection may stay silent (default 30)")
    parser.add_argument("--item_timeout", type=float, default=DEFAULT_ITEM_TIMEOUT, help="seconds one item may take "
                        "in all (download, retries, cutting) before it fails with reason timeout, however slowly a "
                        "server trickles bytes (default %(default)g)")
    parser.add_argument("--sample_rate", type=sample_rate_value, default=16000, help="wav sample rate in Hz, or "
                        "'native' to keep each clip's own rate (default 16000, the rate of VGG-SS as LVS used it)")
    parser.add_argument("--audio_seconds", type=float, default=3.0, help="wav length centred on the middle of the "
                        "section (default 3, as the seed; 10 keeps the whole section like the official data)")
    parser.add_argument("--frame_size", type=int, default=DEFAULT_FRAME_SIZE, help="side of the square the frame "
                        "is squashed to (default %(default)s: the whole frame, so box fractions stay aligned after "
                        "the evaluation's resize; room for --image_size 448 and the 246/224 training resize)")
    parser.add_argument("--keep_aspect", action="store_true", help="keep the video's own frame shape instead of "
                        "squashing it to a square (LVS's centre crop then cuts the sides off a 16:9 frame)")
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
                        "section) and stop, without downloading or writing anything")
    return parser


def check_arguments(parser, args):
    """Stop with one line (parser.error) on a flag value that cannot work."""
    if args.limit is not None and args.limit < 1:
        parser.error("--limit must be at least 1")
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    if args.retries < 0:
        parser.error("--retries cannot be negative")
    for flag, value, zero_allowed in (("--sleep", args.sleep, True), ("--backoff", args.backoff, True),
                                      ("--timeout", args.timeout, False), ("--item_timeout", args.item_timeout, False)):
        if not math.isfinite(value) or value < 0 or (value == 0 and not zero_allowed) or value > 1e6:
            parser.error(f"{flag} must be a finite number of seconds, {'0 or more' if zero_allowed else 'above 0'} "
                         f"(and at most 1e6), got {value}")
    if args.sample_rate != NATIVE and not 1000 <= args.sample_rate <= 384000:
        parser.error("--sample_rate must be between 1000 and 384000 Hz, or 'native'")
    if not 0 < args.audio_seconds <= SECTION_SECONDS:
        parser.error(f"--audio_seconds must be in (0, {SECTION_SECONDS:g}]")
    if not 16 <= args.frame_size <= 4096:
        parser.error("--frame_size must be between 16 and 4096 pixels")
    try:
        args.url_template.format(id="a" * 11, start=0, name="a" * 11 + "_000000")
    except (KeyError, IndexError, ValueError, AttributeError, TypeError) as error:
        parser.error(f"--url_template: only {{id}}, {{start}} and {{name}} can be used "
                     f"({type(error).__name__}: {error})")
    if "{id}" not in args.url_template and "{name}" not in args.url_template:
        parser.error("--url_template must contain {id} or {name}")
    if args.from_videos is not None and not os.path.isdir(args.from_videos):
        parser.error(f"--from_videos: no folder {args.from_videos}")


def read_item_list(args):
    """The items a run works on and the training-list items left out as test items.

    Returns:
        (items, left_out names, description of the list for messages).

    Raises:
        ValueError: an unreadable list (one line naming the file).
    """
    if args.train_list is None:
        return load_items(args.json or DEFAULT_JSON), [], args.json or DEFAULT_JSON
    items = load_train_list(args.train_list, args.split)
    is_test_split = args.split == "test" and all(item.class_name for item in items)  # csv rows carry a label
    if args.allow_test_overlap or is_test_split:
        return items, [], args.train_list
    kept, left_out = leave_out_test_items(items)
    return kept, left_out, args.train_list


def run_items(todo, settings, failures, failures_path, total, skipped, workers):
    """Make the pairs of `todo` with `workers` threads, recording failures.csv as items finish.

    Args:
        todo: the Items to make.
        settings: make_pair's settings.
        failures: {name: failures.csv row}, updated in place.
        failures_path: where failures.csv is rewritten after every change.
        total: the selection's size (for the progress bar); skipped: how many of it are skipped.
        workers: parallel items.

    Returns:
        (Counter of done / failed, Counter of failure reasons, stop message or None).
    """
    counts = Counter(done=0, failed=0)
    reasons = Counter()
    pacer, stop_event = RequestPacer(), threading.Event()
    progress = tqdm(total=total, initial=skipped, unit="clip", desc="vggss", mininterval=0.5)
    progress.set_postfix_str(f"done=0 failed=0 skipped={skipped}")
    executor = concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="vggss")
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

    return counts, reasons, stop_message


def main(argv=None):
    """Run the downloader; returns the summary counts (also printed).

    Args:
        argv: command-line arguments (sys.argv[1:] when None).

    Returns:
        dict with done, failed, skipped, finished_before, failed_before, no_local_clip, pairs (finished pairs of
        the whole list in out_dir), failure_reasons (Counter of this run's failures) and left_out (the test
        items left out of a training list); a dry run gives done, failed, skipped, left_out and todo.
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
        if args.from_videos is None and importlib.util.find_spec("yt_dlp") is None:
            sys.exit(f"error: yt-dlp is not installed for {sys.executable}; pip install -r requirements.txt")
    try:
        items, left_out, list_path = read_item_list(args)
        keys = read_id_file(args.ids) if args.ids else None
        selected = select_items(items, keys, args.classes, args.limit)
        if not args.dry_run:
            os.makedirs(out_dir, exist_ok=True)
        failures_path = os.path.join(out_dir, FAILURES_CSV)
        failures = read_failures(failures_path)
    except ValueError as error:
        sys.exit(f"error: {error}")
    except OSError as error:
        sys.exit(f"error: cannot use {out_dir}: {error}")
    if left_out:
        print(f"left out {len(left_out)} item(s) of {list_path} that are on the shipped test lists (VGG-SS, "
              f"heard/unheard tests)" + ("" if args.dry_run else f"; names in {os.path.join(out_dir, EXCLUDED_TXT)}")
              + "; --allow_test_overlap keeps them")
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
        return {"done": 0, "failed": 0, "skipped": skipped, "left_out": len(left_out),
                "todo": [item.name for item in todo]}

    try:
        lock = lock_output_folder(out_dir)
        removed = clean_stale_files(out_dir)
        excluded_path = os.path.join(out_dir, EXCLUDED_TXT)
        if args.train_list is not None and not args.allow_test_overlap:
            write_bytes_atomically(excluded_path, "".join(f"{name}\n" for name in left_out).encode())
        elif os.path.exists(excluded_path):
            os.remove(excluded_path)  # from an earlier run of another list: it would no longer be true
    except ValueError as error:
        sys.exit(f"error: {error}")
    except OSError as error:
        sys.exit(f"error: cannot write to {out_dir}: {error}")
    if removed:
        print(f"removed {removed} temporary file(s) left by an interrupted run", file=sys.stderr)

    settings = {"out_dir": out_dir, "local_videos": local_videos, "url_template": args.url_template,
                "video_format": args.video_format, "sample_rate": args.sample_rate,
                "audio_seconds": args.audio_seconds, "frame_size": args.frame_size, "keep_aspect": args.keep_aspect,
                "sleep": 0.0 if local_videos is not None else args.sleep, "timeout": args.timeout,
                "item_timeout": args.item_timeout, "retries": args.retries, "backoff": args.backoff,
                "keep_video": args.keep_video}
    with OrphanWatcher(hold_fd=lock.fileno() if fcntl is not None else None):
        summary = run_items(todo, settings, failures, failures_path, len(selected), skipped, args.workers)
    counts, reasons, stop_message = summary

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
            "no_local_clip": len(no_local_clip), "pairs": pair_count, "failure_reasons": reasons,
            "left_out": len(left_out)}


if __name__ == "__main__":
    main()
