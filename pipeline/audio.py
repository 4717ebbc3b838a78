"""Audio files on disk -> waveforms, as the LVS recipe prepares them.

- Formats: wav (8/16/24/32-bit PCM, float; also wavs whose size field is unset, as ffmpeg writes to a pipe),
  flac, ogg, mp3 through soundfile (libsndfile); m4a/aac, which libsndfile cannot read, by decoding with the
  ffmpeg binary (librosa's own audioread fallback is deprecated since librosa 0.10 and removed in 1.0).
- Mono: the mean of the channels. Resampling: librosa.resample with soxr's high-quality filter.
- A file is refused with a ValueError naming why when its header gives a rate outside [1 kHz, 384 kHz] (no real
  recording has one; the work would be out of proportion to the file), when it holds no samples, or when a
  sample is NaN or inf (before or after resampling).
- Cost is bounded by the settings: load_waveform decodes only the first audio_seconds (plus a resampling
  margin), never what the header claims.
- prepare_waveform: tiled (whole repeats) until audio_seconds, cut there, clipped to [-1, 1].

Usage:
    from pipeline.audio import load_waveform, read_audio
    samples, rate = read_audio("clip.m4a")                    # the file's own rate
    waveform = load_waveform("clip.flac", 16000, 10.0)        # 160000 float32 samples
"""

import collections
import json
import math
import os
import subprocess

import numpy as np
import soundfile

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".m4a", ".aac")
FFMPEG_EXTENSIONS = (".m4a", ".aac")  # libsndfile cannot read these
NATIVE = "native"
MIN_SAMPLE_RATE = 1000
MAX_SAMPLE_RATE = 384000
MAX_CHANNELS = 64  # more than any real recording (22.2 surround has 24); bounds the memory of one block
RESAMPLING_MARGIN_SECONDS = 0.1  # decoded past audio_seconds so the cut is not at the resampler's edge
BLOCK_SAMPLES = 1 << 20  # samples (frames x channels) decoded at a time
FFMPEG_TIMEOUT_SECONDS = 300

AudioInfo = collections.namedtuple("AudioInfo", ["rate", "frames", "channels", "subtype", "decoder"])


def check_sample_rate(rate, channels=1):
    """Refuse a header's sample rate (or channel count) that no real recording has.

    Raises:
        ValueError naming the value and the accepted range.
    """
    if not 1 <= channels <= MAX_CHANNELS:
        raise ValueError(f"{channels} channels in the header: real recordings have 1 to {MAX_CHANNELS}")
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise ValueError(
            f"sample rate of {rate} Hz in the header is outside [{MIN_SAMPLE_RATE}, {MAX_SAMPLE_RATE}] Hz, which "
            "holds every real recording (the header is corrupt, and resampling it would cost out of proportion)"
        )


def _run(command, timeout):
    """Run ffmpeg/ffprobe; a missing binary, a timeout or a failure is a one-line ValueError."""
    try:
        result = subprocess.run(command, capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise ValueError(f"{command[0]} is needed to read this file and was not found (install ffmpeg)") from None
    except subprocess.TimeoutExpired:
        raise ValueError(f"{command[0]} took more than {timeout} s on it") from None
    if result.returncode != 0:
        message = result.stderr.decode("utf-8", "replace").strip().splitlines()
        raise ValueError(f"unreadable audio ({command[0]}: {message[-1] if message else 'failed'})")
    return result.stdout


def _ffprobe(path):
    """(rate, channels) of the first audio stream of a file ffmpeg reads."""
    command = ["ffprobe", "-v", "error", "-select_streams", "a:0", "-show_entries", "stream=sample_rate,channels",
               "-of", "json", os.path.abspath(path)]
    output = _run(command, 60)
    try:
        streams = json.loads(output or b"{}").get("streams", [])
    except ValueError:
        raise ValueError("unreadable audio (ffprobe gave no description)") from None
    if not streams:
        raise ValueError("no audio stream")
    try:
        return int(streams[0]["sample_rate"]), int(streams[0]["channels"])
    except (KeyError, ValueError):
        raise ValueError("audio stream without a sample rate or channel count") from None


def audio_info(path):
    """Read an audio file's header.

    Args:
        path: any file of AUDIO_EXTENSIONS.

    Returns:
        AudioInfo(rate, frames, channels, subtype, decoder): decoder is "soundfile", or "ffmpeg" for what
        libsndfile cannot read (m4a/aac, or a file whose extension lies); then frames and subtype are None.
    """
    if os.path.splitext(path)[1].lower() not in FFMPEG_EXTENSIONS:
        try:
            info = soundfile.info(path)
            return AudioInfo(int(info.samplerate), int(info.frames), int(info.channels), info.subtype, "soundfile")
        except Exception:  # libsndfile raises LibsndfileError/RuntimeError for what it cannot read: ask ffmpeg
            pass
    rate, channels = _ffprobe(path)
    return AudioInfo(rate, None, channels, None, "ffmpeg")


def audio_sample_rate(path):
    """A file's native sample rate from its header (refused if no real recording has it)."""
    info = audio_info(path)
    check_sample_rate(info.rate, info.channels)
    return info.rate


def check_finite(samples):
    """Raise a ValueError when any sample is NaN or inf."""
    if not np.all(np.isfinite(samples)):
        raise ValueError("non-finite samples (NaN or inf)")


def scan_for_non_finite(path):
    """Check every sample of a float-typed file in bounded memory (integer PCM cannot hold NaN or inf)."""
    with soundfile.SoundFile(path) as sound:
        while True:
            block = sound.read(BLOCK_SAMPLES // sound.channels, dtype="float32")
            if block.shape[0] == 0:
                return
            check_finite(block)


def _read_with_soundfile(path, max_frames):
    """Float32 mono samples of the first max_frames (None: all) frames, block by block (the header's frame
    count is not trusted: pipe-written wavs claim 4 GB)."""
    blocks, total = [], 0
    with soundfile.SoundFile(path) as sound:
        check_sample_rate(sound.samplerate, sound.channels)
        block_frames = BLOCK_SAMPLES // sound.channels
        while max_frames is None or total < max_frames:
            wanted = block_frames if max_frames is None else min(block_frames, max_frames - total)
            block = sound.read(wanted, dtype="float32", always_2d=True)  # frames x channels
            if block.shape[0] == 0:
                break
            blocks.append(block[:, 0] if sound.channels == 1 else block.mean(axis=1))  # mono: the column itself
            total += block.shape[0]
    if len(blocks) == 1:
        return blocks[0]  # one block (any clip of a few minutes or less): no copy
    return np.concatenate(blocks) if blocks else np.zeros(0, np.float32)


def _read_with_ffmpeg(path, rate, channels, max_seconds):
    """Float32 mono samples at the file's own rate, decoded by the ffmpeg binary (at most max_seconds)."""
    command = ["ffmpeg", "-nostdin", "-v", "error", "-i", os.path.abspath(path), "-vn", "-map", "0:a:0"]
    if max_seconds is not None:
        command += ["-t", f"{max_seconds:.6f}"]
    command += ["-f", "f32le", "-acodec", "pcm_f32le", "-ar", str(rate), "-ac", str(channels), "pipe:1"]
    output = _run(command, FFMPEG_TIMEOUT_SECONDS)
    usable = len(output) // (4 * channels) * 4 * channels
    samples = np.frombuffer(output[:usable], dtype="<f4").reshape(-1, channels)  # frames x channels
    return samples.mean(axis=1).astype(np.float32)


def read_audio(path, sample_rate=None, max_seconds=None):
    """Read any supported audio file as mono float32, optionally resampled with soxr (high quality).

    Args:
        path: a wav/flac/ogg/mp3/m4a/aac file, any channel count.
        sample_rate: None or "native" keeps the file's rate; an int in Hz resamples to it.
        max_seconds: read at most this many seconds (plus a small resampling margin); None reads the whole file.

    Returns:
        (samples, rate): float32 1-D array and its rate in Hz.

    Raises:
        ValueError (one line) for an unreadable file, an absurd rate, no samples, or a NaN/inf sample.
    """
    info = audio_info(path)
    rate = info.rate
    check_sample_rate(rate, info.channels)
    if max_seconds is not None:
        max_seconds = max_seconds + RESAMPLING_MARGIN_SECONDS
    if info.decoder == "ffmpeg":
        samples = _read_with_ffmpeg(path, rate, info.channels, max_seconds)
    else:
        try:
            samples = _read_with_soundfile(path, None if max_seconds is None else int(math.ceil(max_seconds * rate)))
        except (soundfile.LibsndfileError, RuntimeError) as error:
            raise ValueError(f"undecodable audio ({error})") from None
    if samples.shape[0] == 0:
        raise ValueError("zero-length audio")
    check_finite(samples)
    if sample_rate is not None and sample_rate != NATIVE and int(sample_rate) != rate:
        import librosa  # imported here: only resampling needs it, and it takes a moment to load

        samples = librosa.resample(samples, orig_sr=rate, target_sr=int(sample_rate), res_type="soxr_hq")
        samples = samples.astype(np.float32)
        check_finite(samples)
        rate = int(sample_rate)
    return samples, rate


def prepare_waveform(samples, sample_rate, audio_seconds):
    """The training rule: tiled (whole repeats) if shorter than audio_seconds, cut there, clipped to [-1, 1].

    Args:
        samples: float32 1-D array (not empty).
        sample_rate: its rate in Hz.
        audio_seconds: length of the result.

    Returns:
        float32 vector of round(sample_rate * audio_seconds) samples.
    """
    length = int(round(sample_rate * audio_seconds))
    if samples.shape[0] == 0:
        raise ValueError("zero-length audio")
    if samples.shape[0] < length:
        samples = np.tile(samples, length // samples.shape[0] + 1)
    return np.clip(samples[:length], -1.0, 1.0).astype(np.float32, copy=False)


def load_waveform(path, sample_rate, audio_seconds):
    """Read a file as the recipe does: mono, at sample_rate, tiled to audio_seconds and cut, clipped to [-1, 1].

    Args:
        path: any supported audio file.
        sample_rate: the rate every file is brought to (soxr), or "native" for the file's own.
        audio_seconds: length of the returned audio.

    Returns:
        float32 vector of round(rate * audio_seconds) samples (rate: sample_rate, or the file's with "native").
    """
    samples, rate = read_audio(path, sample_rate, max_seconds=audio_seconds)
    return prepare_waveform(samples, rate, audio_seconds)
