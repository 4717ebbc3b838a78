"""Frame/audio pairs on disk -> model inputs, as the LVS recipe prepares them. Every script imports this.

A pair is NAME.jpg|.jpeg|.png with NAME.wav|.flac|.ogg|.mp3|.m4a|.aac (the seed's image_K.jpg + audio_K.wav pair
up too), found in any of the layouts that circulate: one folder of both, frames/ + audio/ folders (the official
test layout), or a Data/ folder (Flickr-SoundNet), each possibly split into subfolders (Data/0 ... Data/9).
- Frame (frames.py): resize "crop" (LVS: shorter side + centre crop) or "squash" (Resize((S, S))); training:
  a 246/224-larger resize, random crop, random flip; then /255 and ImageNet mean/std.
- Audio (audio.py): mono; resampled with soxr to sample_rate, or kept at each file's own rate with
  sample_rate "native" (batches then group files of one rate); tiled until it lasts audio_seconds, cut there,
  clipped to [-1, 1]; then scipy.signal.spectrogram(nperseg=512, noverlap=274) computed with TensorFlow ops,
  log(S + 1e-7) / 12, at the batch's rate.
- Where: evaluation and prediction batches are prepared in full on the host, as the official test.py. Training
  batches leave the host as 8-bit frames and waveforms; the normalisation and the spectrogram are the model's input
  step (model_inputs, called by the model on the device: on a GPU the host only decodes and augments).

Usage:
    from pipeline.preprocessing import find_pairs, make_dataset
    pairs, skipped = find_pairs("data/demo/train")
    dataset = make_dataset(pairs, {"image_size": 224, "sample_rate": 16000, "audio_seconds": 10.0},
                           training=True, batch_size=32)
"""

import collections
import math
import os
import stat
import sys

import numpy as np
import scipy.signal
import tensorflow as tf
from tqdm import tqdm

from pipeline.audio import (  # noqa: F401  (re-exported: scripts import them from here)
    AUDIO_EXTENSIONS,
    MAX_SAMPLE_RATE,
    MIN_SAMPLE_RATE,
    NATIVE,
    audio_info,
    audio_sample_rate,
    check_sample_rate,
    load_waveform,
    prepare_waveform,
    read_audio,
    scan_for_non_finite,
)
from pipeline.frame_cache import FrameCache
from pipeline.frames import (  # noqa: F401  (re-exported)
    IMAGE_EXTENSIONS,
    IMAGENET_MEAN,
    IMAGENET_STD,
    RESIZE_MODES,
    TRAINING_RESIZE_RATIO,
    augmented_frame,
    check_image_size,
    frame_size,
    load_frame,
    normalise,
    prepare_frame,
)

SPECTROGRAM_SEGMENT = 512
SPECTROGRAM_OVERLAP = 274
LOG_OFFSET = 1e-7
LOG_DIVISOR = 12.0
PCM16_SCALE = 32768.0  # a 16-bit sample's float value is sample / 32768 (libsndfile's and TensorFlow's convention)
MAX_AUDIO_SECONDS = 600.0  # ten minutes: 60 x the paper's clips; beyond it a batch would not fit in memory
MAX_IMAGE_SIZE = 4096
DEFAULT_SETTINGS = {"image_size": 224, "sample_rate": 16000, "audio_seconds": 10.0}
PROGRESS_FROM = 2000  # pairs: a progress bar for header checks of at least this many
LAYOUT_HINT = "expected NAME.jpg|.jpeg|.png + NAME.wav|.flac|.ogg|.mp3|.m4a|.aac, frames/ + audio/, or Data/"

Pair = collections.namedtuple("Pair", ["name", "image_path", "audio_path"])

# Files that failed to decode while a dataset was being read: "path: reason". report_skipped() prints them.
SKIPPED_WHILE_LOADING = []


def check_settings(settings):
    """Validate a preprocessing settings dict and return it with every key filled in.

    Args:
        settings: dict with image_size (int, 32..4096), sample_rate (Hz in [1000, 384000], or "native": each
            file at its own rate), audio_seconds (finite, > 0, at most 600); missing keys take the recipe's
            defaults.

    Returns:
        A new dict with the three keys, typed.
    """
    merged = dict(DEFAULT_SETTINGS, **{key: value for key, value in settings.items() if key in DEFAULT_SETTINGS})
    try:
        image_size = int(merged["image_size"])
        audio_seconds = float(merged["audio_seconds"])
        sample_rate = NATIVE if merged["sample_rate"] == NATIVE else int(merged["sample_rate"])
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"settings must be numbers (sample_rate may be '{NATIVE}'), got {merged}") from None
    if image_size < 32:
        raise ValueError(f"image_size must be at least 32 pixels, got {image_size}")
    if image_size > MAX_IMAGE_SIZE:
        raise ValueError(f"image_size must be at most {MAX_IMAGE_SIZE} pixels, got {image_size}")
    if sample_rate != NATIVE and sample_rate < MIN_SAMPLE_RATE:
        raise ValueError(f"sample_rate must be at least {MIN_SAMPLE_RATE} Hz (or '{NATIVE}'), got {sample_rate}")
    if sample_rate != NATIVE and sample_rate > MAX_SAMPLE_RATE:
        raise ValueError(f"sample_rate must be at most {MAX_SAMPLE_RATE} Hz (or '{NATIVE}'), got {sample_rate}")
    if not (math.isfinite(audio_seconds) and 0 < audio_seconds <= MAX_AUDIO_SECONDS):
        raise ValueError(f"audio_seconds must be a finite number of seconds in (0, {MAX_AUDIO_SECONDS:g}] "
                         f"(a batch holds that much audio per item), got {merged['audio_seconds']}")
    if sample_rate != NATIVE and audio_seconds * sample_rate < SPECTROGRAM_SEGMENT:
        raise ValueError(
            f"audio_seconds x sample_rate must be at least {SPECTROGRAM_SEGMENT} samples, "
            f"got {audio_seconds} s at {sample_rate} Hz"
        )
    return {"image_size": image_size, "sample_rate": sample_rate, "audio_seconds": audio_seconds}


def printable(path):
    """A path as text that can always be printed (bytes that are not UTF-8 shown as \\xNN)."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def _is_utf8(path):
    """Whether a path survives the round trip to UTF-8 (TensorFlow strings and most tools need it)."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_pair(image_path, audio_path):
    """Why a pair is unusable, judged from the files' headers only (fast; float audio is scanned for NaN/inf).

    Args:
        image_path: the frame.
        audio_path: its audio file.

    Returns:
        "path: reason" for the first problem found, or None when the pair looks usable.
    """
    for path in (image_path, audio_path):
        if not _is_utf8(path):
            return f"{printable(path)}: file name is not valid UTF-8"
        try:
            status = os.stat(path)  # follows symlinks: a dangling or looping one fails here
        except OSError as error:
            return f"{path}: cannot be read ({error.strerror or type(error).__name__}; a dangling or looping symlink?)"
        if not stat.S_ISREG(status.st_mode):  # a FIFO or a device would block or never end when read
            return f"{printable(path)}: not a regular file (a FIFO, socket or device)"
    if os.path.getsize(image_path) == 0:
        return f"{image_path}: empty image file"
    try:
        frame_size(image_path)
    except ValueError as error:
        return f"{image_path}: {error}"
    except Exception as error:  # PIL raises many types for a bad file
        return f"{image_path}: unreadable image ({type(error).__name__})"
    try:
        info = audio_info(audio_path)
        check_sample_rate(info.rate, info.channels)
        if info.frames == 0:
            raise ValueError("zero-length audio")
        if info.subtype in ("FLOAT", "DOUBLE"):
            scan_for_non_finite(audio_path)
    except ValueError as error:
        return f"{audio_path}: {error}"
    except Exception as error:  # libsndfile errors while scanning
        return f"{audio_path}: unreadable audio ({type(error).__name__}: {error})"
    return None


def _media_folders(data_dir):
    """(image folder, audio folder) of a dataset root: frames/ + audio/, Data/, or data_dir itself."""
    frames, audio = os.path.join(data_dir, "frames"), os.path.join(data_dir, "audio")
    if os.path.isdir(frames) and os.path.isdir(audio):
        return frames, audio
    data = os.path.join(data_dir, "Data")
    if os.path.isdir(data):
        return data, data
    return data_dir, data_dir


def _files_by_stem(folder, extensions, skipped):
    """stem -> sorted paths of the files under folder (recursively, hidden ones left out) with one of extensions."""
    found = collections.defaultdict(list)

    def unreadable(error):
        skipped.append(f"{printable(error.filename)}: unreadable folder ({error.strerror or error})")

    for root, folders, names in os.walk(folder, onerror=unreadable):
        folders[:] = sorted(name for name in folders if not name.startswith("."))
        for name in sorted(names):
            stem, extension = os.path.splitext(name)
            if extension.lower() in extensions and not name.startswith("."):
                found[stem].append(os.path.join(root, name))
    return found


def find_pairs(data_dir, names=None):
    """List the frame/audio pairs of a dataset, with every file that cannot be used and why.

    Args:
        data_dir: folder holding NAME.jpg|.jpeg|.png + NAME.wav|.flac|.ogg|.mp3|.m4a|.aac (or image_K.jpg +
            audio_K.wav); or frames/NAME.jpg + audio/NAME.wav; or Data/NAME.jpg + Data/NAME.wav. Subfolders are
            searched too (Data/0 ... Data/9). Never read as a glob pattern.
        names: optional iterable of pair names to keep (others are ignored, not reported).

    Returns:
        (pairs, skipped): pairs is a list of Pair(name, image_path, audio_path) sorted by name; skipped is a
        list of "path: reason" strings for frames without audio, audio without a frame, two files of one kind
        sharing a name, empty, unreadable, non-finite or implausible files.
    """
    if os.path.exists(data_dir) and not os.path.isdir(data_dir):
        raise ValueError(f"data folder is a file, not a folder: {printable(data_dir)}")
    if not os.path.isdir(data_dir):
        raise ValueError(f"data folder not found: {printable(data_dir)}")
    try:
        os.listdir(data_dir)
    except OSError as error:
        raise ValueError(f"data folder cannot be read: {printable(data_dir)} ({error.strerror or error})") from None
    wanted = set(names) if names is not None else None
    image_dir, audio_dir = _media_folders(data_dir)
    skipped = []
    images = _files_by_stem(image_dir, IMAGE_EXTENSIONS, skipped)
    audios = _files_by_stem(audio_dir, AUDIO_EXTENSIONS, skipped)
    pairs, used_audio = [], set()
    for stem in tqdm(sorted(images), desc="checking pairs", unit="pair", disable=len(images) < PROGRESS_FROM):
        if wanted is not None and stem not in wanted:
            continue
        audio_stem = stem
        if stem not in audios and stem.startswith("image_"):
            audio_stem = "audio_" + stem[len("image_"):]  # the seed's naming
        used_audio.add(audio_stem)
        if len(images[stem]) > 1:
            listed = ", ".join(printable(path) for path in images[stem])
            skipped += [f"{printable(path)}: ambiguous, {len(images[stem])} frames are named {printable(stem)} "
                        f"({listed}); rename or remove all but one" for path in images[stem]]
            continue
        image_path = images[stem][0]
        if audio_stem not in audios:
            skipped.append(f"{printable(image_path)}: no matching audio ({'/'.join(AUDIO_EXTENSIONS)})")
            continue
        if len(audios[audio_stem]) > 1:
            listed = ", ".join(printable(path) for path in audios[audio_stem])
            skipped.append(f"{printable(image_path)}: ambiguous, several audio files are named "
                           f"{printable(audio_stem)} ({listed}); rename or remove all but one")
            continue
        problem = check_pair(image_path, audios[audio_stem][0])
        if problem:
            skipped.append(problem)
            continue
        pairs.append(Pair(stem, image_path, audios[audio_stem][0]))
    for stem in sorted(set(audios) - used_audio):
        if wanted is None or stem in wanted:
            skipped += [f"{printable(path)}: no matching frame" for path in audios[stem]]
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
        print(f"{len(skipped)} file(s) skipped, {len(pairs)} pair(s) usable in {printable(data_dir)}", file=stream)
    if not pairs:
        raise SystemExit(f"error: no usable frame/audio pairs in {printable(data_dir)} ({LAYOUT_HINT})")
    return pairs


def report_skipped(stream=sys.stderr):
    """Print the files that failed to decode while datasets were read: one count, then exactly those lines.

    Args:
        stream: where to print.

    Returns:
        The deduplicated, sorted list that was printed (a file that failed in every epoch counts once).
    """
    lines = sorted(set(SKIPPED_WHILE_LOADING))
    if lines:
        print(f"{len(lines)} file(s) failed to decode and were skipped:", file=stream)
        for line in lines:
            print(f"  {line}", file=stream)
    return lines


def spectrogram_width(sample_rate, audio_seconds):
    """Number of time columns of the spectrogram of audio_seconds at sample_rate (671 for 10 s at 16 kHz)."""
    length = int(round(sample_rate * audio_seconds))
    return 1 + (length - SPECTROGRAM_SEGMENT) // (SPECTROGRAM_SEGMENT - SPECTROGRAM_OVERLAP)


def spectrogram(waveform, sample_rate):
    """scipy.signal.spectrogram(x, fs, nperseg=512, noverlap=274) in TensorFlow, then log(S + 1e-7) / 12.

    Tukey(0.25) periodic window, mean removed per segment, density scaling, one-sided; in float64.

    Args:
        waveform: ... x samples float32 tensor.
        sample_rate: its rate in Hz: a number, or a tensor of the leading shape (one rate per waveform).

    Returns:
        ... x 257 x time float32 tensor (frequency first, like scipy and the official code).
    """
    window = scipy.signal.get_window(("tukey", 0.25), SPECTROGRAM_SEGMENT).astype(np.float64)
    if tf.is_tensor(sample_rate) or isinstance(sample_rate, np.ndarray):
        sample_rate = tf.cast(sample_rate, tf.float64)[..., None, None]  # ... x 1 x 1: against ... x time x 257
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


def model_inputs(batch):
    """The model's input step: a training batch as it crosses to the device -> what the towers take.

    Training batches (make_dataset(training=True)) carry 8-bit frames and waveforms, so the normalisation and the
    spectrogram run where the model runs (on the GPU, inside the train step) and the host only decodes and
    augments. The frame is the host's normalisation bit for bit (a lookup of its 768 values); the spectrogram is
    the same function, equal to the host's to 1e-5 on any device (bit for bit on this CPU, with XLA or without).
    Evaluation batches already hold both and pass through unchanged.

    Args:
        batch: {"frame": batch x S x S x 3 uint8, "waveform": batch x samples float32 (or int16 PCM, read as
            sample / 32768 like soundfile and tf.audio.decode_wav), "sample_rate": batch int32},
            or {"frame": batch x S x S x 3 float32 (normalised), "spectrogram": batch x 257 x time x 1}.

    Returns:
        {"frame": batch x S x S x 3 float32, ImageNet-normalised, "spectrogram": batch x 257 x time x 1 float32}.
    """
    if "waveform" not in batch:
        return batch
    # A lookup of the 256 x 3 values normalise gives on the host: the same bits on any device (written as arithmetic,
    # TensorFlow's graph optimiser turns the division into a multiplication and moves the last bit).
    values = tf.constant(normalise(np.repeat(np.arange(256, dtype=np.uint8)[:, None], 3, axis=1)).T.reshape(-1))
    channel_offsets = tf.constant([0, 256, 512], tf.int32)  # the table is channel-major: 3 x 256, flattened
    frame = tf.gather(values, tf.cast(batch["frame"], tf.int32) + channel_offsets)  # batch x S x S x 3
    waveform = batch["waveform"]
    if waveform.dtype == tf.int16:  # 16-bit PCM as decoded (the data service's): the float is sample / 32768, exactly
        waveform = tf.cast(waveform, tf.float32) / PCM16_SCALE
    spectrum = spectrogram(waveform, batch["sample_rate"])[..., None]  # batch x 257 x time x 1
    return {"frame": frame, "spectrogram": spectrum}


def report_skip(reason):
    """List a file that cannot be read inside the pipeline (the scripts print the list at the end).

    Args:
        reason: "path: why", printed now as a warning and again by report_skipped.
    """
    SKIPPED_WHILE_LOADING.append(reason)
    print(f"warning: skipped {reason}", file=sys.stderr)


def _load_pair(image_path, audio_path, item_seed, training, settings, rate, resize, cache):
    """Decode one pair in a tf.data worker; a bad file gives ok=False and is listed, not raised.

    item_seed: int64 vector (seed, group, pass, position): the item's augmentation depends on nothing else.
    """
    image_path, audio_path = image_path.decode(), audio_path.decode()
    size = settings["image_size"]
    length = int(round(rate * settings["audio_seconds"]))
    placeholder = (np.zeros((size, size, 3), np.uint8 if training else np.float32), np.zeros((length,), np.float32),
                   False)
    try:
        if training:  # 8-bit: normalised on the device (model_inputs)
            rng = np.random.default_rng(np.asarray(item_seed).astype(np.uint64))
            frame = augmented_frame(image_path, size, rng=rng, resize=resize, cache=cache)
        else:
            frame = load_frame(image_path, size, resize=resize)
    except Exception as error:  # a corrupt file is reported and skipped, never fatal
        report_skip(f"{image_path}: {type(error).__name__}: {error}")
        return placeholder
    try:
        waveform = load_waveform(audio_path, settings["sample_rate"], settings["audio_seconds"])
        if waveform.shape[0] != length:  # "native": a file whose rate differs from its header's
            raise ValueError(f"decoded at another rate than its header's {rate} Hz")
    except Exception as error:
        report_skip(f"{audio_path}: {type(error).__name__}: {error}")
        return placeholder
    return frame, waveform, True


def _group_by_rate(pairs, settings):
    """{rate: pairs}: one group at settings' rate, or with "native" one per file rate (from the headers)."""
    if settings["sample_rate"] != NATIVE:
        return {settings["sample_rate"]: list(pairs)}
    groups = collections.defaultdict(list)
    for pair in tqdm(pairs, desc="reading sample rates", unit="file", disable=len(pairs) < PROGRESS_FROM):
        try:
            rate = audio_sample_rate(pair.audio_path)
            if rate * settings["audio_seconds"] < SPECTROGRAM_SEGMENT:
                raise ValueError(f"{settings['audio_seconds']} s at its {rate} Hz is under {SPECTROGRAM_SEGMENT} "
                                 "samples, too short for one spectrogram column")
        except Exception as error:
            report_skip(f"{pair.audio_path}: {type(error).__name__}: {error}")
            continue
        groups[rate].append(pair)
    return dict(sorted(groups.items()))


def pass_seed(seed, pass_number, stream):
    """The stateless seed (shape [2]) of one stream of one pass: a group's shuffle, or the order of the groups.

    Args:
        seed: the run's seed (int).
        pass_number: which pass over the pairs (int or int64 scalar tensor).
        stream: the rate group's index, or the number of groups for the order in which groups take turns.
    """
    base = tf.stack([tf.constant(seed, tf.int64), tf.cast(pass_number, tf.int64)])
    return tf.random.experimental.stateless_fold_in(base, stream)


def pass_permutation(count, seed, group, pass_number, shuffle=True):
    """The order in which one pass reads a rate group's pairs: its first `kept` entries are the items of the pass.

    Args:
        count: pairs in the group.
        seed: the run's seed.
        group: the rate group's index (0 with one rate).
        pass_number: which pass (int or int64 scalar tensor).
        shuffle: False keeps the pairs' order.

    Returns:
        int64 vector of count pair indices.
    """
    indices = tf.range(count, dtype=tf.int64)
    if shuffle:
        indices = tf.random.experimental.stateless_shuffle(indices, seed=pass_seed(seed, pass_number, group))
    return indices


def _item_order(count, kept, seed, group, shuffle, first_pass, passes):
    """(index, pass, position) of every item read, pass after pass: a dataset of int64 scalars.

    Pass p reads the first `kept` items of a permutation that depends only on (seed, group, p): restarting at
    any pass or position reads the same items in the same order.
    """

    def one_pass(pass_number):
        indices = pass_permutation(count, seed, group, pass_number, shuffle)
        positions = tf.range(kept, dtype=tf.int64)
        return tf.data.Dataset.from_tensor_slices((indices[:kept], tf.fill([kept], pass_number), positions))

    last = first_pass + passes if passes is not None else np.iinfo(np.int64).max
    return tf.data.Dataset.range(first_pass, last).flat_map(one_pass)


def _rate_dataset(pairs, settings, rate, group, training, batch_size, shuffle, seed, with_names, drop_remainder,
                  deterministic, resize, first_pass, passes, skip_items, cache):
    """The batched pipeline over pairs whose audio is (or is brought to) one rate, from pass first_pass on."""
    size = settings["image_size"]
    length = int(round(rate * settings["audio_seconds"]))
    kept = len(pairs) // batch_size * batch_size if drop_remainder else len(pairs)
    image_paths = tf.constant([pair.image_path for pair in pairs])
    audio_paths = tf.constant([pair.audio_path for pair in pairs])
    names = tf.constant([pair.name for pair in pairs])
    order = _item_order(len(pairs), kept, seed, group, shuffle, first_pass, passes).skip(skip_items)

    def load(index, pass_number, position):
        item_seed = tf.stack([tf.constant(seed, tf.int64), tf.constant(group, tf.int64), pass_number, position])
        frame, waveform, ok = tf.numpy_function(
            lambda image, audio, value: _load_pair(image, audio, value, training, settings, rate, resize, cache),
            [tf.gather(image_paths, index), tf.gather(audio_paths, index), item_seed],
            [tf.uint8 if training else tf.float32, tf.float32, tf.bool],
            stateful=False,
        )
        frame.set_shape((size, size, 3))
        waveform.set_shape((length,))
        ok.set_shape(())
        return frame, waveform, tf.gather(names, index), ok

    dataset = order.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
    dataset = dataset.filter(lambda frame, waveform, name, ok: ok)

    def to_inputs(frame, waveform, name, ok):
        if training:  # the spectrogram and the normalisation are the model's input step, on the device
            inputs = {"frame": frame, "waveform": waveform,
                      "sample_rate": tf.fill(tf.shape(waveform)[:1], tf.constant(rate, tf.int32))}
        else:
            inputs = {"frame": frame, "spectrogram": spectrogram(waveform, rate)[..., None]}  # batch x 257 x time x 1
        return (inputs, name) if with_names else inputs

    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
    return dataset.map(to_inputs, num_parallel_calls=tf.data.AUTOTUNE)


def make_dataset(pairs, settings, training, batch_size, shuffle=None, seed=0, with_names=False, drop_remainder=False,
                 deterministic=None, resize="crop", repeat=False, first_batch=0, last_batch=None, cache_dir=None):
    """A batched, prefetched tf.data pipeline over pairs.

    The order and the augmentation are functions of (seed, pass, position) only (stateless random ops, no state
    carried from one pass to the next): a run restarted at any batch with first_batch reads what it would have
    read had it never stopped (train.py's exact resume).

    Args:
        pairs: list of Pair from find_pairs.
        settings: preprocessing dict (image_size, sample_rate, audio_seconds); sample_rate "native" keeps each
            file's rate, and then every batch holds files of one rate (its spectrogram is scaled by that rate).
        training: apply the training augmentation.
        batch_size: items per batch.
        shuffle: a new order every pass (default: same as training); with several rates, the batches of the
            rate groups also take turns in an order drawn per pass.
        seed: seed of the shuffle and the augmentation.
        with_names: yield (inputs, names) instead of inputs.
        drop_remainder: drop the last incomplete batch of each pass (of each rate group).
        deterministic: keep the order of parallel decoding (default: not while training, where any order will do;
            with repeat, always kept).
        resize: "crop" (LVS) or "squash" (Resize((S, S))), see frames.py.
        repeat: pass after pass without end (training); each pass drops its incomplete last batch.
        first_batch: with repeat, start at this batch of the stream (the batches of one pass are those of every
            rate group, each dropping its remainder).
        last_batch: with repeat, the stream ends after the pass after the one holding this batch (one pass to
            spare for files that fail to decode), so that a folder in which nothing decodes ends, not spins;
            None: endless.
        cache_dir: in training, a folder of decoded, pre-resized frames (frame_cache.py) that later epochs and runs
            read instead of decoding: the same pixels, bit for bit; None: decode every time.

    Returns:
        A dataset of {"frame": batch x S x S x 3, "spectrogram": batch x 257 x time x 1} dicts (float32); time
        varies between batches only with "native" rates. In training, {"frame": batch x S x S x 3 uint8,
        "waveform": batch x samples float32, "sample_rate": batch int32} instead: model_inputs (the model's input
        step, on the device) turns them into the former.
    """
    if not pairs:
        raise ValueError("no pairs to read")
    if resize not in RESIZE_MODES:
        raise ValueError(f"resize must be one of {', '.join(RESIZE_MODES)}, got {resize!r}")
    if first_batch < 0 or (first_batch and not repeat):
        raise ValueError(f"first_batch must be 0, or at least 0 with repeat, got {first_batch}")
    settings = check_settings(settings)
    cache = FrameCache(cache_dir) if cache_dir is not None and training else None
    shuffle = training if shuffle is None else shuffle
    deterministic = repeat or (not training if deterministic is None else deterministic)
    drop_remainder = drop_remainder or repeat
    usable = []
    for pair in pairs:
        if all(_is_utf8(path) for path in pair):
            usable.append(pair)
        else:
            report_skip(f"{printable(pair.image_path)}: file name is not valid UTF-8")
    groups = _group_by_rate(usable, settings)
    if not groups:
        raise ValueError("no pair has usable audio")
    sizes = [len(group) for group in groups.values()]
    per_group = [size // batch_size if drop_remainder else -(-size // batch_size) for size in sizes]  # batches a pass
    if repeat and not any(per_group):
        raise ValueError(f"batch_size {batch_size} is more than the pairs of every rate group ({sizes})")
    first_pass, offset = divmod(first_batch, sum(per_group)) if repeat else (0, 0)
    passes = 1
    if repeat:
        passes = None if last_batch is None else max(1, -(-last_batch // sum(per_group)) - first_pass + 1)

    def group_turns(pass_number):
        """Which group gives each batch of a pass (int64 vector): in turn, or in an order drawn per pass."""
        turns = tf.repeat(tf.range(len(groups), dtype=tf.int64), per_group)
        if shuffle:
            turns = tf.random.experimental.stateless_shuffle(turns, seed=pass_seed(seed, pass_number, len(groups)))
        return turns

    done_in_pass = np.zeros(len(groups), np.int64)  # batches of each group the first pass has already given
    if offset:
        done_in_pass = np.bincount(group_turns(first_pass).numpy()[:offset], minlength=len(groups))
    datasets = [_rate_dataset(group, settings, rate, index, training, batch_size, shuffle, seed, with_names,
                              drop_remainder, deterministic, resize, first_pass, passes,
                              int(done_in_pass[index]) * batch_size, cache)
                for index, (rate, group) in enumerate(groups.items())]
    if len(datasets) == 1:
        dataset = datasets[0]
    else:
        last = first_pass + passes if passes else np.iinfo(np.int64).max
        turns = tf.data.Dataset.range(first_pass, last).flat_map(
            lambda pass_number: tf.data.Dataset.from_tensor_slices(group_turns(pass_number))).skip(offset)
        dataset = tf.data.Dataset.choose_from_datasets(datasets, turns, stop_on_empty_dataset=False)
    return dataset.prefetch(tf.data.AUTOTUNE)
