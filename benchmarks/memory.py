"""Peak memory of training runs for bench.py, each in its own subprocess, guarded so none pushes the machine into OOM.

bench.py starts itself as `bench.py --memory_probe FRAMEWORK:VARIANT` once per variant and batch; the child resets
the kernel's RSS high-water mark after its imports, builds one model, runs its train steps and prints one JSON
line (PROBE_PREFIX ...). Before a child starts, its peak is extrapolated from the same variant's smaller batches;
it is not started unless that estimate plus a margin fits in the memory available, and it is stopped when the
machine's available memory falls below half the margin while it runs (other processes share this machine).

Usage (bench.py does this):
    results = measure_memory(["keras:fp32", "torch:nchw"], "paper", [16, 64], warmup=1, steps=2, threads=2,
                             margin=4 * 2**30, script="bench.py")
"""

import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import psutil

PROBE_PREFIX = "MEMORY_PROBE "
GIB = 2**30


def reset_peak_rss():
    """Reset the kernel's RSS high-water mark to the current RSS (Linux: write 5 to /proc/self/clear_refs).

    So the peak measured after it is the training run's, not the imports' (TensorFlow's import briefly peaks).

    Returns:
        "VmHWM" when the reset worked, "ru_maxrss" (peak since the process started) when it did not.
    """
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return "VmHWM"
    except OSError:
        return "ru_maxrss"


def peak_rss(source):
    """Peak RSS in bytes: VmHWM from /proc/self/status, or getrusage's ru_maxrss (kilobytes on Linux)."""
    if source == "VmHWM":
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def parse_specification(specification):
    """Split "keras:VARIANT", "keras:VARIANT@GIB" or "torch:VARIANT" into (framework, variant, cap in GiB or None).

    VARIANT@GIB is the variant with TensorFlow's CPU allocator capped at GIB GiB (benchmarks/host_memory.py).
    Raises ValueError for a cap that is not a number.
    """
    framework, _, rest = specification.partition(":")
    variant, at, cap = rest.partition("@")
    if not at:
        return framework, variant, None
    try:
        return framework, variant, float(cap)
    except ValueError:
        raise ValueError(f"{specification}: the cap after @ must be a number of GiB") from None


def estimate_peak(previous, batch_size, cap=None):
    """Estimated peak RSS (bytes) of a run at batch_size from runs of the same variant at smaller batches.

    Args:
        previous: successful results (dicts with batch_size, after_imports, peak) of that variant.
        batch_size: the batch to estimate.
        cap: bytes TensorFlow's CPU allocator is capped at (a VARIANT@GIB run), or None: the estimate is then at
            most the largest earlier run's RSS after the build plus the cap (the allocator cannot hold more).

    Returns:
        With two or more runs, the line through the two largest batches (peak grows linearly in the batch);
        with one, its growth after the model was built scaled by the batch (an overestimate: the optimizer's
        state and the workspaces are scaled too); None without any.
    """
    runs = sorted((run for run in previous if run["batch_size"] < batch_size), key=lambda run: run["batch_size"])
    if not runs:
        return None
    last = runs[-1]
    if len(runs) == 1:
        estimate = last["after_build"] + (last["peak"] - last["after_build"]) * batch_size / last["batch_size"]
    else:
        first = runs[-2]
        slope = (last["peak"] - first["peak"]) / (last["batch_size"] - first["batch_size"])
        estimate = last["peak"] + max(slope, 0.0) * (batch_size - last["batch_size"])
    return estimate if cap is None else min(estimate, last["after_build"] + cap)


def run_guarded(command, margin, poll_seconds=0.25, environment=None):
    """Run command; stop it if the machine's available memory falls below margin / 2 while it runs.

    Args:
        command: argv list.
        margin: bytes the machine keeps for other processes.
        poll_seconds: how often available memory is read.
        environment: the child's environment (this process's when None).

    Returns:
        (return code, stdout, stderr, stop reason or None).
    """
    with tempfile.TemporaryFile("w+") as stdout, tempfile.TemporaryFile("w+") as stderr:  # no pipe to fill
        child = subprocess.Popen(command, stdout=stdout, stderr=stderr, text=True, env=environment)
        reason = None
        lowest = psutil.virtual_memory().available
        while child.poll() is None:
            available = psutil.virtual_memory().available
            lowest = min(lowest, available)
            if available < margin / 2:
                try:
                    rss = psutil.Process(child.pid).memory_info().rss
                except psutil.Error:
                    rss = 0
                child.kill()
                reason = (f"stopped: the machine's available memory fell to {available / GIB:.1f} GiB "
                          f"(the run's RSS {rss / GIB:.1f} GiB)")
                break
            time.sleep(poll_seconds)
        child.wait()
        stdout.seek(0)
        stderr.seek(0)
        return child.returncode, stdout.read(), stderr.read(), reason


def measure_memory(specifications, shape, batch_sizes, warmup, steps, threads, margin, script, extra=()):
    """Peak RSS of a training run per specification and batch, one guarded `--memory_probe` subprocess at a time.

    The batches run in increasing order (every variant at the smallest first), so each larger run has an estimate.

    Args:
        specifications: "keras:VARIANT" / "torch:VARIANT" strings.
        shape: a bench.SHAPES name.
        batch_sizes: batches to measure.
        warmup: untimed steps of each run.
        steps: timed steps of each run below batch 64; one from 64 up (a step there takes a minute or more).
        threads: --threads of the child.
        margin: bytes left for other processes (see the module docstring).
        script: the path of bench.py.
        extra: more arguments for the child.

    Returns:
        A list of result dicts: framework, variant, shape, batch_size, after_imports, after_build, peak (bytes),
        median_step (seconds), settings, error (None, or why it failed or was not run).
    """
    results = []
    for batch_size in sorted(set(batch_sizes)):
        for specification in specifications:
            framework, variant = specification.split(":", 1)  # variant with its @GIB cap, if any
            result = {"framework": framework, "variant": variant, "shape": shape, "batch_size": batch_size,
                      "error": None}
            results.append(result)
            previous = [run for run in results if run["framework"] == framework and run["variant"] == variant
                        and run["error"] is None and "peak" in run]
            cap = parse_specification(specification)[2]
            estimate = estimate_peak(previous, batch_size, None if cap is None else cap * GIB)
            available = psutil.virtual_memory().available
            if estimate is not None and estimate + margin > available:
                result["error"] = (f"not run: needs about {estimate / GIB:.1f} GiB by extrapolation, "
                                   f"{available / GIB:.1f} GiB available, {margin / GIB:.0f} GiB kept for others")
                print(f"[{shape}] memory {specification} batch {batch_size}: {result['error']}", file=sys.stderr,
                      flush=True)
                continue
            command = [sys.executable, os.path.abspath(script), "--memory_probe", specification, "--shapes", shape,
                       "--batch_size", str(batch_size), "--warmup", str(warmup),
                       "--steps", str(steps if batch_size < 64 else 1), "--threads", str(threads), *extra]
            returncode, stdout, stderr, stopped = run_guarded(command, margin)
            lines = [line for line in stdout.splitlines() if line.startswith(PROBE_PREFIX)]
            if stopped or returncode != 0 or not lines:
                last = (stderr.strip().splitlines() or ["no output"])[-1]
                result["error"] = stopped or f"exit code {returncode}: {last[:160]}"
                print(f"[{shape}] memory {specification} batch {batch_size}: FAILED {result['error']}",
                      file=sys.stderr, flush=True)
                continue
            result.update(json.loads(lines[-1][len(PROBE_PREFIX):]))
            print(f"[{shape}] memory {specification} batch {batch_size}: peak RSS {result['peak'] / GIB:.2f} GiB, "
                  f"step {result['median_step']:.2f} s (load {' / '.join(f'{v:.2f}' for v in os.getloadavg())})",
                  file=sys.stderr, flush=True)
    return results
