"""Where the train step's time goes, kernel by kernel: the oneDNN primitives of our step and of the PyTorch
reference, read from oneDNN's own log.

Both frameworks run their convolutions on oneDNN; TensorFlow runs its batch norm and pooling there too, PyTorch runs
those (and ReLU, Adam, the loss) in its own kernels. bench.py runs each step in a fresh process (benchmarks/steps.py,
`--time_probe`) with ONEDNN_VERBOSE=profile_exec, which makes oneDNN write a line for every primitive it executes,
with the primitive's kind, implementation, propagation, shape and milliseconds, and ONEDNN_VERBOSE_TIMESTAMP=1, which
stamps each line so that only the timed steps are counted (not the warm-up). TensorFlow runs one op at a time
(TF_NUM_INTEROP_THREADS=1; every op still uses all cores): with ops side by side the milliseconds of the primitives
overlap and add up to more than the step. The table says, per primitive kind and per shape, how many milliseconds a
step spends, ours against PyTorch's, what oneDNN ran (its instruction set and implementations) and how much of the
step is outside oneDNN.

This is how the float32 step on a CPU without AVX-512 is taken apart (issue 21): on such a CPU TensorFlow's
convolutions run in NHWC and PyTorch's in oneDNN's blocked layout (nChw8c), with different kernels.

Usage:
    python bench.py --only kernels --shapes paper --batch_size 8
    ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 python bench.py --only kernels --shapes paper --batch_size 8 \
        --output /tmp/avx2.md          # oneDNN and MKL held to AVX2 code: a stand-in for an AVX2-only CPU
"""

import collections
import datetime
import os
import re

from benchmarks.machine_load import load_average
from benchmarks.steps import measure_isolated
from safeguards.cpu_features import cpu_model

HEADING = "## Where the train step's time goes"  # bench.py --only kernels replaces the section that starts with it
VERBOSE_ENVIRONMENT = {"ONEDNN_VERBOSE": "profile_exec", "ONEDNN_VERBOSE_TIMESTAMP": "1",
                       "TF_NUM_INTEROP_THREADS": "1"}
VARIANTS = (("keras", "fp32"), ("torch", "nchw"))  # the float32 steps compared
PREFIX = "onednn_verbose,"
TOP_SHAPES = 12
SOURCE_LAYOUT = re.compile(r"\bsrc:\w+:\w*:blocked:(\w+):")  # the source's layout in oneDNN's memory descriptors


def parse_verbose(text, since_ms, steps):
    """The primitives oneDNN executed from since_ms on, in milliseconds per step.

    Args:
        text: a process's stdout with oneDNN's verbose lines (ONEDNN_VERBOSE=profile_exec and
            ONEDNN_VERBOSE_TIMESTAMP=1), e.g. "onednn_verbose,v1,1796413977710.6,primitive,exec,cpu,convolution,
            brg_conv_fwd:avx2,forward_training,<memory formats>,<attributes>,<algorithm>,<shape>,0.0139".
        since_ms: the epoch time in milliseconds the timed steps began; earlier lines are not counted.
        steps: the timed steps the counted lines cover (the sums are divided by it).

    Returns:
        {"isa": what oneDNN said it runs (e.g. "Intel AVX2") or None, "total": ms per step of every primitive,
         "kinds": {(kind, propagation): {"calls", "ms"}}, "shapes": {(kind, propagation, shape): {"calls", "ms",
         "implementations"}}} with calls and ms per step; propagation is "" where oneDNN says "undef" (reorders);
         implementations is a set of "implementation (source layout)", e.g. "jit:avx2 (acdb)": acdb is NHWC, abcd
         NCHW, aBcd8b oneDNN's blocked nChw8c.
    """
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    isa = None
    kinds = collections.defaultdict(lambda: {"calls": 0.0, "ms": 0.0})
    shapes = collections.defaultdict(lambda: {"calls": 0.0, "ms": 0.0, "implementations": set()})
    for line in text.splitlines():
        if not line.startswith(PREFIX):
            continue
        if isa is None and ",info," in line and ",isa:" in line:  # the ISA's name may hold commas
            isa = line.split(",isa:", 1)[1].strip()
            continue
        fields = line.strip().split(",")
        if len(fields) < 14 or fields[3:5] != ["primitive", "exec"]:
            continue
        try:
            stamp, milliseconds = float(fields[2]), float(fields[-1])
        except ValueError:
            continue
        if stamp < since_ms:
            continue
        kind, implementation, propagation, shape = fields[6], fields[7], fields[8], fields[-2]
        propagation = "" if propagation == "undef" else propagation
        for entry in (kinds[(kind, propagation)], shapes[(kind, propagation, shape)]):
            entry["calls"] += 1 / steps
            entry["ms"] += milliseconds / steps
        layout = SOURCE_LAYOUT.search(fields[9])
        shapes[(kind, propagation, shape)]["implementations"].add(
            implementation + (f" ({layout.group(1)})" if layout else ""))
    return {"isa": isa, "total": sum(entry["ms"] for entry in kinds.values()), "kinds": dict(kinds),
            "shapes": dict(shapes)}


def measure(shape, batch_size, warmup, steps, script, extra=(), margin=0):
    """Our float32 train step and PyTorch's, each in a fresh process with oneDNN's verbose log on.

    Args:
        shape: a benchmarks.steps.SHAPES name.
        batch_size: pairs per step.
        warmup: untimed steps.
        steps: timed steps (their primitives are counted).
        script: the path of bench.py.
        extra: more arguments for the children (thread counts).
        margin: bytes of the machine's memory kept for others (bench_memory.run_guarded).

    Returns:
        {"date", "cpu" (its model name), "load_start", "load_end" (load averages as text), "frameworks":
        {framework: {"variant", "median" (seconds per step) or None, "error", "breakdown": parse_verbose's dict or
        None}} for "keras" and "torch"}.
    """
    environment = {**os.environ, **VERBOSE_ENVIRONMENT}
    context = {"date": datetime.datetime.now().astimezone().isoformat(timespec="minutes"), "cpu": cpu_model(),
               "load_start": load_average()}
    results = {}
    for framework, variant in VARIANTS:
        row = measure_isolated("train", framework, shape, variant, batch_size, warmup, steps, script, extra, margin,
                               environment=environment)
        breakdown = None
        if row["error"] is None:
            breakdown = parse_verbose(row.pop("stdout", ""), row["timed_start"] * 1000, steps)
        results[framework] = {"variant": variant, "median": row["median"], "error": row["error"],
                              "breakdown": breakdown}
    return {**context, "load_end": load_average(), "frameworks": results}


def _milliseconds(value):
    return f"{value:.0f}" if value >= 10 else f"{value:.1f}"


def _kind_text(key):
    kind, propagation = key[0], key[1]
    return f"{kind} {propagation}".strip()


def format_section(measured, shape, batch_size, cpu_class, command):
    """The BENCHMARKS.md section of a measure() result.

    Args:
        measured: measure()'s dict.
        shape: the shape name it was measured at.
        batch_size: its batch size.
        cpu_class: safeguards.cpu_features.cpu_class of the machine.
        command: the command line that measured it.

    Returns:
        Markdown text: a heading, one table per primitive kind and one of the shapes that differ most.
    """
    lines = [f"{HEADING} (oneDNN kernels, {shape} shapes, batch {batch_size}, CPU class: {cpu_class})", "",
             "Milliseconds per float32 train step in each oneDNN primitive, ours (Keras) and the PyTorch reference's, "
             "from oneDNN's verbose log (benchmarks/kernel_breakdown.py). PyTorch runs batch norm, ReLU, pooling and "
             "Adam in its own kernels, which the log does not see: they are in its \"outside oneDNN\" row. "
             f"Measured on {measured['date']}, CPU {measured['cpu']}, load average {measured['load_start']} at start, "
             f"{measured['load_end']} at end; TensorFlow one op at a time (TF_NUM_INTEROP_THREADS=1).", ""]
    results = measured["frameworks"]
    for framework, result in results.items():
        if result["error"]:
            lines.append(f"- {framework} {result['variant']}: FAILED {result['error']}")
    if any(result["error"] for result in results.values()):
        return "\n".join(lines + ["", f"Command: `{command}`", ""])
    ours, reference = results["keras"], results["torch"]
    if not any(kind == "convolution" for kind, _ in ours["breakdown"]["kinds"]):
        lines += ["ours: no convolution ran on oneDNN. TensorFlow runs its own kernels where oneDNN is off "
                  "(TF_ENABLE_ONEDNN_OPTS=0, or a CPU without AVX2 and FMA); they are in the \"outside oneDNN\" row.",
                  ""]
    lines += [f"oneDNN's instruction set: {ours['breakdown']['isa'] or 'not said'} (ours), "
              f"{reference['breakdown']['isa'] or 'not said'} (PyTorch).", "",
              "| primitive | ours: calls | ours: ms | PyTorch: calls | PyTorch: ms | ours - PyTorch (ms) |",
              "| --- | ---: | ---: | ---: | ---: | ---: |"]
    keys = sorted(set(ours["breakdown"]["kinds"]) | set(reference["breakdown"]["kinds"]),
                  key=lambda key: -max(ours["breakdown"]["kinds"].get(key, {"ms": 0})["ms"],
                                       reference["breakdown"]["kinds"].get(key, {"ms": 0})["ms"]))
    for key in keys:
        a = ours["breakdown"]["kinds"].get(key, {"calls": 0, "ms": 0})
        b = reference["breakdown"]["kinds"].get(key, {"calls": 0, "ms": 0})
        lines.append(f"| {_kind_text(key)} | {a['calls']:.0f} | {_milliseconds(a['ms'])} | {b['calls']:.0f} | "
                     f"{_milliseconds(b['ms'])} | {a['ms'] - b['ms']:+.0f} |")
    ours_step, reference_step = ours["median"] * 1000, reference["median"] * 1000
    ours_total, reference_total = ours["breakdown"]["total"], reference["breakdown"]["total"]
    lines += [f"| all oneDNN primitives | | {ours_total:.0f} | | {reference_total:.0f} | "
              f"{ours_total - reference_total:+.0f} |",
              f"| outside oneDNN (the step less the above) | | {ours_step - ours_total:.0f} | | "
              f"{reference_step - reference_total:.0f} | {(ours_step - ours_total) - (reference_step - reference_total):+.0f} |",
              f"| the step (median) | | {ours_step:.0f} | | {reference_step:.0f} | {ours_step - reference_step:+.0f} |",
              "", f"The {TOP_SHAPES} shapes whose milliseconds differ most (oneDNN's shape string: mb batch, ic/oc "
              "channels in/out, ih/oh height in/out, kh kernel, sh stride, ph padding, the same for the width; a "
              "convolution we pad outside the op shows its padded input and ph0, so it has a row of its own; a kernel's source "
              "layout in brackets: acdb is NHWC, abcd NCHW, aBcd8b and aBcd16b oneDNN's blocked nChw8c and nChw16c):",
              "",
              "| primitive | shape | ours: ms | PyTorch: ms | ours - PyTorch | ours: kernel | PyTorch: kernel |",
              "| --- | --- | ---: | ---: | ---: | --- | --- |"]
    empty = {"calls": 0, "ms": 0.0, "implementations": set()}
    shapes = set(ours["breakdown"]["shapes"]) | set(reference["breakdown"]["shapes"])
    differences = sorted(shapes, key=lambda key: -abs(ours["breakdown"]["shapes"].get(key, empty)["ms"]
                                                      - reference["breakdown"]["shapes"].get(key, empty)["ms"]))
    for key in differences[:TOP_SHAPES]:
        a = ours["breakdown"]["shapes"].get(key, empty)
        b = reference["breakdown"]["shapes"].get(key, empty)
        lines.append(f"| {_kind_text(key)} | `{key[2]}` | {_milliseconds(a['ms'])} | {_milliseconds(b['ms'])} | "
                     f"{a['ms'] - b['ms']:+.0f} | {' '.join(sorted(a['implementations'])) or '-'} | "
                     f"{' '.join(sorted(b['implementations'])) or '-'} |")
    return "\n".join(lines + ["", f"Command: `{command}`", ""])
