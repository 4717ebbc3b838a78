"""The maps evaluate.py scores: a model's S_ii (and the object map for OGL) for every pair, read as a protocol says.

Each pair is read as a protocols.Protocol says, with preprocessing's primitives: the frame by
load_frame(resize=protocol.resize, crop or squash), the audio by read_audio at the chosen rate (an int, or "native":
each file at its own rate), then the protocol's window (protocol.window; LVS: from 0 s; EZ-VSL: the middle
audio_seconds) and prepare_waveform (tiled if shorter, cut, clipped: the training rule). Batches hold one sample
rate each, as training's do. A pair that fails to decode is named and skipped, never fatal.

Usage:
    from evaluation.maps import model_maps
    from evaluation.protocols import PROTOCOLS
    maps, failures, durations = model_maps(model, pairs, settings, PROTOCOLS["lvs"], 16)
"""

import concurrent.futures
import os
import sys

import numpy as np
import tensorflow as tf
from tqdm import tqdm

from pipeline import preprocessing

LOADING_THREADS = min(4, os.cpu_count() or 1)


class LoadedItem:
    """One decoded pair: its model inputs and how long its audio was before tiling."""

    def __init__(self, name, frame, waveform, rate, seconds):
        self.name, self.frame, self.waveform, self.rate, self.seconds = name, frame, waveform, rate, seconds


def load_item(pair, settings, protocol):
    """Decode one pair as the protocol reads it.

    Args:
        pair: preprocessing.Pair.
        settings: {"image_size", "sample_rate" (int or "native"), "audio_seconds"}.
        protocol: the protocols.Protocol whose frame transform (resize) and audio window (window) apply.

    Returns:
        A LoadedItem (seconds: the file's duration, the length tiling starts from).
    """
    frame = preprocessing.load_frame(pair.image_path, settings["image_size"], resize=protocol.resize)
    # from 0 s: exactly preprocessing.load_waveform, the training rule, and the header gives the length
    if protocol.audio_window == "start":
        samples, rate = preprocessing.read_audio(pair.audio_path, settings["sample_rate"],
                                                 max_seconds=settings["audio_seconds"])
        header = preprocessing.audio_info(pair.audio_path)  # AudioInfo(rate, frames, ...)
        seconds = header.frames / header.rate if header.frames is not None else samples.shape[0] / rate
    else:  # the middle of the file needs all of it
        samples, rate = preprocessing.read_audio(pair.audio_path, settings["sample_rate"])
        seconds = samples.shape[0] / rate
    selected = protocol.window(samples, rate, settings["audio_seconds"])
    waveform = preprocessing.prepare_waveform(selected, rate, settings["audio_seconds"])
    return LoadedItem(pair.name, frame, waveform, rate, seconds)


def _load_or_none(pair, settings, protocol, failures):
    """load_item, or None with the reason kept in failures (a corrupt file is reported and skipped, never fatal)."""
    try:
        return load_item(pair, settings, protocol)
    except Exception as error:
        failures[pair.name] = f"{pair.image_path} / {pair.audio_path}: {type(error).__name__}: {error}"
        print(f"warning: skipped {pair.name}: {failures[pair.name]}", file=sys.stderr)
        return None


def _batches(pairs, settings, protocol, batch_size, failures):
    """Lists of LoadedItem of one rate, at most batch_size long; failures collects "path: reason" by name.

    Pairs are decoded by a few threads (PIL and libsndfile release the GIL), a bounded chunk at a time.
    """
    pending = {}
    chunk = 4 * batch_size
    with concurrent.futures.ThreadPoolExecutor(max_workers=LOADING_THREADS) as executor:
        for start in range(0, len(pairs), chunk):
            loaded = executor.map(lambda pair: _load_or_none(pair, settings, protocol, failures),
                                  pairs[start:start + chunk])
            for item in loaded:
                if item is None:
                    continue
                batch = pending.setdefault(item.rate, [])
                batch.append(item)
                if len(batch) == batch_size:
                    yield pending.pop(item.rate)
    yield from pending.values()


def model_maps(model, pairs, settings, protocol, batch_size, object_mapper=None, description="scoring",
               on_progress=None):
    """The raw maps of every pair that decodes.

    Args:
        model: an LVSModel.
        pairs: list of preprocessing.Pair (a negative pair's frame and audio come from different clips).
        settings: the preprocessing settings to read with (the checkpoint's, maybe with sample_rate overridden).
        protocol: the protocols.Protocol to read with (its resize and audio window).
        batch_size: pairs per forward pass.
        object_mapper: an object_guidance.ObjectMapper to also compute object maps, or None.
        description: the progress bar's label.
        on_progress: called with a progress text after every batch (evaluate.py ticks its watchdog), or None.

    Returns:
        (maps, failures, durations): maps is a dict name -> {"similarity": h x w, "positive_mask": h x w,
        "object": h' x w' or absent}; failures a dict name -> reason; durations a dict name -> seconds of audio.
    """
    forward = tf.function(lambda inputs: model(inputs, training=False), reduce_retracing=True)
    maps, failures, durations = {}, {}, {}
    with tqdm(total=len(pairs), desc=description, unit="pair") as progress:
        for batch in _batches(pairs, settings, protocol, batch_size, failures):
            rate = batch[0].rate
            frames = np.stack([item.frame for item in batch])  # batch x S x S x 3
            waveforms = np.stack([item.waveform for item in batch])  # batch x samples
            spectrograms = preprocessing.spectrogram(waveforms, rate)[..., None]  # batch x 257 x time x 1
            outputs = forward({"frame": tf.constant(frames), "spectrogram": spectrograms})
            similarity = outputs["similarity"].numpy()
            masks = outputs["positive_mask"].numpy()
            objects = object_mapper(frames) if object_mapper is not None else None
            for index, item in enumerate(batch):
                maps[item.name] = {"similarity": similarity[index], "positive_mask": masks[index]}
                if objects is not None:
                    maps[item.name]["object"] = objects[index]
                durations[item.name] = item.seconds
            progress.update(len(batch))
            if on_progress is not None:
                on_progress(f"{progress.n} of {len(pairs)} pairs")
        progress.update(len(pairs) - progress.n)
    return maps, failures, durations
