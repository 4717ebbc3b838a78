"""train.py's TensorBoard logs (OUT_DIR/tensorboard): loss, learning rate and samples/s per step and per epoch,
validation loss, the heatmaps of a fixed set of items every epoch, and the run's flags.

Steps are counted over the whole run (epoch x steps per epoch + step), epochs from 1, so a resumed run draws on
the same curves: what the files already hold for a tag up to some step is not written again (a run killed after
its last checkpoint logged steps that the resumed run redoes), and nothing is left out. Only the chief of a
multi-worker run creates this callback.

Tags: step/loss (that step's batch loss), step/learning_rate, step/samples_per_second; epoch/loss, epoch/val_loss,
epoch/learning_rate, epoch/samples_per_second; heatmaps (one grid: each item's frame, then S_ii over it, colours
from 0 to 1, the scale the trimap thresholds live on); run/arguments (text).

Usage:
    tensorboard --logdir runs/
"""

import glob
import os
import time

import numpy as np
import keras
import tensorflow as tf

from visualization.heatmaps import colour_overlay, frame_pixels, upsample

HEATMAP_ITEMS = 8  # at most this many items in the heatmap grid
HEATMAP_COLUMNS = 4  # items a row of the grid
HEATMAP_LOW, HEATMAP_HIGH = 0.0, 1.0  # the colour scale of S_ii


def logged_steps(log_dir):
    """{tag: the highest step logged} over the event files already in log_dir (a truncated last record is fine)."""
    last = {}
    for path in sorted(glob.glob(os.path.join(glob.escape(log_dir), "events.out.tfevents.*"))):
        try:
            for event in tf.compat.v1.train.summary_iterator(path):
                for value in event.summary.value:
                    last[value.tag] = max(last.get(value.tag, -1), event.step)
        except tf.errors.DataLossError:  # the record a kill -9 cut short
            continue
    return last


def heatmap_grid(frames, similarity):
    """One uint8 image: for each item its frame, then S_ii upsampled over it, HEATMAP_COLUMNS items a row.

    Args:
        frames: B x S x S x 3 normalised model inputs.
        similarity: B x h x w maps S_ii.

    Returns:
        rows*S x columns*2S x 3 uint8.
    """
    tiles = []
    for frame, heatmap in zip(frames, similarity):
        pixels = (frame_pixels(frame) * 255).round().astype(np.uint8)  # S x S x 3
        overlay = colour_overlay(pixels, upsample(heatmap, pixels.shape[0]), HEATMAP_LOW, HEATMAP_HIGH)
        tiles.append(np.concatenate([pixels, overlay], axis=1))  # S x 2S x 3
    blank = np.zeros_like(tiles[0])
    tiles += [blank] * (-len(tiles) % HEATMAP_COLUMNS)
    rows = [np.concatenate(tiles[start:start + HEATMAP_COLUMNS], axis=1)
            for start in range(0, len(tiles), HEATMAP_COLUMNS)]
    return np.concatenate(rows, axis=0)


class TensorBoardLog(keras.callbacks.Callback):
    """Writes the run's TensorBoard events (see the module docstring).

    Args:
        log_dir: the folder of event files (OUT_DIR/tensorboard).
        steps: steps in a full epoch.
        batch_size: pairs per step (for samples/s).
        arguments: the run's flags (dict), logged as a table once per start.
        heatmap_inputs: a batch of at most HEATMAP_ITEMS prepared items ({"frame", "spectrogram"} arrays), or None.
        heatmap_names: their names.
    """

    def __init__(self, log_dir, steps, batch_size, arguments, heatmap_inputs=None, heatmap_names=()):
        super().__init__()
        self.log_dir = log_dir
        self.steps = steps
        self.batch_size = batch_size
        self.arguments = arguments
        self.heatmap_inputs = heatmap_inputs
        self.heatmap_names = list(heatmap_names)
        self.done = logged_steps(log_dir) if os.path.isdir(log_dir) else {}
        self.writer = tf.summary.create_file_writer(log_dir)
        self.step_offset, self.loss_state = 0, None
        self.epoch_index = 0
        self.steps_this_epoch = 0
        self.previous_mean = None
        self.step_clock = None
        self.epoch_samples, self.epoch_seconds = 0, 0.0
        self.traced = False
        self.arguments_logged = False

    def start_phase(self, first_epoch, step_offset, loss_state):
        """Before a model.fit that starts step_offset steps into epoch first_epoch (0-based), with the (total, count)
        of those steps' loss."""
        self.epoch_index, self.step_offset, self.loss_state = first_epoch, step_offset, loss_state

    def scalar(self, tag, value, step):
        if step > self.done.get(tag, -1):
            tf.summary.scalar(tag, value, step=step)
            self.done[tag] = step

    def on_train_begin(self, logs=None):
        step = self.epoch_index * self.steps + self.step_offset
        if not self.arguments_logged and step > self.done.get("run/arguments", -1):
            rows = "\n".join(f"| --{name} | {value} |" for name, value in sorted(self.arguments.items()))
            items = ", ".join(self.heatmap_names) or "none"
            with self.writer.as_default():
                tf.summary.text("run/arguments", f"| flag | value |\n| --- | --- |\n{rows}\n\nheatmap items: {items}",
                                step=step)
            self.done["run/arguments"] = step
        self.arguments_logged = True
        self.traced = False  # the first step of every model.fit traces the graph

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch_index = epoch
        self.steps_this_epoch = self.step_offset
        self.previous_mean = None
        if self.step_offset and self.loss_state is not None and self.loss_state[1]:
            self.previous_mean = self.loss_state[0] / self.loss_state[1]
        self.step_offset, self.loss_state = 0, None
        self.epoch_samples, self.epoch_seconds = 0, 0.0

    def on_train_batch_begin(self, batch, logs=None):
        self.step_clock = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        seconds = time.perf_counter() - self.step_clock  # the step and its wait for data, not the callbacks' work
        self.steps_this_epoch += 1
        step = self.epoch_index * self.steps + self.steps_this_epoch
        mean = float((logs or {}).get("loss", float("nan")))  # Keras logs the epoch's running mean
        count = self.steps_this_epoch
        batch_loss = mean if self.previous_mean is None else count * mean - (count - 1) * self.previous_mean
        self.previous_mean = mean
        with self.writer.as_default():
            self.scalar("step/loss", batch_loss, step)
            self.scalar("step/learning_rate", float(self.model.optimizer.learning_rate.numpy()), step)
            if self.traced:  # the first step of a model.fit traces the graph: not a measure
                self.scalar("step/samples_per_second", self.batch_size / seconds, step)
                self.epoch_samples += self.batch_size
                self.epoch_seconds += seconds
        self.traced = True

    def flush(self):
        """Put every event so far on disk: train.py calls it before each checkpoint, so that what a checkpoint
        holds is logged even if the run is killed right after it."""
        self.writer.flush()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        with self.writer.as_default():
            for name in ("loss", "val_loss"):
                if name in logs:
                    self.scalar(f"epoch/{name}", float(logs[name]), epoch + 1)
            self.scalar("epoch/learning_rate", float(self.model.optimizer.learning_rate.numpy()), epoch + 1)
            if self.epoch_samples:
                self.scalar("epoch/samples_per_second", self.epoch_samples / self.epoch_seconds, epoch + 1)
            if self.heatmap_inputs is not None and epoch + 1 > self.done.get("heatmaps", -1):
                maps = np.nan_to_num(np.asarray(self.model(self.heatmap_inputs, training=False)["similarity"]),
                                     nan=HEATMAP_LOW)  # a diverged model draws flat (train.py stops it)
                grid = heatmap_grid(np.asarray(self.heatmap_inputs["frame"]), np.asarray(maps))
                tf.summary.image("heatmaps", grid[None], step=epoch + 1)
                self.done["heatmaps"] = epoch + 1
        self.writer.flush()

    def on_train_end(self, logs=None):
        self.writer.flush()
