r"""Train LVS on a folder of frame/wav pairs.

The defaults are the paper's recipe (224 x 224 frames, layer4 stride 1, 10 s of 16 kHz audio, Adam 1e-4,
batch 256, eps_pos 0.65, eps_neg 0.4, tau 0.03, temperature 0.07, ImageNet-initialised vision tower).

Everything goes to --out_dir: a checkpoint every epoch (checkpoints/epoch_NNNN.keras) and every
--checkpoint_every steps (checkpoints/epoch_NNNN_step_SSSSSSSS.keras), log.csv, loss_curve.png, args.json, and at
the end model.keras (what predict.py and evaluate.py take as --checkpoint). Rerunning the same command resumes
from the newest readable checkpoint, optimizer state and position in the epoch included, also after a kill -9.
The data order and every item's augmentation depend only on (--seed, pass, position), so a resumed run reads
what the uninterrupted run would have; with --deterministic it ends with bit-identical weights. SIGTERM or SIGINT
(a preemption notice, Ctrl-C) finish the step, save a checkpoint there and exit with code 75.

Usage:
    python train.py --data_dir data/vggss --out_dir runs/vggss
    python train.py --data_dir data/demo/train --out_dir runs/demo --image_size 112 --sample_rate 8000 \
        --audio_seconds 1 --batch_size 32 --lr 3e-4 --epochs 12 --image_weights none
    python train.py --data_dir data/vggss --data_service grpc://HOST:5050  # batches from data_service.py workers
"""

import safeguards.quiet_tensorflow  # noqa: F401  (first: imports TensorFlow with its C++ start-up lines off the terminal)

import argparse
import csv
import io
import json
import math
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from downloading import held_out  # noqa: E402
import loss as lvs  # noqa: E402
from pipeline import preprocessing, service_dataset  # noqa: E402
from safeguards import cpu_features, interruption, run_folder  # noqa: E402
from safeguards.arguments import non_negative_float, non_negative_int, positive_float, positive_int, sample_rate  # noqa: E402
from safeguards.atomic import atomic_path, write_text  # noqa: E402
from model import build_model, load_checkpoint, non_finite_variable  # noqa: E402
from training.checkpoints import DEFAULT_CHECKPOINT_EVERY, read_loss_state, save_checkpoint, save_model  # noqa: E402
from training.optimizer import TorchAdam  # noqa: E402
from training.tensorboard_log import HEATMAP_ITEMS, TensorBoardLog  # noqa: E402
from safeguards.run_folder import checkpoint_path, list_checkpoints  # noqa: E402
from safeguards.watchdog import DEFAULT_TIMEOUT_SECONDS, SLOW_WORK_ALLOWANCE_SECONDS, Watchdog  # noqa: E402

SERVICE_ERROR_WORDS = ("data service", "DataService", "PyFunc")  # an error raised while reading the service's batches
OVERLAP_FILE = "test_overlap.txt"  # names of --data_dir pairs on a shipped test list (evaluate.py reads it)
# Flags a resumed run applies to the loaded optimizer (recorded in args.json "changed_on_resume").
OPTIMIZER_ARGUMENTS = ("lr", "weight_decay")
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
    parser.add_argument("--lr", type=positive_float, default=1e-4, help="Adam learning rate; a resumed run applies a new value (default: 1e-4, the paper's)")
    parser.add_argument("--weight_decay", type=float, default=0.0, help="torch.optim.Adam's weight_decay: an L2 term added to the gradient, 0 for none; a resumed run applies a new value (default: 0)")
    parser.add_argument("--adamw", action="store_true", help="decoupled weight decay instead (torch.optim.AdamW's --weight_decay); cannot change on resume")
    parser.add_argument("--image_size", type=positive_int, default=224, help="side of the square frame crop (default: 224)")
    parser.add_argument("--layer4_stride", type=int, choices=(1, 2), default=1, help="stride of the vision tower's layer4: 1 gives 14x14 maps at 224 (default: 1)")
    parser.add_argument("--sample_rate", type=sample_rate, default=16000, help="every audio file is resampled to this rate in Hz, or 'native': each at its own rate, batches grouped by rate, as the official code (default: 16000, VGG-SS's)")
    parser.add_argument("--audio_seconds", type=positive_float, default=10.0, help="audio is tiled to and cut at this length (default: 10)")
    parser.add_argument("--eps_pos", type=float, default=lvs.EPS_POS, help="positive threshold of the trimap (default: 0.65)")
    parser.add_argument("--eps_neg", type=float, default=lvs.EPS_NEG, help="negative threshold of the trimap (default: 0.4)")
    parser.add_argument("--tau", type=positive_float, default=lvs.TAU, help="temperature of the trimap's sigmoid (default: 0.03)")
    parser.add_argument("--temperature", type=positive_float, default=lvs.TEMPERATURE, help="the logits are divided by it (default: 0.07)")
    parser.add_argument("--no_hard_negatives", action="store_true", help="ablation: drop the same-image hard negative H_i")
    parser.add_argument("--no_trimap", action="store_true", help="ablation: hard region is 1 - m_ip instead of 1 - m_in")
    parser.add_argument("--image_weights", default="imagenet", help="vision tower start: imagenet (see resnet18.py), none, or a .weights.h5/.pth path (default: imagenet)")
    parser.add_argument("--cache", default=None, metavar="DIR", help="keep the training frames decoded and resized in DIR (about 180 KB a frame at 224 px) and read them there in later epochs and runs instead of decoding: the same pixels, bit for bit; entries follow the frames' path, size and time, remove DIR to free the space (default: decode every epoch)")
    parser.add_argument("--data_service", default=None, metavar="grpc://HOST:PORT", help="read the training batches from a tf.data service (its dispatcher, started with data_service.py), whose workers on other hosts decode and augment them with TensorFlow ops: the same batches of pairs in the same order as a local run, each pair once a pass; the audio must be mono 16-bit PCM wavs at --sample_rate, and every worker must read the files at these paths; each pass is audited in OUT_DIR/data_service.log (default: decode here)")
    parser.add_argument("--data_service_timeout", type=positive_float, default=None, metavar="SECONDS", help=f"with --data_service: seconds without any batch after which the batches awaited are asked again of the workers that answer (a worker stopped for good); after {service_dataset.MAX_REQUESTS} more such waits for one batch the run stops with an error, its last checkpoint kept (default: {service_dataset.STALL_SECONDS:g})")
    parser.add_argument("--seed", type=int, default=0, help="seed of the initialisation, the shuffle and the augmentation (default: 0)")
    parser.add_argument("--steps_per_epoch", type=positive_int, default=None, help="steps per epoch (default: one pass over the pairs)")
    parser.add_argument("--deterministic", action="store_true", help="repeatable run: the same --seed gives the same numbers on the same machine (TensorFlow op determinism, ordered data loading; somewhat slower)")
    parser.add_argument("--mixed_precision", action="store_true", help="compute in bfloat16 on CPU / float16 with loss scaling on GPU; variables and the loss stay float32")
    parser.add_argument("--remat", action="store_true", help="recompute the towers' activations in the backward pass, the stems a chunk of samples at a time: at the paper's shapes about 36 MiB a sample instead of 96 (batch 256 fits in about 13 GiB) for 1.14-1.20x the time per sample, the same loss and gradients (training/remat.py; numbers in docs/BENCHMARKS.md)")
    parser.add_argument("--strategy", choices=("none", "mirrored", "multi_worker"), default="none",
                        help="tf.distribute: mirrored = every local GPU; multi_worker = several machines, each configured by "
                             "TF_CONFIG; --batch_size is the global batch and the easy negatives come from all of it (default: none)")
    parser.add_argument("--checkpoint_every", type=non_negative_int, default=DEFAULT_CHECKPOINT_EVERY, help=f"also write a checkpoint every N steps inside an epoch (atomic, with the position in the epoch): a kill -9 loses at most N steps; 0 for epoch ends only (default: {DEFAULT_CHECKPOINT_EVERY})")
    parser.add_argument("--no_tensorboard", action="store_true", help="write no TensorBoard logs (by default OUT_DIR/tensorboard gets loss, learning rate and samples/s per step and per epoch, validation loss, every epoch's heatmaps of up to 8 fixed items, and the flags; view with: tensorboard --logdir runs/)")
    parser.add_argument("--keep_checkpoints", type=positive_int, default=2, help="how many checkpoints (epoch ends and mid-epoch ones together) to keep; older ones are deleted (default: 2)")
    parser.add_argument("--stall_timeout", type=non_negative_float, default=DEFAULT_TIMEOUT_SECONDS, help=f"seconds without a finished step after which every thread's stack goes to OUT_DIR/stall.log and the run exits (code 3; rerun to resume); grows to 20x the slowest step seen (at least 900 s for the first step, which traces the graph, and for each save); 0 disables (default: {DEFAULT_TIMEOUT_SECONDS})")
    arguments = parser.parse_args(argv)
    if not math.isfinite(arguments.stall_timeout) or arguments.stall_timeout < 0:
        parser.error(f"--stall_timeout must be 0 (off) or a number of seconds, got {arguments.stall_timeout}")
    if not 0 <= arguments.weight_decay < 1:
        parser.error(f"--weight_decay must be in [0, 1), got {arguments.weight_decay}")
    if arguments.eps_neg >= arguments.eps_pos:
        parser.error(f"--eps_neg ({arguments.eps_neg}) must be below --eps_pos ({arguments.eps_pos})")
    try:
        preprocessing.check_settings(vars(arguments))
        if arguments.cache is not None:
            preprocessing.FrameCache(arguments.cache)  # a file, or a folder that cannot be made: refused here
        if arguments.data_service is not None:
            service_dataset.check_address(arguments.data_service)
    except ValueError as error:
        parser.error(str(error))
    if arguments.data_service_timeout is not None and arguments.data_service is None:
        parser.error("--data_service_timeout is for --data_service")
    if (arguments.data_service_timeout or 0) > service_dataset.MAX_STALL_SECONDS:
        parser.error(f"--data_service_timeout is at most {service_dataset.MAX_STALL_SECONDS} seconds (a week), "
                     f"got {arguments.data_service_timeout:g}")
    if arguments.data_service is not None:
        if arguments.cache is not None:
            parser.error("--cache keeps frames decoded here; with --data_service the workers decode: use one of them")
        if arguments.strategy == "multi_worker":
            parser.error("--data_service feeds one training process (--strategy none or mirrored), not multi_worker")
        if arguments.sample_rate == preprocessing.NATIVE:
            parser.error("--data_service needs one --sample_rate (its workers decode wavs at the run's rate), not native")
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
    """torch.optim.Adam with --lr and --weight_decay as an L2 term, or torch.optim.AdamW's decay with --adamw."""
    return TorchAdam(learning_rate=arguments.lr, weight_decay=arguments.weight_decay, decoupled=arguments.adamw)


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


def check_inputs(arguments):
    """Every path the run needs, checked before any model is built: the pairs, --val_dir, --image_weights, --out_dir.

    Returns:
        (training pairs, validation pairs or None).
    """
    run_folder.check_writable(arguments.out_dir)
    pairs = preprocessing.require_pairs(arguments.data_dir)
    validation_pairs = preprocessing.require_pairs(arguments.val_dir) if arguments.val_dir else None
    if arguments.data_service is not None:
        check_data_service(arguments, pairs)
    weights = arguments.image_weights
    if weights not in ("imagenet", "none") and not os.path.isfile(weights):
        raise SystemExit(f"error: image weights not found: {weights} (use imagenet, none, or a .weights.h5 / .pth file)")
    return pairs, validation_pairs


def record_test_overlap(pairs, out_dir):
    """Warn about --data_dir pairs whose names are on a shipped test list; write them to OUT_DIR/test_overlap.txt.

    The file holds one name a line and exists only when there is an overlap (a previous run's file is removed):
    evaluate.py looks for it beside a checkpoint and in its parent folder.

    Returns:
        The number of overlapping names.
    """
    names = held_out.overlapping_names(pair.name for pair in pairs)
    path = os.path.join(out_dir, OVERLAP_FILE)
    if names:
        print(f"warning: {len(names)} of the {len(pairs)} training pairs are on a shipped test list (VGG-SS / "
              f"Flickr); scores on those lists will be optimistic. Names in {path}", file=sys.stderr)
        write_text(path, "".join(f"{name}\n" for name in names))
    elif os.path.exists(path):
        os.remove(path)
    return len(names)


def resume_or_build(arguments, saved):
    """The model to train and where the run stands: the newest readable checkpoint, or a new model.

    Args:
        arguments: the command line.
        saved: the run's earlier args.json (dict), or None.

    Returns:
        (model, epochs done, steps done in the next epoch, (loss total, count) of those steps or None).
    """
    checkpoints = list_checkpoints(arguments.out_dir)
    if saved is not None:
        changed = [name for name in MODEL_ARGUMENTS + ("adamw",)
                   if saved.get(name, False if name == "adamw" else None) not in (None, getattr(arguments, name))]
        if changed and checkpoints:
            details = ", ".join(f"--{name} {saved.get(name, False)} (now {getattr(arguments, name)})" for name in changed)
            raise SystemExit(f"error: {arguments.out_dir} holds a run made with {details}; use another --out_dir")
    for epochs, steps, path in checkpoints:
        try:
            model = load_checkpoint(path, compile=True)
        except ValueError as error:
            print(f"warning: skipping a damaged checkpoint: {error}", file=sys.stderr)
            continue
        within = f", and {steps} steps of epoch {epochs + 1}" if steps else ""
        print(f"resuming from {path} (epoch {epochs} of {arguments.epochs} done{within})")
        return model, epochs, steps, read_loss_state(path) if steps else None
    if checkpoints:
        raise SystemExit(f"error: none of the {len(checkpoints)} checkpoints in {os.path.join(arguments.out_dir, 'checkpoints')} "
                         "can be used (see above); move them away to start the run over, or use another --out_dir")
    keras.utils.set_random_seed(arguments.seed)
    try:
        model = build_model(image_weights=arguments.image_weights, **model_settings(arguments))
    except (ValueError, RuntimeError, OSError) as error:  # missing or unconvertible --image_weights
        raise SystemExit(f"error: {error}")
    model.compile(optimizer=make_optimizer(arguments))
    return model, 0, 0, None


def apply_optimizer_flags(model, arguments, saved, epochs_done, resumed):
    """Give a resumed run's optimizer this command's --lr and --weight_decay, and say what changed.

    Returns:
        {flag: [before, now]} for the flags that changed (empty for a new run).
    """
    optimizer = getattr(model.optimizer, "inner_optimizer", model.optimizer)  # under a LossScaleOptimizer
    before = {"lr": float(optimizer.learning_rate.numpy()),
              "weight_decay": optimizer.decay_value if isinstance(optimizer, TorchAdam) else None}
    if saved is not None:
        before.update({name: saved[name] for name in OPTIMIZER_ARGUMENTS if name in saved})
    changes = {}
    if not resumed:
        return changes
    if not math.isclose(before["lr"], arguments.lr, rel_tol=1e-6):
        changes["lr"] = [before["lr"], arguments.lr]
    optimizer.learning_rate = arguments.lr
    if isinstance(optimizer, TorchAdam):
        if before["weight_decay"] is not None and not math.isclose(before["weight_decay"], arguments.weight_decay,
                                                                   rel_tol=1e-6, abs_tol=0):
            changes["weight_decay"] = [before["weight_decay"], arguments.weight_decay]
        optimizer.set_weight_decay(arguments.weight_decay)
    elif arguments.weight_decay:
        raise SystemExit(f"error: the checkpoint's optimizer ({type(optimizer).__name__}, from an older train.py) "
                         "cannot take --weight_decay; resume without it or use another --out_dir")
    for name, (old, new) in changes.items():
        print(f"note: --{name} changed on resume after epoch {epochs_done}: {old} -> {new}")
    return changes


def record_arguments(arguments, saved, changes, epochs_done, overlap):
    """Write args.json: this run's flags, the test-overlap count and every change made on a resume."""
    record = dict(vars(arguments), test_overlap=overlap)
    history = list((saved or {}).get("changed_on_resume", []))
    if changes:
        history.append({"after_epoch": epochs_done, **changes})
    record["changed_on_resume"] = history
    write_text(os.path.join(arguments.out_dir, "args.json"), json.dumps(record, indent=1))


def plot_loss_curve(history, path):
    """Save the training (and validation) loss per epoch as a PNG, atomically."""
    figure, axis = plt.subplots(figsize=(6, 4), dpi=100)
    epochs = [row["epoch"] for row in history]
    axis.plot(epochs, [row.get("loss", float("nan")) for row in history], marker="o", label="training loss")
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


class RunGuard(keras.callbacks.Callback):
    """Guards and records the run (chief only writes).

    Per step: stops at a non-finite loss, ticks the watchdog; every `checkpoint_every` steps (counted from the start
    of the run, so a restart keeps the same positions), and when a stop was asked (SIGTERM / SIGINT), writes a
    mid-epoch checkpoint. At every epoch end: stops if no step ran (nothing decoded) or a weight (BatchNorm moving
    statistics included) is not finite; otherwise checkpoint (atomic), then log.csv, history.json and
    loss_curve.png. `failure` holds the one-line reason when it stopped the run, `interrupted` the checkpoint written
    on a stop request.

    Args:
        out_dir: the run's folder.
        history: the rows of history.json so far (updated in place).
        keep: how many checkpoints to keep.
        watchdog: the run's Watchdog.
        steps: steps in a full epoch.
        checkpoint_every: steps between mid-epoch checkpoints (0: none).
        stop_request: a StopRequest.
    """

    def __init__(self, out_dir, history, keep, watchdog, steps, checkpoint_every, stop_request):
        super().__init__()
        self.out_dir = out_dir
        self.history = history
        self.keep = keep
        self.watchdog = watchdog
        self.steps = steps
        self.checkpoint_every = checkpoint_every
        self.stop_request = stop_request
        self.failure = None
        self.failure_hint = None
        self.interrupted = None
        self.steps_this_epoch = 0
        self.epoch_index = 0
        self.first_step = True
        self.step_offset = 0
        self.loss_state = None
        self.agreed_stop = None
        self.before_save = None  # called before every checkpoint (the TensorBoard log's flush)

    def start_phase(self, step_offset, loss_state):
        """Before a model.fit that starts step_offset steps into its first epoch, with (total, count) of their loss."""
        self.step_offset = step_offset
        self.loss_state = loss_state

    def stop(self, reason, hint="Fix the cause (e.g. a smaller --lr, the data) and rerun to resume"):
        """Stop the run at the end of this step, saving nothing more; train.py's error line gives reason and hint."""
        self.failure, self.failure_hint = reason, hint
        self.model.stop_training = True

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch_index = epoch
        self.steps_this_epoch = self.step_offset
        if self.step_offset and self.loss_state is not None:  # the epoch's mean loss goes on from the checkpoint
            self.model.loss_tracker.total.assign(self.loss_state[0])
            self.model.loss_tracker.count.assign(self.loss_state[1])
        self.step_offset, self.loss_state = 0, None
        self.watchdog.tick(f"epoch {epoch + 1} started", measure=False)

    def on_train_batch_begin(self, batch, logs=None):
        self.watchdog.tick(measure=False)
        if self.first_step:  # the first step traces the graph: slow, and not a measure of the step time
            self.watchdog.allow(SLOW_WORK_ALLOWANCE_SECONDS)

    def on_train_batch_end(self, batch, logs=None):
        self.agreed_stop = None
        self.steps_this_epoch += 1
        self.watchdog.tick(f"step {self.steps_this_epoch} of epoch {self.epoch_index + 1}", measure=not self.first_step)
        self.first_step = False
        if self.failure is not None:  # stopped from the input pipeline (the data service was lost)
            return
        loss = float((logs or {}).get("loss", 0.0))
        if not math.isfinite(loss):
            self.stop(f"the training loss is {loss} at step {self.steps_this_epoch}: training diverged")
            return
        if self.steps_this_epoch >= self.steps:
            return  # the epoch's end: on_epoch_end writes its checkpoint (and stops if asked)
        done = self.epoch_index * self.steps + self.steps_this_epoch
        if self.stop_asked() or (self.checkpoint_every and done % self.checkpoint_every == 0):
            self.watchdog.allow(SLOW_WORK_ALLOWANCE_SECONDS)
            path = self.save(self.epoch_index, self.steps_this_epoch)
            self.watchdog.tick(f"step {self.steps_this_epoch} of epoch {self.epoch_index + 1} saved", measure=False)
            if self.stop_asked():
                self.interrupted = path
                self.model.stop_training = True

    def stop_asked(self):
        """Whether a stop was asked: of this process, or with several workers of any (all then stop at this step)."""
        asked = self.stop_request.received is not None
        strategy = self.model.distribute_strategy
        if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
            return asked
        if self.agreed_stop is None:  # once per step, every worker joins the same small all-reduce
            votes = strategy.run(lambda flag: tf.identity(flag), args=(tf.constant(float(asked)),))
            self.agreed_stop = bool(strategy.reduce(tf.distribute.ReduceOp.SUM, votes, axis=None).numpy() > 0)
        return self.agreed_stop

    def save(self, epochs, steps):
        """Write the checkpoint of this position (the chief only; training/checkpoints.py). Returns its path."""
        tracker = self.model.loss_tracker
        # read by every worker: a metric's value is reduced across the workers, a collective all must join
        loss_state = (float(tracker.total.numpy()), float(tracker.count.numpy()))
        if not is_chief():
            return checkpoint_path(self.out_dir, epochs, steps)
        if self.before_save is not None:
            self.before_save()
        return save_checkpoint(self.model, self.out_dir, epochs, steps, loss_state, self.keep)

    def on_test_begin(self, logs=None):
        self.watchdog.allow(SLOW_WORK_ALLOWANCE_SECONDS)  # the first validation step traces its graph

    def on_test_batch_end(self, batch, logs=None):
        self.watchdog.tick(f"validation step {batch + 1}", measure=False)

    def on_epoch_end(self, epoch, logs=None):
        self.watchdog.allow(SLOW_WORK_ALLOWANCE_SECONDS)  # the checks and the save
        logs = logs or {}
        if self.failure is None and (self.steps_this_epoch == 0 or "loss" not in logs):
            self.stop(f"no training step ran in epoch {epoch + 1}: no pair decoded (see the warnings above)")
        if self.failure is None:
            name = non_finite_variable(self.model)
            if name is not None:
                self.stop(f"{name} is not finite (NaN or inf) after epoch {epoch + 1}: training diverged")
        if self.failure is None and not all(math.isfinite(float(value)) for value in logs.values()):
            self.stop(f"a logged value is not finite after epoch {epoch + 1}: {logs}")
        if self.failure is not None or self.interrupted is not None:
            return
        path = self.save(epoch + 1, 0)
        self.agreed_stop = None
        if self.stop_asked():
            self.interrupted = path
            self.model.stop_training = True
        if not is_chief():
            return
        self.history[:] = [row for row in self.history if row["epoch"] <= epoch]
        self.history.append({"epoch": epoch + 1, **{key: float(value) for key, value in logs.items()}})
        try:
            write_text(os.path.join(self.out_dir, "history.json"), json.dumps(self.history, indent=1))
            columns = sorted({key for row in self.history for key in row} - {"epoch"})
            table = io.StringIO()
            writer = csv.DictWriter(table, fieldnames=["epoch"] + columns)
            writer.writeheader()
            writer.writerows(self.history)
            write_text(os.path.join(self.out_dir, "log.csv"), table.getvalue())
            plot_loss_curve(self.history, os.path.join(self.out_dir, "loss_curve.png"))
        except OSError as error:
            raise SystemExit(f"error: could not write the logs of epoch {epoch + 1} in {self.out_dir}: "
                             f"{run_folder.describe(error)} (its checkpoint {path} is saved)") from None
        self.watchdog.tick(f"epoch {epoch + 1} saved", measure=False)


def read_history(out_dir, epochs_done):
    """The rows of history.json up to epochs_done; rows without an epoch number are dropped, a damaged file too."""
    path = os.path.join(out_dir, "history.json")
    try:
        rows = run_folder.read_json(path, "the loss history")
    except SystemExit as error:
        print(f"warning: {str(error).removeprefix('error: ')}; starting a new history", file=sys.stderr)
        return []
    if not isinstance(rows, list):
        return []
    return [row for row in rows if isinstance(row, dict) and isinstance(row.get("epoch"), int)
            and row["epoch"] <= epochs_done]


def check_data_service(arguments, pairs):
    """--data_service: the dispatcher answers, and every audio file is one its workers can decode."""
    try:
        service_dataset.check_dispatcher(*service_dataset.check_address(arguments.data_service))
        service_dataset.check_service_pairs(pairs, vars(arguments))
    except ValueError as error:
        raise SystemExit(f"error: {error}") from None


def data_service_audit(out_dir):
    """The function that appends a pass's audit line to OUT_DIR/data_service.log (the chief's; others' do nothing)."""
    path = os.path.join(out_dir, "data_service.log")

    def audit(line):
        if is_chief():
            with open(path, "a") as log:
                log.write(line + "\n")

    return audit


def train(arguments, pairs, validation_pairs):
    """The run itself, inside the out_dir lock (see main)."""
    if is_chief():
        run_folder.remove_partials(arguments.out_dir)
    saved = run_folder.read_json(os.path.join(arguments.out_dir, "args.json"), "the run's saved flags")
    if saved is not None and not isinstance(saved, dict):
        raise SystemExit(f"error: {os.path.join(arguments.out_dir, 'args.json')} is damaged: not a json object; "
                         "fix or delete it")
    strategy = make_strategy(arguments.strategy)
    if arguments.deterministic:
        keras.utils.set_random_seed(arguments.seed)
        tf.config.experimental.enable_op_determinism()
    if arguments.mixed_precision:
        on_gpu = bool(tf.config.list_physical_devices("GPU"))
        keras.mixed_precision.set_global_policy("mixed_float16" if on_gpu else "mixed_bfloat16")
    overlap = record_test_overlap(pairs, arguments.out_dir) if is_chief() else 0
    with strategy.scope():
        model, epochs_done, steps_done, loss_state = resume_or_build(arguments, saved)
        changes = apply_optimizer_flags(model, arguments, saved, epochs_done, resumed=bool(epochs_done or steps_done))
        model.synchronise_batch_norm(strategy.num_replicas_in_sync > 1)
        model.remat = arguments.remat  # a setting of this run, not of the checkpoint it may resume
    if is_chief():
        record_arguments(arguments, saved, changes, epochs_done, overlap)
        values = sum(math.prod(variable.shape) for variable in model.variables + model.optimizer.variables)
        run_folder.check_free_space(arguments.out_dir, 2 * 4 * values)  # float32; a new file beside the kept ones
    batch_size = arguments.batch_size
    if batch_size > len(pairs):
        print(f"note: --batch_size {batch_size} is more than the {len(pairs)} pairs; using {len(pairs)}")
        batch_size = len(pairs)
    replicas = strategy.num_replicas_in_sync
    if batch_size % replicas:
        raise SystemExit(f"error: --batch_size {batch_size} must split evenly over the {replicas} replicas")
    steps = arguments.steps_per_epoch or len(pairs) // batch_size
    if steps_done >= steps:
        raise SystemExit(f"error: the checkpoint is {steps_done} steps into epoch {epochs_done + 1}, but an epoch is "
                         f"now {steps} steps: resume with the run's --batch_size and --steps_per_epoch")
    # (first epoch, last epoch, steps per epoch, steps already done in the first): the rest of an epoch a mid-epoch
    # checkpoint stopped in, then whole epochs
    phases = []
    if steps_done and epochs_done < arguments.epochs:
        phases.append((epochs_done, epochs_done + 1, steps - steps_done, steps_done))
    start = epochs_done + (1 if steps_done else 0)
    if start < arguments.epochs:
        phases.append((start, arguments.epochs, steps, 0))

    def training_batches(first_batch, last_batch):
        if arguments.data_service is not None:
            return service_dataset.service_batches(
                pairs, model.settings, batch_size, arguments.data_service, seed=arguments.seed,
                first_batch=first_batch, last_batch=last_batch, audit=data_service_audit(arguments.out_dir),
                stall_seconds=arguments.data_service_timeout or service_dataset.STALL_SECONDS,
                on_failure=lambda reason: guard.stop(reason, hint="Start the data service's workers "
                                                     "(data_service.py) and rerun to resume"))
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        return preprocessing.make_dataset(  # every worker reads the list; each keeps its share of a batch
            pairs, model.settings, training=True, batch_size=batch_size, seed=arguments.seed, repeat=True,
            first_batch=first_batch, last_batch=last_batch, cache_dir=arguments.cache,
        ).with_options(options)

    try:
        validation = None
        if validation_pairs:
            validation = preprocessing.make_dataset(validation_pairs, model.settings, training=False,
                                                    batch_size=min(batch_size, len(validation_pairs)))
    except ValueError as error:
        raise SystemExit(f"error: {error}")
    history = read_history(arguments.out_dir, epochs_done)
    tensorboard = None
    if is_chief() and not arguments.no_tensorboard:
        tensorboard = make_tensorboard_log(arguments, model, validation_pairs or pairs, steps, batch_size)
    print(f"training on {len(pairs)} pairs from {arguments.data_dir}: {steps} steps of {batch_size} per epoch, "
          f"epochs {epochs_done + 1}..{arguments.epochs}, {replicas} replica(s), "
          f"precision {keras.mixed_precision.global_policy().name}, out_dir {arguments.out_dir}")
    stall_log = os.path.join(arguments.out_dir, "stall.log") if is_chief() else None
    with Watchdog(arguments.stall_timeout, log_path=stall_log, what="training") as watchdog, \
            interruption.StopRequest() as stop_request:
        guard = RunGuard(arguments.out_dir, history, arguments.keep_checkpoints, watchdog, steps,
                         arguments.checkpoint_every, stop_request)
        callbacks = [guard]
        if tensorboard is not None:  # it logs each step before the guard may checkpoint it, and flushes first
            guard.before_save = tensorboard.flush
            callbacks.insert(0, tensorboard)
        for first_epoch, last_epoch, phase_steps, offset in phases:
            guard.start_phase(offset, loss_state)
            if tensorboard is not None:
                tensorboard.start_phase(first_epoch, offset, loss_state)
            try:
                batches = training_batches(first_epoch * steps + offset, last_epoch * steps)
            except ValueError as error:
                raise SystemExit(f"error: {error}")
            model.fit(
                batches,
                epochs=last_epoch,
                initial_epoch=first_epoch,
                steps_per_epoch=phase_steps,
                validation_data=validation,
                callbacks=callbacks,
                verbose=1 if sys.stdout.isatty() else 2,
                shuffle=False,  # make_dataset orders the pairs
            )
            if guard.failure is not None or guard.interrupted is not None:
                break
    preprocessing.report_skipped()
    if guard.failure is not None:
        raise SystemExit(f"error: {guard.failure}; {last_checkpoint_text(arguments.out_dir)}. {guard.failure_hint}")
    if guard.interrupted is not None:
        print(f"stopped by {stop_request.received or 'a stop asked of another worker'}: saved {guard.interrupted}; rerun the same command to resume "
              f"(exit code {interruption.EXIT_CODE})", file=sys.stderr)
        raise SystemExit(interruption.EXIT_CODE)
    if is_chief():
        final_path = os.path.join(arguments.out_dir, "model.keras")
        save_model(model, final_path)
        print(f"saved {final_path}")


def make_tensorboard_log(arguments, model, items, steps, batch_size):
    """The TensorBoardLog of this run, its heatmaps drawn for the first HEATMAP_ITEMS of items (by name)."""
    try:
        batch = preprocessing.make_dataset(items[:HEATMAP_ITEMS], model.settings, training=False,
                                           batch_size=HEATMAP_ITEMS, with_names=True)
        inputs, names = next(iter(batch), (None, []))
    except ValueError as error:  # none of those items has usable audio: the curves are still logged
        print(f"warning: no heatmaps in TensorBoard: {error}", file=sys.stderr)
        inputs, names = None, []
    if inputs is not None:
        inputs = {key: value.numpy() for key, value in inputs.items()}
        names = [name.decode() for name in names.numpy()]
    return TensorBoardLog(os.path.join(arguments.out_dir, "tensorboard"), steps, batch_size, vars(arguments),
                          inputs, names)


def last_checkpoint_text(out_dir):
    """'the last good checkpoint is PATH' (the newest epoch checkpoint), or 'no checkpoint was written'."""
    good = list_checkpoints(out_dir)
    return f"the last good checkpoint is {good[0].path}" if good else "no checkpoint was written"


def main(argv=None):
    arguments = parse_arguments(argv)
    if arguments.mixed_precision:  # before any data is scanned
        problem = cpu_features.mixed_precision_problem(cpu_features.cpu_flags(),
                                                       has_gpu=bool(tf.config.list_physical_devices("GPU")))
        if problem:
            raise SystemExit(f"error: --mixed_precision: {problem}")
    pairs, validation_pairs = check_inputs(arguments)
    try:
        if not is_chief():
            return train(arguments, pairs, validation_pairs)
        with run_folder.RunLock(arguments.out_dir), run_folder.private_temp_dir(arguments.out_dir):
            return train(arguments, pairs, validation_pairs)
    except tf.errors.ResourceExhaustedError:
        raise SystemExit(f"error: out of memory: the model and a batch of {arguments.batch_size} did not fit; "
                         f"{last_checkpoint_text(arguments.out_dir)}. "
                         "Rerun with a smaller --batch_size or with --remat") from None
    except tf.errors.OpError as error:
        if arguments.data_service is not None and any(word in str(error) for word in SERVICE_ERROR_WORDS):
            cause = service_dataset.error_cause(error)
            raise SystemExit(f"error: reading batches from the data service at {arguments.data_service} failed "
                             f"({cause[:200]}); {last_checkpoint_text(arguments.out_dir)}. Check its dispatcher and "
                             "workers (data_service.py), then rerun to resume") from None
        if arguments.strategy != "multi_worker" or not isinstance(error, (
                tf.errors.UnavailableError, tf.errors.InternalError, tf.errors.CancelledError,
                tf.errors.DeadlineExceededError)):
            raise
        cause = next((line.strip() for line in str(error).splitlines() if "unhealthy" in line or "Socket closed" in line
                      or "aborted" in line), type(error).__name__)
        raise SystemExit(f"error: another worker of the cluster stopped or cannot be reached ({cause[:200]}); "
                         f"{last_checkpoint_text(arguments.out_dir)}. Restart every worker with the same command "
                         "to resume from it") from None


if __name__ == "__main__":
    main()
