"""Generated test videos for tests/test_video*.py and tests/test_predict*.py, written with ffmpeg itself.

Frame i of a clip is a flat colour whose red channel encodes i (RED_BASE + RED_STEP * i), so a decoded frame tells
which frame it is; the sound is a sequence of pure tones that change at known times.
"""

import subprocess

import numpy as np
import scipy.io.wavfile

RED_BASE, RED_STEP = 20, 3
CODECS = {  # container extension -> ffmpeg video and audio codec arguments
    ".mp4": ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac"],
    ".webm": ["-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8", "-c:a", "libopus"],
    ".mkv": ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "flac"],
    ".avi": ["-c:v", "mpeg4", "-q:v", "2", "-c:a", "pcm_s16le"],
    ".mov": ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac"],
}


def coded_frames(count, width=64, height=48):
    """count x height x width x 3 uint8 frames whose red channel encodes their index."""
    frames = np.zeros((count, height, width, 3), np.uint8)
    frames[..., 0] = (RED_BASE + RED_STEP * np.arange(count))[:, None, None]
    frames[..., 1], frames[..., 2] = 128, 64
    return frames


def tones(segments, sample_rate):
    """Concatenated sine tones: segments is a list of (frequency Hz, seconds); amplitude 0.5."""
    parts = []
    for frequency, seconds in segments:
        times = np.arange(int(round(seconds * sample_rate))) / sample_rate
        parts.append(0.5 * np.sin(2 * np.pi * frequency * times))
    return np.concatenate(parts).astype(np.float32)


def write_video(path, frames, fps, audio=None, sample_rate=16000, folder=None):
    """Encode frames (and optional float audio) into path; the codecs follow the extension (CODECS).

    Args:
        path: output file (pathlib.Path).
        frames: N x H x W x 3 uint8.
        fps: frame rate.
        audio: optional float32 mono samples.
        sample_rate: the audio's rate.
        folder: where the temporary wav goes (default: next to path).
    """
    count, height, width, _ = frames.shape
    command = ["ffmpeg", "-nostdin", "-y", "-v", "error", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s",
               f"{width}x{height}", "-framerate", str(fps), "-i", "pipe:0"]
    if audio is not None:
        wav = (folder or path.parent) / f"{path.stem}_source.wav"
        scipy.io.wavfile.write(wav, sample_rate, audio)
        command += ["-i", str(wav), "-map", "0:v", "-map", "1:a"]
    codecs = CODECS[path.suffix]
    if audio is None:
        codecs = [value for index, value in enumerate(codecs) if not (value == "-c:a" or (index and codecs[index - 1] == "-c:a"))]
    command += codecs + [str(path)]
    subprocess.run(command, input=frames.tobytes(), check=True)
    if audio is not None:
        wav.unlink()
    return path
