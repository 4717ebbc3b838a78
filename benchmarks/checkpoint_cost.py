"""What a mid-epoch checkpoint of train.py costs at the paper's shapes, and what --checkpoint_every adds to a run.

Builds the paper's model (224 px frames, 10 s of 16 kHz audio) with its optimizer state, times its train step at a
batch size, then times training/checkpoints.save_checkpoint (the finite check, model.save to a temporary name, the
rename, the loss-state file) as train.py calls it every --checkpoint_every steps. The overhead of the default is
save / (DEFAULT_CHECKPOINT_EVERY x step): for this machine's step, and for a GPU that consumes `gpu_samples_per_second`
at the paper's batch of 256.

Usage:
    python bench.py --only checkpoint
    python -m benchmarks.checkpoint_cost --batch_size 8 --saves 3
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from benchmarks.steps import build_keras_model, random_inputs, time_steps
from training.checkpoints import DEFAULT_CHECKPOINT_EVERY, save_checkpoint
from training.optimizer import TorchAdam

PAPER_BATCH = 256
PROJECT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GPU_SAMPLES_PER_SECOND = 3000  # a current data-centre GPU on the bf16 step at the paper's shapes (issue 21's estimate)


def measure(batch_size=8, saves=3, steps=2, gpu_samples_per_second=GPU_SAMPLES_PER_SECOND):
    """Time the train step and the checkpoint save at the paper's shapes.

    Args:
        batch_size: pairs per timed train step.
        saves: checkpoints written (the median is reported).
        steps: train steps timed after one warm-up step.
        gpu_samples_per_second: the GPU throughput the overhead is also given for.

    Returns:
        A dict of seconds, megabytes and overhead fractions (see the keys).
    """
    if batch_size < 1 or saves < 1 or steps < 1:
        raise ValueError(f"batch_size, saves and steps must be at least 1, got {batch_size}, {saves}, {steps}")
    model = build_keras_model("paper", "fp32")
    model.compile(optimizer=TorchAdam(learning_rate=1e-4))
    batch = random_inputs(model.settings, batch_size)
    step_timing = time_steps(lambda: model.train_on_batch(batch, return_dict=True), warmup=1, steps=steps)
    times, size = [], 0
    with tempfile.TemporaryDirectory() as out_dir:
        for index in range(saves):
            start = time.perf_counter()
            path = save_checkpoint(model, out_dir, epochs=0, steps=index + 1, loss_state=(1.0, 1.0), keep=1)
            times.append(time.perf_counter() - start)
            size = os.path.getsize(path)
    save_seconds = statistics.median(times)
    step_seconds = step_timing["median"]
    gpu_step_seconds = PAPER_BATCH / gpu_samples_per_second
    return {
        "batch_size": batch_size,
        "step_seconds": step_seconds,
        "save_seconds": save_seconds,
        "save_seconds_all": times,
        "checkpoint_megabytes": size / 1e6,
        "checkpoint_every": DEFAULT_CHECKPOINT_EVERY,
        "overhead_here": save_seconds / (DEFAULT_CHECKPOINT_EVERY * step_seconds),
        "gpu_samples_per_second": gpu_samples_per_second,
        "overhead_on_gpu": save_seconds / (DEFAULT_CHECKPOINT_EVERY * gpu_step_seconds),
    }


def describe(result):
    """The measurement as lines of text (bench.py prints them and writes them to BENCHMARKS.md)."""
    return [
        f"checkpoint at the paper's shapes: {result['checkpoint_megabytes']:.0f} MB (weights, BatchNorm statistics, "
        f"Adam's moments), saved in {result['save_seconds']:.2f} s (median of {len(result['save_seconds_all'])})",
        f"train step at batch {result['batch_size']}: {result['step_seconds']:.2f} s; --checkpoint_every "
        f"{result['checkpoint_every']} (the default) adds {100 * result['overhead_here']:.3f}% here",
        f"on a GPU at {result['gpu_samples_per_second']} samples/s (batch {PAPER_BATCH}: "
        f"{PAPER_BATCH / result['gpu_samples_per_second']:.3f} s a step), the default adds "
        f"{100 * result['overhead_on_gpu']:.2f}% (a checkpoint every "
        f"{result['checkpoint_every'] * PAPER_BATCH / result['gpu_samples_per_second']:.0f} s)",
    ]


HEADING = "## Checkpoints"  # bench.py --only checkpoint replaces the section that starts with it


def run_isolated(batch_size, saves):
    """measure() in a fresh process (as train.py saves, one model per process). Returns its dict."""
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "checkpoint.json")
        subprocess.run([sys.executable, "-m", "benchmarks.checkpoint_cost", "--batch_size", str(batch_size),
                        "--saves", str(saves), "--json", path], check=True, cwd=PROJECT, stdout=subprocess.DEVNULL)
        with open(path) as handle:
            return json.load(handle)


def format_section(result, cpu_class, command):
    """The BENCHMARKS.md section of a measurement."""
    lines = [f"{HEADING} at the paper's shapes (CPU class: {cpu_class})", "",
             "What train.py's checkpoint costs (training/checkpoints.py: the finite check, model.save under a "
             "temporary name, the rename) and what `--checkpoint_every` at its default adds to a run "
             "(benchmarks/checkpoint_cost.py):", ""]
    lines += [f"- {line}" for line in describe(result)]
    return "\n".join(lines + ["", f"Command: `{command}`", ""])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch_size", type=int, default=8, help="pairs per timed train step (default: 8)")
    parser.add_argument("--saves", type=int, default=3, help="checkpoints written; the median is reported (default: 3)")
    parser.add_argument("--json", default=None, help="also write the figures to this json file")
    arguments = parser.parse_args()
    try:
        result = measure(arguments.batch_size, arguments.saves)
    except ValueError as error:
        parser.error(str(error))
    print("\n".join(describe(result)))
    if arguments.json:
        with open(arguments.json, "w") as handle:
            json.dump(result, handle, indent=1)


if __name__ == "__main__":
    main()
