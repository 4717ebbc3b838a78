"""Cut one frame/wav pair out of a video clip with ffprobe and ffmpeg (the cutting half of vggss_dl.py).

From a clip that is the 10 s section starting at an item's start second (or the full video, when it is longer
than FULL_VIDEO_SECONDS), cut_pair writes into the output folder
    NAME.wav  mono 16-bit PCM, `audio_seconds` long, centred on the middle of the section, at `sample_rate`
              (16000 by default, VGG-SS's rate; "native" keeps the clip's own rate, as the official data does)
    NAME.jpg  the frame at the middle of the section, squashed to frame_size x frame_size (bicubic, the whole
              frame, so that box fractions of the frame stay fractions of the image), or at the video's own
              shape with keep_aspect
each through a temporary name, fsync and os.replace (the wav first, the jpg last), so a killed run never leaves a
frame without its wav or a truncated file.

Usage:
    from downloading.clip_cutting import cut_pair
    cut_pair("clip.mp4", start_seconds=30, out_dir="data/vggss", name="zpWuikVorYg_000030")
(vggss_dl.py calls it for every downloaded section or local clip; it has no command line of its own.)
"""

import errno
import json
import math
import os
import subprocess
import time

from pipeline.audio import NATIVE  # sample_rate value: keep each clip's own audio rate
from downloading.child_processes import ChildStopped, run_child

SECTION_SECONDS = 10.0
FULL_VIDEO_SECONDS = 11.0  # a clip longer than this is a full video, cut from START
SHORT_AUDIO_TOLERANCE = 0.5  # seconds of audio that may be missing at the end (padded with silence)
DEFAULT_FRAME_SIZE = 512
TEMP_SUFFIX = ".vggss_tmp"  # temporary names: .NAME.wav.vggss_tmp, .NAME.jpg.vggss_tmp, *.csv.vggss_tmp


class PairError(Exception):
    """One item could not be turned into a pair; `reason` is the short word written to failures.csv."""

    def __init__(self, reason, message):
        super().__init__(message)
        self.reason = reason
        self.fatal = reason == "disk_full"


def pair_paths(out_dir, name):
    """(wav path, jpg path) of a pair."""
    return os.path.join(out_dir, f"{name}.wav"), os.path.join(out_dir, f"{name}.jpg")


def flush_to_disk(path):
    """fsync a written file, so that after a rename even a power cut cannot leave it truncated."""
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def ffmpeg_file(path):
    """An explicit local-file URL for ffmpeg, so that a ':' in a folder name is never read as a protocol."""
    return "file:" + os.path.abspath(path)


def run_tool(arguments, timeout, stop_event=None):
    """Run ffmpeg/ffprobe with a list of arguments (never a shell string) and return its stdout.

    Args:
        arguments: the program and its arguments.
        timeout: seconds before the tool is killed (the item then fails with reason timeout).
        stop_event: optional threading.Event that stops the tool when the run stops.

    Raises:
        PairError: "ffmpeg", "timeout", "cancelled" or "disk_full", with the tool's last error line.
    """
    try:
        completed = run_child(arguments, timeout, stop_event)
    except subprocess.TimeoutExpired:
        raise PairError("timeout", f"{arguments[0]} took more than {timeout:.0f} s (--item_timeout)") from None
    except ChildStopped:
        raise PairError("cancelled", f"{arguments[0]} stopped: the run is stopping") from None
    except OSError as error:
        raise PairError("disk_full" if error.errno == errno.ENOSPC else "ffmpeg", str(error)) from None
    if completed.returncode != 0:
        lines = [line for line in completed.stderr.splitlines() if line.strip()]
        message = f"{arguments[0]} failed: {lines[-1] if lines else f'exit code {completed.returncode}'}"
        raise PairError("disk_full" if "No space left" in completed.stderr else "ffmpeg", message)
    return completed.stdout


def probe_clip(clip_path, timeout=60.0, stop_event=None):
    """Read a clip's duration and which streams it has, with ffprobe.

    Returns:
        {"duration": seconds or None, "has_video": bool, "has_audio": bool}.
    """
    output = run_tool(["ffprobe", "-v", "error", "-show_entries", "format=duration:stream=codec_type",
                       "-of", "json", ffmpeg_file(clip_path)], timeout, stop_event)
    try:
        report = json.loads(output)
        duration = report.get("format", {}).get("duration")
        duration = float(duration) if duration not in (None, "N/A") else None
    except (ValueError, AttributeError):
        raise PairError("ffmpeg", f"ffprobe gave no readable report for {clip_path}") from None
    if duration is not None and not math.isfinite(duration):
        duration = None
    kinds = {stream.get("codec_type") for stream in report.get("streams", []) if isinstance(stream, dict)}
    return {"duration": duration, "has_video": "video" in kinds, "has_audio": "audio" in kinds}


def frame_filter(frame_size=DEFAULT_FRAME_SIZE, keep_aspect=False):
    """ffmpeg -vf for the frame: squash to frame_size x frame_size (bicubic), or nothing with keep_aspect."""
    if keep_aspect:
        return []
    return ["-vf", f"scale={frame_size}:{frame_size}:flags=bicubic,setsar=1"]


class Deadline:
    """Seconds left of an item's time budget (--item_timeout); a spent budget raises PairError("timeout")."""

    def __init__(self, seconds):
        self.seconds = seconds
        self.end = time.monotonic() + seconds

    def expired(self):
        """Whether the budget is spent."""
        return time.monotonic() >= self.end

    def remaining(self):
        """Seconds left (> 0), or PairError("timeout")."""
        left = self.end - time.monotonic()
        if left <= 0:
            raise PairError("timeout", f"no result within {self.seconds:.0f} s (--item_timeout)")
        return left


def cut_pair(clip_path, start_seconds, out_dir, name, sample_rate=16000, audio_seconds=3.0,
             frame_size=DEFAULT_FRAME_SIZE, keep_aspect=False, timeout=120.0, stop_event=None):
    """Write NAME.wav then NAME.jpg from a clip, each through a temporary name and os.replace.

    The clip is taken as the 10 s section that starts at `start_seconds` (middle at 5 s of the clip) unless it is
    longer than FULL_VIDEO_SECONDS, in which case it is the full video and its middle is start_seconds + 5.

    Args:
        clip_path: the video file.
        start_seconds: the item's start second in the full video.
        out_dir: where NAME.wav and NAME.jpg go.
        name: the item name.
        sample_rate: wav sample rate in Hz (mono, 16-bit PCM), or "native" for the clip's own rate.
        audio_seconds: wav length, centred on the middle (10 keeps the whole section).
        frame_size: side of the square frame.
        keep_aspect: keep the video's own frame shape instead of squashing it to a square.
        timeout: seconds allowed for all of the cutting (the item fails with reason timeout after that).
        stop_event: optional threading.Event that stops the tools when the run stops.

    Returns:
        (wav path, jpg path).

    Raises:
        PairError: no_video, no_audio, too_short, ffmpeg, timeout, cancelled or disk_full.
    """
    deadline = Deadline(timeout)
    clip = probe_clip(clip_path, deadline.remaining(), stop_event)
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
    rate = [] if sample_rate == NATIVE else ["-ar", str(sample_rate)]
    try:
        # apad + -t: a clip whose audio ends a few ms early still gives exactly audio_seconds * rate samples.
        run_tool(common + ["-ss", f"{audio_start:.3f}", "-i", ffmpeg_file(clip_path), "-map", "0:a:0", "-vn",
                           "-t", f"{audio_seconds:.3f}", "-af", "apad", "-ac", "1", *rate,
                           "-c:a", "pcm_s16le", "-f", "wav", ffmpeg_file(wav_temporary)],
                 deadline.remaining(), stop_event)
        run_tool(common + ["-ss", f"{middle:.3f}", "-i", ffmpeg_file(clip_path), "-map", "0:v:0", "-an",
                           *frame_filter(frame_size, keep_aspect), "-frames:v", "1", "-q:v", "2", "-c:v", "mjpeg",
                           "-update", "1", "-f", "image2", ffmpeg_file(jpg_temporary)],
                 deadline.remaining(), stop_event)
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
