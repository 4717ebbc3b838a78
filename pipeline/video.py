"""Video files through ffmpeg: probe a file, stream its frames, cut its audio, write a video with audio muxed in.

Everything goes through ffmpeg / ffprobe subprocesses and pipes (rawvideo rgb24), so memory is bounded by one
frame, whatever the clip's length, and any container or codec ffmpeg reads works (mp4, mkv, webm, avi, mov, ...).
Frames are read on a constant grid at the stream's frame rate (ffmpeg duplicates or drops frames of a
variable-rate file onto it): frame i of a span starting at `start` is the picture shown at start + i / fps.
Any error ffmpeg reports while decoding (a truncated or damaged file) raises VideoError: a frame list that
silently stops early would give a silently shorter result.

Usage:
    from pipeline import video
    info = video.probe("clip.mp4")                      # VideoInfo(width, height, fps, duration, has_audio, ...)
    for frame in video.read_frames("clip.mp4", start=1.0, duration=2.0):   # H x W x 3 uint8
        ...
    video.extract_audio("clip.mp4", "clip.wav", start=0.0, duration=info.duration)
    with video.VideoWriter("out.mp4", width, height, info.fps, audio_source="clip.mp4", audio_start=1.0,
                           audio_duration=2.0) as writer:
        writer.write(frame)                             # renamed onto out.mp4 only when the block succeeds
"""

import dataclasses
import fractions
import json
import math
import os
import re
import shutil
import subprocess
import tempfile

import numpy as np


VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v", ".mpg", ".mpeg", ".ogv", ".flv", ".wmv", ".ts")
MAX_PIXELS = 8192 * 8192  # no real video frame is larger; a header claiming more is refused (memory per frame)
PROBE_TIMEOUT = 60  # seconds for ffprobe to read a header


class VideoError(ValueError):
    """A video that cannot be used: unreadable, damaged, truncated, without a video stream (one line)."""


@dataclasses.dataclass(frozen=True)
class VideoInfo:
    """What ffprobe says about a file's first video stream and first audio stream.

    Attributes:
        width, height: frame size in pixels as decoded, upright (a rotated phone video's sides are swapped).
        fps: frame rate as a Fraction (the stream's average rate, else its base rate).
        duration: seconds (the container's duration, else the stream's).
        has_audio: whether the file has an audio stream.
        audio_rate: the audio stream's sample rate in Hz (0 without audio).
    """

    width: int
    height: int
    fps: fractions.Fraction
    duration: float
    has_audio: bool
    audio_rate: int


def require_ffmpeg():
    """Raise VideoError with an install hint when ffmpeg or ffprobe is missing."""
    for program in ("ffmpeg", "ffprobe"):
        if shutil.which(program) is None:
            raise VideoError(f"{program} not found: install ffmpeg (apt-get install ffmpeg, or conda install ffmpeg)")


def _last_error_line(text):
    """The last line ffmpeg printed, without its "[demuxer @ 0x...]" prefix."""
    lines = [re.sub(r"^\[[^\]]* @ 0x[0-9a-f]+\] ", "", line.strip()) for line in text.splitlines() if line.strip()]
    return lines[-1][:200] if lines else "no message"


def _rate(text):
    try:
        value = fractions.Fraction(text)
    except (ValueError, ZeroDivisionError, TypeError):
        return None
    return value if 0 < value <= 1000 else None


def _rotation(stream):
    """The display rotation of a video stream in degrees (display matrix side data, or the older rotate tag)."""
    for side_data in stream.get("side_data_list", []):
        if "rotation" in side_data:
            try:
                return int(round(float(side_data["rotation"])))
            except (TypeError, ValueError):
                return 0
    try:
        return int(stream.get("tags", {}).get("rotate", 0))
    except (TypeError, ValueError):
        return 0


def probe(path):
    """Read a video file's header with ffprobe.

    Args:
        path: the file.

    Returns:
        a VideoInfo.

    Raises:
        VideoError: the file is missing, unreadable, has no video stream, or claims an impossible size or rate.
    """
    require_ffmpeg()
    if not os.path.isfile(path):
        raise VideoError(f"{path}: file not found")
    try:
        result = subprocess.run(["ffprobe", "-v", "error", "-print_format", "json", "-show_streams", "-show_format",
                                 "-i", os.path.abspath(path)], capture_output=True, timeout=PROBE_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise VideoError(f"{path}: ffprobe did not read the header within {PROBE_TIMEOUT} s")
    stderr = result.stderr.decode("utf-8", "replace")
    if result.returncode != 0:
        raise VideoError(f"{path}: not a readable video ({_last_error_line(stderr)})")
    try:
        description = json.loads(result.stdout.decode("utf-8", "replace") or "{}")
    except json.JSONDecodeError:
        raise VideoError(f"{path}: ffprobe gave no readable description")
    streams = description.get("streams", [])
    video_streams = [stream for stream in streams if stream.get("codec_type") == "video"
                     and not stream.get("disposition", {}).get("attached_pic")]
    audio_streams = [stream for stream in streams if stream.get("codec_type") == "audio"]
    if not video_streams:
        raise VideoError(f"{path}: no video stream")
    stream = video_streams[0]
    width, height = int(stream.get("width") or 0), int(stream.get("height") or 0)
    if _rotation(stream) % 180 == 90:  # ffmpeg turns the frames upright on decode (phone videos)
        width, height = height, width
    if width < 1 or height < 1 or width * height > MAX_PIXELS:
        raise VideoError(f"{path}: impossible frame size {width} x {height}")
    fps = _rate(stream.get("avg_frame_rate")) or _rate(stream.get("r_frame_rate"))
    if fps is None:
        raise VideoError(f"{path}: no usable frame rate in the header")
    duration = None
    for source in (description.get("format", {}), stream):
        try:
            value = float(source.get("duration"))
        except (TypeError, ValueError):
            continue
        if math.isfinite(value) and value > 0:
            duration = value
            break
    if duration is None:
        raise VideoError(f"{path}: no duration in the header")
    audio_rate = int(audio_streams[0].get("sample_rate") or 0) if audio_streams else 0
    return VideoInfo(width, height, fps, duration, bool(audio_streams), audio_rate)


def even_size(width, height, max_side=None):
    """The output frame size: scaled down so the longer side is at most max_side, then made even (H.264 4:2:0).

    Args:
        width, height: the source size.
        max_side: optional bound on the longer side.

    Returns:
        (width, height), each even and at least 2.
    """
    scale = min(1.0, max_side / max(width, height)) if max_side else 1.0
    return (max(2, int(round(width * scale / 2)) * 2), max(2, int(round(height * scale / 2)) * 2))


def _span_arguments(start, duration):
    arguments = ["-ss", f"{float(start):.6f}"] if start > 0 else []
    return arguments + (["-t", f"{float(duration):.6f}"] if duration is not None else [])


def read_frames(path, fps, start=0.0, duration=None, size=None):
    """Stream a span of a video's frames through an ffmpeg pipe, one frame in memory at a time.

    Args:
        path: the video file.
        fps: the frame grid (a Fraction: the file's own rate from probe()).
        start: first second of the span.
        duration: seconds of the span (None: to the end).
        size: optional (width, height) to scale to (bicubic); default: the stream's own size (probe it first).

    Yields:
        H x W x 3 uint8 RGB frames, frame i shown at start + i / fps.

    Raises:
        VideoError: ffmpeg failed or reported a decoding error (damaged or truncated file), after the frames it
            could decode were yielded; callers write nothing until the generator ends without error.
    """
    if size is None:
        info = probe(path)
        size = (info.width, info.height)
    width, height = size
    command = ["ffmpeg", "-nostdin", "-v", "error", *_span_arguments(start, None), "-i", os.path.abspath(path),
               *(["-t", f"{float(duration):.6f}"] if duration is not None else []), "-map", "0:v:0", "-an", "-sn", "-dn",
               "-vf", f"scale={width}:{height}:flags=bicubic", "-r", str(fps), "-f", "rawvideo",
               "-pix_fmt", "rgb24", "pipe:1"]
    frame_bytes = width * height * 3
    with tempfile.TemporaryFile() as errors:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors, stdin=subprocess.DEVNULL)
        try:
            while True:
                data = process.stdout.read(frame_bytes)
                if len(data) < frame_bytes:
                    break
                yield np.frombuffer(data, np.uint8).reshape(height, width, 3)  # rgb24 bytes -> H x W x 3
            process.stdout.close()
            returncode = process.wait()
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        errors.seek(0)
        message = errors.read().decode("utf-8", "replace")
    if returncode != 0 or message.strip():
        raise VideoError(f"{path}: damaged or truncated video (ffmpeg: {_last_error_line(message)})")


def extract_audio(path, wav_path, start=0.0, duration=None):
    """Cut a span of a video's first audio track into a float32 wav at the track's own rate and channels.

    Args:
        path: the video file.
        wav_path: where the wav goes.
        start: first second of the span.
        duration: seconds of the span (None: to the end).

    Raises:
        VideoError: no audio track, or ffmpeg failed or reported a decoding error.
    """
    command = ["ffmpeg", "-nostdin", "-y", "-v", "error", *_span_arguments(start, None), "-i", os.path.abspath(path),
               *(["-t", f"{float(duration):.6f}"] if duration is not None else []), "-map", "0:a:0", "-vn", "-sn", "-dn",
               "-c:a", "pcm_f32le", "-f", "wav", os.path.abspath(wav_path)]
    result = subprocess.run(command, capture_output=True, stdin=subprocess.DEVNULL)
    message = result.stderr.decode("utf-8", "replace")
    if result.returncode != 0 or message.strip():
        if "matches no streams" in message:
            raise VideoError(f"{path}: no audio track (the model needs the sound)")
        raise VideoError(f"{path}: damaged or truncated audio track (ffmpeg: {_last_error_line(message)})")


class VideoWriter:
    """Encode RGB frames to an H.264 mp4 (yuv420p, plays everywhere) with another file's audio muxed in.

    The file is written under a temporary name in the destination folder and renamed onto `path` only when the
    `with` block ends without error; on any error nothing is left behind.

    Args:
        path: the final .mp4 path.
        width, height: frame size (even numbers, see even_size).
        fps: frame rate (a Fraction).
        audio_source: optional file whose first audio track is muxed in (AAC).
        audio_start: first second of that track to use.
        audio_duration: seconds of that track (the video's own length).
    """

    def __init__(self, path, width, height, fps, audio_source=None, audio_start=0.0, audio_duration=None):
        self.path, self.width, self.height, self.fps = path, int(width), int(height), fps
        self.audio_source, self.audio_start, self.audio_duration = audio_source, audio_start, audio_duration
        self.frames_written = 0

    def __enter__(self):
        folder = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(folder, exist_ok=True)
        stem = os.path.splitext(os.path.basename(self.path))[0]
        self._temporary = os.path.join(folder, f".{stem}.partial-{os.getpid()}.mp4")
        command = ["ffmpeg", "-nostdin", "-y", "-v", "error", "-f", "rawvideo", "-pix_fmt", "rgb24",
                   "-s", f"{self.width}x{self.height}", "-framerate", str(self.fps), "-i", "pipe:0"]
        if self.audio_source:
            command += [*_span_arguments(self.audio_start, None), "-i", os.path.abspath(self.audio_source),
                        "-map", "0:v:0", "-map", "1:a:0"]
            if self.audio_duration is not None:
                command += ["-t", f"{float(self.audio_duration):.6f}"]
            command += ["-c:a", "aac", "-b:a", "160k"]
        command += ["-c:v", "libx264", "-preset", "veryfast", "-crf", "20", "-pix_fmt", "yuv420p",
                    "-movflags", "+faststart", "-f", "mp4", self._temporary]
        self._errors = tempfile.TemporaryFile()
        self._process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                         stderr=self._errors)
        return self

    def _message(self):
        self._errors.seek(0)
        return _last_error_line(self._errors.read().decode("utf-8", "replace"))

    def write(self, frame):
        """Append one H x W x 3 uint8 RGB frame."""
        if frame.shape != (self.height, self.width, 3) or frame.dtype != np.uint8:
            raise ValueError(f"frame must be {self.height} x {self.width} x 3 uint8, got {frame.shape} {frame.dtype}")
        try:
            self._process.stdin.write(np.ascontiguousarray(frame).tobytes())
        except BrokenPipeError:
            raise VideoError(f"{self.path}: ffmpeg stopped encoding ({self._message()})")
        self.frames_written += 1

    def __exit__(self, error_type, error, trace):
        """Finish the file and rename it into place, or remove it when anything failed."""
        succeeded = False
        try:
            if error_type is None:
                try:
                    self._process.stdin.close()
                except BrokenPipeError:
                    pass
                if self._process.wait() != 0:
                    raise VideoError(f"{self.path}: ffmpeg could not write the video ({self._message()})")
                os.replace(self._temporary, self.path)
                succeeded = True
        finally:
            if self._process.poll() is None:
                self._process.kill()
                self._process.wait()
            self._errors.close()
            if not succeeded and os.path.exists(self._temporary):
                os.remove(self._temporary)
        return False
