"""train.py's checkpoints: written atomically and only when finite, kept to a bound, read back with the state of a
half-done epoch.

A checkpoint is OUT_DIR/checkpoints/epoch_NNNN.keras (after NNNN epochs) or epoch_NNNN_step_SSSSSSSS.keras (SSSSSSSS
steps into epoch NNNN + 1; safeguards/run_folder.py names and lists them). A mid-epoch one has a .json beside it,
written first, with the (total, count) of the epoch's mean loss so far: the resumed epoch logs the mean of all its
steps. `python bench.py --only checkpoint` times a save at the paper's shapes.

Usage:
    from training.checkpoints import save_checkpoint, read_loss_state
    save_checkpoint(model, "runs/demo", epochs=3, steps=5, loss_state=(12.5, 5.0), keep=2)
"""

import json
import os

from model import non_finite_variable
from safeguards import run_folder
from safeguards.atomic import atomic_path, write_text

DEFAULT_CHECKPOINT_EVERY = 1000  # train.py's --checkpoint_every (steps); bench.py --only checkpoint gives its cost


def save_model(model, path):
    """Save model to path atomically, unless a weight is not finite.

    Raises:
        SystemExit: one `error:` line for a non-finite weight or a failed write (the earlier file stays).
    """
    name = non_finite_variable(model)
    if name is not None:
        raise SystemExit(f"error: training diverged: {name} is not finite (NaN or inf); {path} was not written. "
                         "Try a smaller --lr; rerun with it to resume from the last good checkpoint")
    try:
        with atomic_path(path) as temporary:
            model.save(temporary)
    except OSError as error:
        raise SystemExit(f"error: could not save {path}: {run_folder.describe(error)}; the earlier checkpoints "
                         "are kept, rerun to resume once there is space") from None


def loss_state_path(path):
    """The .json beside a mid-epoch checkpoint."""
    return path[:-len(".keras")] + ".json"


def save_checkpoint(model, out_dir, epochs, steps, loss_state, keep):
    """Write the checkpoint of a position in the run, then delete all but the newest `keep` checkpoints.

    Args:
        model: the compiled LVSModel.
        out_dir: the run's folder.
        epochs: epochs finished.
        steps: steps done in the next epoch (0 at an epoch's end).
        loss_state: (total, count) of that epoch's mean loss so far (written beside a mid-epoch checkpoint).
        keep: how many checkpoints to keep, epoch ends and mid-epoch ones together.

    Returns:
        The checkpoint's path.
    """
    path = run_folder.checkpoint_path(out_dir, epochs, steps)
    if steps:
        write_text(loss_state_path(path), json.dumps({"loss_total": loss_state[0], "loss_count": loss_state[1]}))
    save_model(model, path)
    for old in run_folder.list_checkpoints(out_dir)[keep:]:
        os.remove(old.path)
        if os.path.exists(loss_state_path(old.path)):
            os.remove(loss_state_path(old.path))
    return path


def read_loss_state(path):
    """The (total, count) of the epoch's mean loss saved beside a mid-epoch checkpoint, or None."""
    try:
        with open(loss_state_path(path), encoding="utf-8") as handle:
            state = json.load(handle)
        return float(state["loss_total"]), float(state["loss_count"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
