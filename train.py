r"""Train LVS on a folder of frame/wav pairs.

The defaults are the paper's recipe (224 x 224 frames, layer4 stride 1, 10 s of 16 kHz audio, Adam 1e-4,
batch 256, eps_pos 0.65, eps_neg 0.4, tau 0.03, temperature 0.07, ImageNet-initialised vision tower).

Everything goes to --out_dir: a checkpoint every epoch (checkpoints/epoch_NNNN.keras), log.csv,
loss_curve.png, args.json, and at the end model.keras (what predict.py and evaluate.py take as --checkpoint).
Rerunning the same command resumes from the last complete epoch, optimizer state included, also after a
kill -9 in the middle of an epoch.

Usage:
    python train.py --data_dir data/vggss --out_dir runs/vggss
    python train.py --data_dir data/demo/train --out_dir runs/demo --image_size 112 --sample_rate 8000 \
        --audio_seconds 1 --batch_size 32 --lr 3e-4 --epochs 12 --image_weights none
"""

import argparse
import csv
import glob
import io
import json
import os
import re
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

import loss as lvs  # noqa: E402
from arguments import non_negative_int, positive_float, positive_int  # noqa: E402
import preprocessing  # noqa: E402
from atomic import atomic_path, write_text  # noqa: E402
from model import build_model, load_checkpoint  # noqa: E402

CHECKPOINT_PATTERN = re.compile(r"epoch_(\d{4,})\.keras$")
# Arguments that define the network or its inputs: a resumed run must use the same ones.
MODEL_ARGUMENTS = ("image_size", "layer4_stride", "sample_rate", "audio_seconds", "eps_pos", "eps_neg", "tau",
                   "temperature", "no_hard_negatives", "no_trimap")


def parse_arguments(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", default="data", help="folder of NAME.jpg|.png + NAME.wav pairs (default: data)")
    parser.add_argument("--val_dir", default=None, help="optional folder of held-out pairs; its loss is logged as val_loss")
    parser.add_argument("--out_dir", default="runs/lvs", help="where checkpoints, logs and model.keras go; rerun to resume (default: runs/lvs)")
    parser.add_argument("--epochs", type=non_negative_int, default=100, help="total number of epochs; 0 saves the untrained model (default: 100)")
    parser.add_argument("--batch_size", type=positive_int, default=256, help="pairs per step, the contrastive batch k (default: 256, the paper's)")
    parser.add_argument("--lr", type=positive_float, default=1e-4, help="Adam learning rate (default: 1e-4, the paper's)")
    parser.add_argument("--weight_decay", type=float, default=0.0, help="decoupled weight decay of Adam, 0 for none (default: 0)")
    parser.add_argument("--image_size", type=positive_int, default=224, help="side of the square frame crop (default: 224)")
    parser.add_argument("--layer4_stride", type=int, choices=(1, 2), default=1, help="stride of the vision tower's layer4: 1 gives 14x14 maps at 224 (default: 1)")
    parser.add_argument("--sample_rate", type=positive_int, default=16000, help="every wav is resampled to this rate in Hz (default: 16000, VGG-SS's)")
    parser.add_argument("--audio_seconds", type=positive_float, default=10.0, help="audio is tiled to and cut at this length (default: 10)")
    parser.add_argument("--eps_pos", type=float, default=lvs.EPS_POS, help="positive threshold of the trimap (default: 0.65)")
    parser.add_argument("--eps_neg", type=float, default=lvs.EPS_NEG, help="negative threshold of the trimap (default: 0.4)")
    parser.add_argument("--tau", type=positive_float, default=lvs.TAU, help="temperature of the trimap's sigmoid (default: 0.03)")
    parser.add_argument("--temperature", type=positive_float, default=lvs.TEMPERATURE, help="the logits are divided by it (default: 0.07)")
    parser.add_argument("--no_hard_negatives", action="store_true", help="ablation: drop the same-image hard negative H_i")
    parser.add_argument("--no_trimap", action="store_true", help="ablation: hard region is 1 - m_ip instead of 1 - m_in")
    parser.add_argument("--image_weights", default="imagenet", help="vision tower start: imagenet (see resnet18.py), none, or a .weights.h5/.pth path (default: imagenet)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the initialisation, the shuffle and the augmentation (default: 0)")
    parser.add_argument("--steps_per_epoch", type=positive_int, default=None, help="steps per epoch (default: one pass over the pairs)")
    parser.add_argument("--deterministic", action="store_true", help="repeatable run: the same --seed gives the same numbers on the same machine (TensorFlow op determinism, ordered data loading; somewhat slower)")
    parser.add_argument("--mixed_precision", action="store_true", help="compute in bfloat16 on CPU / float16 with loss scaling on GPU; variables and the loss stay float32")
    parser.add_argument("--remat", action="store_true", help="recompute the towers' activations in the backward pass: about 30 %% less memory per sample at the paper's shapes for under half a forward pass more compute, the same loss and gradients (remat.py; numbers in BENCHMARKS.md)")
    parser.add_argument("--strategy", choices=("none", "mirrored", "multi_worker"), default="none",
                        help="tf.distribute: mirrored = every local GPU; multi_worker = several machines, each configured by "
                             "TF_CONFIG; --batch_size is the global batch and the easy negatives come from all of it (default: none)")
    parser.add_argument("--keep_checkpoints", type=positive_int, default=2, help="how many epoch checkpoints to keep (default: 2)")
    arguments = parser.parse_args(argv)
    if not 0 <= arguments.weight_decay < 1:
        parser.error(f"--weight_decay must be in [0, 1), got {arguments.weight_decay}")
    if arguments.eps_neg >= arguments.eps_pos:
        parser.error(f"--eps_neg ({arguments.eps_neg}) must be below --eps_pos ({arguments.eps_pos})")
    try:
        preprocessing.check_settings(vars(arguments))
    except ValueError as error:
        parser.error(str(error))
    return arguments


def model_settings(arguments):
    """LVSModel keyword arguments from the command line."""
    return dict(
        image_size=arguments.image_size,
        layer4_stride=arguments.layer4_stride,
        sample_rate=arguments.sample_rate,
        audio_seconds=arguments.audio_seconds,
        eps_pos=arguments.eps_pos,
        eps_neg=arguments.eps_neg,
        tau=arguments.tau,
        temperature=arguments.temperature,
        hard_negatives=not arguments.no_hard_negatives,
        trimap=not arguments.no_trimap,
    )


def make_optimizer(arguments):
    """Adam with --lr, or AdamW when --weight_decay is set."""
    if arguments.weight_decay > 0:
        return keras.optimizers.AdamW(learning_rate=arguments.lr, weight_decay=arguments.weight_decay)
    return keras.optimizers.Adam(learning_rate=arguments.lr)


def list_checkpoints(out_dir):
    """(epoch, path) of the epoch checkpoints in out_dir, newest first."""
    found = []
    for path in glob.glob(os.path.join(out_dir, "checkpoints", "epoch_*.keras")):
        match = CHECKPOINT_PATTERN.search(os.path.basename(path))
        if match:
            found.append((int(match.group(1)), path))
    return sorted(found, reverse=True)


def make_strategy(name):
    """The tf.distribute strategy for --strategy (the default strategy for none)."""
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        if "TF_CONFIG" not in os.environ:
            raise SystemExit("error: --strategy multi_worker needs TF_CONFIG (see the README's multi-machine section)")
        try:
            json.loads(os.environ["TF_CONFIG"])
        except json.JSONDecodeError as error:
            raise SystemExit(f"error: TF_CONFIG is not valid JSON: {error}")
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


def is_chief():
    """Whether this process writes files: a lone process, or the chief of a TF_CONFIG cluster (worker 0 if none)."""
    config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    task = config.get("task")
    if not task:
        return True
    if "chief" in config.get("cluster", {}):
        return task.get("type") == "chief"
    return task.get("type") == "worker" and int(task.get("index", 0)) == 0


def resume_or_build(arguments):
    """The model to train and the number of epochs already done: the newest readable checkpoint, or a new model."""
    if is_chief():
        for partial in glob.glob(os.path.join(arguments.out_dir, "**", ".*.partial-*"), recursive=True):
            os.remove(partial)  # left by a run killed while writing
    saved_arguments_path = os.path.join(arguments.out_dir, "args.json")
    if os.path.isfile(saved_arguments_path):
        with open(saved_arguments_path) as handle:
            saved = json.load(handle)
        changed = [name for name in MODEL_ARGUMENTS if name in saved and saved[name] != getattr(arguments, name)]
        if changed and list_checkpoints(arguments.out_dir):
            details = ", ".join(f"--{name} {saved[name]} (now {getattr(arguments, name)})" for name in changed)
            raise SystemExit(f"error: {arguments.out_dir} holds a run made with {details}; use another --out_dir")
    for epoch, path in list_checkpoints(arguments.out_dir):
        try:
            model = load_checkpoint(path, compile=True)
        except ValueError as error:
            print(f"warning: ignoring unreadable checkpoint {path}: {error}", file=sys.stderr)
            continue
        print(f"resuming from {path} (epoch {epoch} of {arguments.epochs} done)")
        return model, epoch
    keras.utils.set_random_seed(arguments.seed)
    try:
        model = build_model(image_weights=arguments.image_weights, **model_settings(arguments))
    except (ValueError, RuntimeError, OSError) as error:  # missing or unconvertible --image_weights
        raise SystemExit(f"error: {error}")
    model.compile(optimizer=make_optimizer(arguments))
    return model, 0


def plot_loss_curve(history, path):
    """Save the training (and validation) loss per epoch as a PNG, atomically."""
    figure, axis = plt.subplots(figsize=(6, 4), dpi=100)
    epochs = [row["epoch"] for row in history]
    axis.plot(epochs, [row["loss"] for row in history], marker="o", label="training loss")
    if any("val_loss" in row for row in history):
        axis.plot(epochs, [row.get("val_loss", float("nan")) for row in history], marker="s", label="validation loss")
    axis.set_xlabel("epoch")
    axis.set_ylabel("LVS loss")
    axis.set_title("LVS training")
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png")
    plt.close(figure)


class EpochCheckpoint(keras.callbacks.Callback):
    """At every epoch end: checkpoint (atomic), then log.csv, history.json and loss_curve.png (chief only)."""

    def __init__(self, out_dir, history, keep):
        super().__init__()
        self.out_dir = out_dir
        self.history = history
        self.keep = keep

    def on_epoch_end(self, epoch, logs=None):
        if not is_chief():
            return
        path = os.path.join(self.out_dir, "checkpoints", f"epoch_{epoch + 1:04d}.keras")
        with atomic_path(path) as temporary:
            self.model.save(temporary)
        for _, old in list_checkpoints(self.out_dir)[self.keep:]:
            os.remove(old)
        self.history[:] = [row for row in self.history if row["epoch"] <= epoch]
        self.history.append({"epoch": epoch + 1, **{key: float(value) for key, value in (logs or {}).items()}})
        write_text(os.path.join(self.out_dir, "history.json"), json.dumps(self.history, indent=1))
        columns = sorted({key for row in self.history for key in row} - {"epoch"})
        table = io.StringIO()
        writer = csv.DictWriter(table, fieldnames=["epoch"] + columns)
        writer.writeheader()
        writer.writerows(self.history)
        write_text(os.path.join(self.out_dir, "log.csv"), table.getvalue())
        plot_loss_curve(self.history, os.path.join(self.out_dir, "loss_curve.png"))


def read_history(out_dir, epochs_done):
    path = os.path.join(out_dir, "history.json")
    if not os.path.isfile(path):
        return []
    with open(path) as handle:
        return [row for row in json.load(handle) if row["epoch"] <= epochs_done]


def main(argv=None):
    arguments = parse_arguments(argv)
    strategy = make_strategy(arguments.strategy)
    if arguments.deterministic:
        keras.utils.set_random_seed(arguments.seed)
        tf.config.experimental.enable_op_determinism()
    if arguments.mixed_precision:
        on_gpu = bool(tf.config.list_physical_devices("GPU"))
        keras.mixed_precision.set_global_policy("mixed_float16" if on_gpu else "mixed_bfloat16")
    os.makedirs(arguments.out_dir, exist_ok=True)
    pairs = preprocessing.require_pairs(arguments.data_dir)
    with strategy.scope():
        model, epochs_done = resume_or_build(arguments)
        model.synchronise_batch_norm(strategy.num_replicas_in_sync > 1)
        model.remat = arguments.remat  # a setting of this run, not of the checkpoint it may resume
    if is_chief():
        write_text(os.path.join(arguments.out_dir, "args.json"), json.dumps(vars(arguments), indent=1))
    batch_size = arguments.batch_size
    if batch_size > len(pairs):
        print(f"note: --batch_size {batch_size} is more than the {len(pairs)} pairs; using {len(pairs)}")
        batch_size = len(pairs)
    replicas = strategy.num_replicas_in_sync
    if batch_size % replicas:
        raise SystemExit(f"error: --batch_size {batch_size} must split evenly over the {replicas} replicas")
    steps = arguments.steps_per_epoch or len(pairs) // batch_size
    dataset = preprocessing.make_dataset(
        pairs, model.settings, training=True, batch_size=batch_size, seed=arguments.seed + epochs_done,
        drop_remainder=True, deterministic=arguments.deterministic,
    ).repeat()
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    dataset = dataset.with_options(options)  # every worker reads the list; each keeps its share of a batch
    validation = None
    if arguments.val_dir:
        validation_pairs = preprocessing.require_pairs(arguments.val_dir)
        validation = preprocessing.make_dataset(validation_pairs, model.settings, training=False,
                                                batch_size=min(batch_size, len(validation_pairs)))
    history = read_history(arguments.out_dir, epochs_done)
    print(f"training on {len(pairs)} pairs from {arguments.data_dir}: {steps} steps of {batch_size} per epoch, "
          f"epochs {epochs_done + 1}..{arguments.epochs}, {replicas} replica(s), "
          f"precision {keras.mixed_precision.global_policy().name}, out_dir {arguments.out_dir}")
    if epochs_done < arguments.epochs:
        model.fit(
            dataset,
            epochs=arguments.epochs,
            initial_epoch=epochs_done,
            steps_per_epoch=steps,
            validation_data=validation,
            callbacks=[EpochCheckpoint(arguments.out_dir, history, arguments.keep_checkpoints)],
            verbose=1 if sys.stdout.isatty() else 2,
            shuffle=False,  # make_dataset shuffles
        )
    if preprocessing.SKIPPED_WHILE_LOADING:
        print(f"{len(preprocessing.SKIPPED_WHILE_LOADING)} file(s) failed to decode and were skipped:", file=sys.stderr)
        for line in sorted(set(preprocessing.SKIPPED_WHILE_LOADING)):
            print(f"  {line}", file=sys.stderr)
    if is_chief():
        final_path = os.path.join(arguments.out_dir, "model.keras")
        with atomic_path(final_path) as temporary:
            model.save(temporary)
        print(f"saved {final_path}")


if __name__ == "__main__":
    main()
