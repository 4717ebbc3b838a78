"""Frame/audio pairs on disk -> model inputs, as the LVS recipe prepares them. Every script imports this.

A pair is DIR/NAME.jpg|.jpeg|.png with DIR/NAME.wav (the seed's image_K.jpg + audio_K.wav pair up too).
- Frame: RGB; evaluation: shorter side resized to image_size (PIL bicubic), centre crop; training: shorter side
  to image_size * 246 / 224, random crop, random horizontal flip; then /255 and ImageNet mean/std.
- Audio: mono, resampled to one sample_rate (so batches never mix spectrogram widths), tiled until it lasts
  audio_seconds, cut there, clipped to [-1, 1]; then scipy.signal.spectrogram(nperseg=512, noverlap=274)
  computed with TensorFlow ops, log(S + 1e-7) / 12.

Usage:
    from preprocessing import find_pairs, make_dataset
    pairs, skipped = find_pairs("data/demo/train")
    dataset = make_dataset(pairs, {"image_size": 224, "sample_rate": 16000, "audio_seconds": 10.0},
                           training=True, batch_size=32)
"""

import collections
import math
import os
import sys
import warnings

import numpy as np
import scipy.io.wavfile
import scipy.signal
import tensorflow as tf
from PIL import Image

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
TRAINING_RESIZE_RATIO = 246 / 224
SPECTROGRAM_SEGMENT = 512
SPECTROGRAM_OVERLAP = 274
LOG_OFFSET = 1e-7
LOG_DIVISOR = 12.0
DEFAULT_SETTINGS = {"image_size": 224, "sample_rate": 16000, "audio_seconds": 10.0}

Pair = collections.namedtuple("Pair", ["name", "image_path", "audio_path"])

# Files that failed to decode while a dataset was being read: (path, reason). Scripts report them at the end.
SKIPPED_WHILE_LOADING = []


def check_settings(settings):
    """Validate a preprocessing settings dict and return it with every key filled in.

    Args:
        settings: dict with image_size (int >= 32), sample_rate (Hz, >= 1000), audio_seconds (> 0); missing keys
            take the recipe's defaults.

    Returns:
        A new dict with the three keys, typed.
    """
    merged = dict(DEFAULT_SETTINGS, **{key: value for key, value in settings.items() if key in DEFAULT_SETTINGS})
    merged["image_size"] = int(merged["image_size"])
    merged["sample_rate"] = int(merged["sample_rate"])
    merged["audio_seconds"] = float(merged["audio_seconds"])
    if merged["image_size"] < 32:
        raise ValueError(f"image_size must be at least 32 pixels, got {merged['image_size']}")
    if merged["sample_rate"] < 1000:
        raise ValueError(f"sample_rate must be at least 1000 Hz, got {merged['sample_rate']}")
    if merged["audio_seconds"] * merged["sample_rate"] < SPECTROGRAM_SEGMENT:
        raise ValueError(
            f"audio_seconds x sample_rate must be at least {SPECTROGRAM_SEGMENT} samples, "
            f"got {merged['audio_seconds']} s at {merged['sample_rate']} Hz"
        )
    return merged


def _audio_for_image(image_path, folder):
    """The wav in `folder` that goes with a frame: NAME.wav, or audio_K.wav for the seed's image_K.jpg."""
    stem = os.path.splitext(os.path.basename(image_path))[0]
    candidates = [os.path.join(folder, stem + ".wav")]
    if stem.startswith("image_"):
        candidates.append(os.path.join(folder, "audio_" + stem[len("image_"):] + ".wav"))
    for candidate in candidates:
        if os.path.isfile(candidate):
            return candidate
    return None


def check_pair(image_path, audio_path):
    """Why a pair is unusable, judged from the files' headers only (fast).

    Args:
        image_path: the frame.
        audio_path: its wav.

    Returns:
        "path: reason" for the first problem found, or None when the pair looks usable.
    """
    if os.path.getsize(image_path) == 0:
        return f"{image_path}: empty image file"
    try:
        with Image.open(image_path) as image:
            width, height = image.size
    except Exception as error:  # PIL raises many types for a bad file
        return f"{image_path}: unreadable image ({type(error).__name__})"
    if width < 1 or height < 1:
        return f"{image_path}: image has no pixels"
    try:
        _, samples = scipy.io.wavfile.read(audio_path, mmap=True)
    except Exception as error:
        return f"{audio_path}: unreadable wav ({type(error).__name__}: {error})"
    if samples.shape[0] == 0:
        return f"{audio_path}: zero-length audio"
    return None


def find_pairs(data_dir, names=None):
    """List the frame/wav pairs of a folder, with every file that cannot be used and why.

    Args:
        data_dir: folder holding NAME.jpg|.jpeg|.png + NAME.wav (or image_K.jpg + audio_K.wav), or the official
            test layout: data_dir/frames/NAME.jpg + data_dir/audio/NAME.wav.
        names: optional iterable of pair names to keep (others are ignored, not reported).

    Returns:
        (pairs, skipped): pairs is a list of Pair(name, image_path, audio_path) sorted by name; skipped is a
        list of "path: reason" strings for frames without a wav, wavs without a frame, empty or unreadable files.
    """
    if not os.path.isdir(data_dir):
        raise ValueError(f"data folder not found: {data_dir}")
    wanted = set(names) if names is not None else None
    image_dir, audio_dir = data_dir, data_dir
    if os.path.isdir(os.path.join(data_dir, "frames")) and os.path.isdir(os.path.join(data_dir, "audio")):
        image_dir, audio_dir = os.path.join(data_dir, "frames"), os.path.join(data_dir, "audio")
    pairs, skipped, used_audio = [], [], set()
    for filename in sorted(os.listdir(image_dir)):
        stem, extension = os.path.splitext(filename)
        if extension.lower() not in IMAGE_EXTENSIONS or filename.startswith("."):
            continue
        if wanted is not None and stem not in wanted:
            continue
        image_path = os.path.join(image_dir, filename)
        audio_path = _audio_for_image(image_path, audio_dir)
        if audio_path is None:
            skipped.append(f"{image_path}: no matching wav")
            continue
        used_audio.add(os.path.basename(audio_path))
        problem = check_pair(image_path, audio_path)
        if problem:
            skipped.append(problem)
            continue
        pairs.append(Pair(stem, image_path, audio_path))
    for filename in sorted(os.listdir(audio_dir)):
        stem = os.path.splitext(filename)[0]
        if filename.lower().endswith(".wav") and filename not in used_audio:
            if wanted is None or stem in wanted:
                skipped.append(f"{os.path.join(audio_dir, filename)}: no matching frame")
    return pairs, skipped


def require_pairs(data_dir, names=None, stream=sys.stderr):
    """find_pairs for a command-line script: report skipped files, stop with one line if nothing is usable.

    Args:
        data_dir: folder of pairs.
        names: optional names to keep.
        stream: where the skipped files are listed.

    Returns:
        The list of usable pairs (never empty).
    """
    try:
        pairs, skipped = find_pairs(data_dir, names)
    except ValueError as error:
        raise SystemExit(f"error: {error}")
    for line in skipped:
        print(f"skipped {line}", file=stream)
    if skipped:
        print(f"{len(skipped)} file(s) skipped, {len(pairs)} pair(s) usable in {data_dir}", file=stream)
    if not pairs:
        raise SystemExit(f"error: no usable frame/wav pairs in {data_dir} (expected NAME.jpg|.jpeg|.png + NAME.wav)")
    return pairs


def _resize_shorter_side(image, size):
    """torchvision.transforms.Resize(size) on a PIL image: shorter side -> size, bicubic."""
    width, height = image.size
    if width <= height:
        new_width, new_height = size, int(size * height / width)
    else:
        new_width, new_height = int(size * width / height), size
    return image.resize((new_width, new_height), Image.BICUBIC)


def load_frame(path, image_size, training=False, rng=None):
    """Read a frame and prepare it as the recipe does.

    Args:
        path: a jpg/png file (grayscale, palette and RGBA are converted to RGB).
        image_size: side of the square crop.
        training: random crop of a shorter-side-246/224 resize and a random flip instead of a centre crop.
        rng: numpy Generator for the augmentation (training only).

    Returns:
        image_size x image_size x 3 float32, ImageNet-normalised.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with Image.open(path) as image:
            image = image.convert("RGB")
    if training:
        rng = rng if rng is not None else np.random.default_rng()
        image = _resize_shorter_side(image, int(round(image_size * TRAINING_RESIZE_RATIO)))
        width, height = image.size
        left = int(rng.integers(0, width - image_size + 1))
        top = int(rng.integers(0, height - image_size + 1))
        image = image.crop((left, top, left + image_size, top + image_size))
        if rng.random() < 0.5:
            image = image.transpose(Image.FLIP_LEFT_RIGHT)
    else:
        image = _resize_shorter_side(image, image_size)
        width, height = image.size
        top = int(round((height - image_size) / 2.0))
        left = int(round((width - image_size) / 2.0))
        image = image.crop((left, top, left + image_size, top + image_size))
    pixels = np.asarray(image, dtype=np.float32) / 255.0
    return (pixels - IMAGENET_MEAN) / IMAGENET_STD


def load_waveform(path, sample_rate, audio_seconds):
    """Read a wav as the recipe does: mono, at sample_rate, tiled to audio_seconds and cut, clipped to [-1, 1].

    Args:
        path: a wav file (8/16/24/32-bit PCM or float; any channel count; any rate).
        sample_rate: the rate every file is brought to (polyphase resampling).
        audio_seconds: length of the returned audio.

    Returns:
        float32 vector of round(sample_rate * audio_seconds) samples.
    """
    file_rate, samples = scipy.io.wavfile.read(path)
    if samples.shape[0] == 0:
        raise ValueError("zero-length audio")
    if np.issubdtype(samples.dtype, np.integer):
        if samples.dtype == np.uint8:
            samples = (samples.astype(np.float32) - 128.0) / 128.0
        else:
            samples = samples.astype(np.float32) / float(-np.iinfo(samples.dtype).min)
    samples = samples.astype(np.float32)
    if samples.ndim == 2:
        samples = samples.mean(axis=1)  # frames x channels -> frames
    if file_rate != sample_rate:
        divisor = math.gcd(int(file_rate), int(sample_rate))
        samples = scipy.signal.resample_poly(samples, sample_rate // divisor, file_rate // divisor)
        samples = samples.astype(np.float32)
    length = int(round(sample_rate * audio_seconds))
    if samples.shape[0] < length:
        samples = np.tile(samples, length // samples.shape[0] + 1)
    return np.clip(samples[:length], -1.0, 1.0)


def spectrogram_width(sample_rate, audio_seconds):
    """Number of time columns of the spectrogram of audio_seconds at sample_rate (671 for 10 s at 16 kHz)."""
    length = int(round(sample_rate * audio_seconds))
    return 1 + (length - SPECTROGRAM_SEGMENT) // (SPECTROGRAM_SEGMENT - SPECTROGRAM_OVERLAP)


def spectrogram(waveform, sample_rate):
    """scipy.signal.spectrogram(x, fs, nperseg=512, noverlap=274) in TensorFlow, then log(S + 1e-7) / 12.

    Tukey(0.25) periodic window, mean removed per segment, density scaling, one-sided.

    Args:
        waveform: ... x samples float32 tensor.
        sample_rate: its rate in Hz.

    Returns:
        ... x 257 x time float32 tensor (frequency first, like scipy and the official code).
    """
    window = scipy.signal.get_window(("tukey", 0.25), SPECTROGRAM_SEGMENT).astype(np.float64)
    scale = 1.0 / (sample_rate * np.sum(window**2))
    step = SPECTROGRAM_SEGMENT - SPECTROGRAM_OVERLAP
    segments = tf.signal.frame(tf.cast(waveform, tf.float64), SPECTROGRAM_SEGMENT, step)  # ... x time x 512
    segments = segments - tf.reduce_mean(segments, axis=-1, keepdims=True)
    spectrum = tf.signal.rfft(segments * window)  # ... x time x 257
    power = tf.math.real(spectrum * tf.math.conj(spectrum)) * scale
    one_sided = np.full(SPECTROGRAM_SEGMENT // 2 + 1, 2.0)
    one_sided[0] = one_sided[-1] = 1.0  # DC and Nyquist are not doubled
    power = power * one_sided
    power = tf.linalg.matrix_transpose(power)  # ... x 257 x time
    return tf.cast(tf.math.log(power + LOG_OFFSET) / LOG_DIVISOR, tf.float32)


def _skip(path, error, size, length):
    """Report a file that failed to decode inside the pipeline and return a placeholder marked not ok."""
    reason = f"{path}: {type(error).__name__}: {error}"
    SKIPPED_WHILE_LOADING.append(reason)
    print(f"warning: skipped {reason}", file=sys.stderr)
    return np.zeros((size, size, 3), np.float32), np.zeros((length,), np.float32), False


def _load_pair(image_path, audio_path, seed, training, settings):
    """Decode one pair in a tf.data worker; a bad file gives ok=False and is listed, not raised."""
    image_path, audio_path = image_path.decode(), audio_path.decode()
    size = settings["image_size"]
    length = int(round(settings["sample_rate"] * settings["audio_seconds"]))
    rng = np.random.default_rng(int(seed)) if training else None
    try:
        frame = load_frame(image_path, size, training=training, rng=rng)
    except Exception as error:  # a corrupt file is reported and skipped, never fatal
        return _skip(image_path, error, size, length)
    try:
        waveform = load_waveform(audio_path, settings["sample_rate"], settings["audio_seconds"])
    except Exception as error:
        return _skip(audio_path, error, size, length)
    return frame, waveform, True


def make_dataset(pairs, settings, training, batch_size, shuffle=None, seed=0, with_names=False, drop_remainder=False,
                 deterministic=None):
    """A batched, prefetched tf.data pipeline over pairs.

    Args:
        pairs: list of Pair from find_pairs.
        settings: preprocessing dict (image_size, sample_rate, audio_seconds).
        training: apply the training augmentation.
        batch_size: items per batch.
        shuffle: reshuffle every epoch (default: same as training).
        seed: seed of the shuffle and the augmentation.
        with_names: yield (inputs, names) instead of inputs.
        drop_remainder: drop the last incomplete batch.
        deterministic: keep the order of parallel decoding (default: not while training, where any order will do).

    Returns:
        A dataset of {"frame": batch x S x S x 3, "spectrogram": batch x 257 x time x 1} dicts (float32).
    """
    if not pairs:
        raise ValueError("no pairs to read")
    settings = check_settings(settings)
    shuffle = training if shuffle is None else shuffle
    size = settings["image_size"]
    length = int(round(settings["sample_rate"] * settings["audio_seconds"]))
    names = [pair.name for pair in pairs]
    dataset = tf.data.Dataset.from_tensor_slices(
        ([pair.image_path for pair in pairs], [pair.audio_path for pair in pairs], names)
    )
    if shuffle:
        dataset = dataset.shuffle(len(pairs), seed=seed, reshuffle_each_iteration=True)
    item_seeds = tf.data.Dataset.random(seed=seed)  # one augmentation seed per element, a new one every epoch
    dataset = tf.data.Dataset.zip((dataset, item_seeds))

    def load(paths, item_seed):
        image_path, audio_path, name = paths
        frame, waveform, ok = tf.numpy_function(
            lambda image, audio, value: _load_pair(image, audio, value, training, settings),
            [image_path, audio_path, item_seed],
            [tf.float32, tf.float32, tf.bool],
            stateful=False,
        )
        frame.set_shape((size, size, 3))
        waveform.set_shape((length,))
        ok.set_shape(())
        return frame, waveform, name, ok

    deterministic = not training if deterministic is None else deterministic
    dataset = dataset.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
    dataset = dataset.filter(lambda frame, waveform, name, ok: ok)

    def to_inputs(frame, waveform, name, ok):
        spectrum = spectrogram(waveform, settings["sample_rate"])[..., None]  # batch x 257 x time x 1
        inputs = {"frame": frame, "spectrogram": spectrum}
        return (inputs, name) if with_names else inputs

    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
    dataset = dataset.map(to_inputs, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE)
