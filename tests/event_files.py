"""What train.py's TensorBoard event files hold, read back with TensorFlow's own reader (tf.compat.v1.train.summary_iterator)."""

import collections
from pathlib import Path

import numpy as np
import tensorflow as tf


def read_events(log_dir):
    """{tag: [(step, value)]} over every event file in log_dir, in file order; images as uint8 arrays, text as str."""
    found = collections.defaultdict(list)
    for path in sorted(Path(log_dir).glob("events.out.tfevents.*")):
        try:
            for event in tf.compat.v1.train.summary_iterator(str(path)):
                for value in event.summary.value:
                    found[value.tag].append((event.step, decode(value)))
        except tf.errors.DataLossError:  # a last record cut short by kill -9
            continue
    return dict(found)


def decode(value):
    """A summary value as a float (scalars), an H x W x 3 uint8 array (images) or a str (text)."""
    array = tf.make_ndarray(value.tensor)
    plugin = value.metadata.plugin_data.plugin_name
    if plugin == "images":
        return tf.io.decode_png(array[2]).numpy()  # [width, height, png...]
    if plugin == "text":
        return array.item().decode() if array.ndim == 0 else array.flat[0].decode()
    return float(np.asarray(array))


def event_pids(log_dir):
    """The process ids in the event files' names (events.out.tfevents.TIME.HOST.PID.N.v2)."""
    return {int(path.name.split(".")[-3]) for path in Path(log_dir).glob("events.out.tfevents.*")}
