"""Measure how fast LVS trains and predicts on this machine, next to the same network in PyTorch; write docs/BENCHMARKS.md.

One command measures, at the paper's shapes (224 x 224 frames, 10 s of 16 kHz audio: 257 x 671 spectrograms) and
at the demo's (112 x 112 frames, 0.5 s of 8 kHz audio: 257 x 15):

- training throughput of our train step (model.train_on_batch: forward, LVS loss, backward, Adam) for several
  variants (float32 or mixed_bfloat16 policy, XLA jit_compile on or off), and of the same two-tower ResNet-18 and
  loss in PyTorch (benchmarks/torch_reference.py: NCHW or channels_last memory format, float32 or bfloat16 autocast);
  samples/s is the batch size over the median of the timed steps; the first step (tracing, XLA compilation,
  allocations) is reported apart;
- inference throughput of predict.py's forward (model(inputs) -> similarity, positive mask), ours and PyTorch's;
- the training input pipeline (preprocessing.make_dataset) on files shaped as vggss_dl.py writes them (512 x 512
  JPEGs, 10 s 16 kHz wavs) or on --data_dir, on one core and on all, next to the official preprocessing in a torch
  DataLoader (benchmarks/pipeline_speed.py; --json writes its figures);
- peak memory (RSS) of training runs at batch 16, 64 and 256, without and with rematerialisation (train.py
  --remat; PyTorch with torch.utils.checkpoint on the same blocks), each in its own guarded subprocess
  (benchmarks/memory.py) so the peak is that run's own and none pushes the machine into OOM;
- achieved GFLOP/s of every train step, from an analytic count of its convolutions, against this CPU's matmul
  GFLOP/s;
- where the float32 train step's time goes, oneDNN primitive by primitive, ours against PyTorch's, from oneDNN's
  verbose log (benchmarks/kernel_breakdown.py), at the first of --shapes.

The steps it times are built in benchmarks/steps.py and each row is timed in a fresh process of its own (as train.py
runs one model per process), the tables rendered by benchmarks/tables.py. Timings go to stdout as
markdown tables and to --output (docs/BENCHMARKS.md) with the machine, library versions, the date, the load average and
the exact command. Run it on a quiet machine: other work on the cores makes every number noisy. Every table names
the CPU class it was measured on (safeguards/cpu_features.py); on a CPU without native bfloat16 the bfloat16
variants are left out unless named in --keras_variants / --torch_variants (emulated, they say nothing of use).

Usage:
    python bench.py                                   # everything, both shapes (slow: about an hour on 2 cores)
    python bench.py --shapes demo                     # the demo's shapes only (a few minutes)
    python bench.py --only memory                     # the memory tables alone (paper shapes, 16/64/256)
    python bench.py --only checkpoint                 # what a checkpoint costs, and --checkpoint_every's overhead
    python bench.py --only kernels --shapes paper --batch_size 8   # the step's time per oneDNN kernel, ours and PyTorch's
    python bench.py --only pipeline --json /tmp/pipeline.json   # the input pipeline alone, its section replaced
    python bench.py --only pipeline --data_dir data/vggsound144k  # ... on your own files
    python bench.py --only memory --memory_batches 16,64   # without the batch-256 runs (~20 GiB each)
    python bench.py --quick --output /tmp/BENCHMARKS.md   # smoke run, tiny step counts, numbers meaningless
    python bench.py --shapes paper --keras_variants fp32,bf16 --torch_variants nchw --skip_memory
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import shlex  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import psutil  # noqa: E402

# PyTorch (and torch_reference, which imports torchvision) before TensorFlow: the other order segfaults in
# torchvision's import.
import torch  # noqa: E402
import torchvision  # noqa: E402

import safeguards.quiet_tensorflow  # noqa: E402,F401  (after torch, before keras: TensorFlow's start-up lines off the terminal)
import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from pipeline import preprocessing  # noqa: E402
import resnet18  # noqa: E402
from safeguards import cpu_features  # noqa: E402
from safeguards.atomic import write_text  # noqa: E402
from benchmarks import memory as bench_memory  # noqa: E402
from benchmarks import host_memory  # noqa: E402
from benchmarks.machine_load import cpu_seconds, load_average, others_share  # noqa: E402
from benchmarks import checkpoint_cost, kernel_breakdown, pipeline_speed  # noqa: E402
from benchmarks import video_speed as bench_video  # noqa: E402
from benchmarks.tables import KERAS_EAGER, render_report, replace_section  # noqa: E402
from benchmarks.steps import (KERAS_VARIANTS, SHAPES, TIME_PROBE_PREFIX, TORCH_VARIANTS, keras_train_step,  # noqa: E402
                         measure, measure_isolated, model_settings, time_steps, torch_train_step)

DEFAULT_WARMUP = 2
DEFAULT_PIPELINE_BATCHES = 20
DEFAULT_MATMUL_SIZE = 2048
MEMORY_BATCHES = "16,64,256"
MEMORY_VARIANTS = ("keras:fp32,keras:fp32_no_remat,keras:fp32_remat,torch:nchw,"
                   "torch:nchw_checkpoint")
MEMORY_MARGIN_GIB = 4
SECTIONS = ("matmul", "train", "inference", "pipeline", "memory", "video", "checkpoint", "kernels")
QUICK = {"steps": 2, "warmup": 1, "pipeline_batches": 2, "matmul_size": 512, "pipeline_pairs": 8,
         "pipeline_warmup": 1, "pipeline_rounds": 1}


# ----------------------------------------------------------------------------------------------------------------
# FLOP counting


def layer_flops(network):
    """Forward FLOPs (2 x multiply-adds) of every Conv2D and Dense layer of a functional Keras model, per sample.

    Biases, BatchNorm, ReLU, pooling and additions are not counted (under 1 % of a ResNet-18's work).

    Args:
        network: a functional keras.Model built with a fixed input shape (every layer's output shape known).

    Returns:
        A list of (layer name, FLOPs) in layer order.
    """
    counts = []
    for layer in network.layers:
        if isinstance(layer, keras.layers.Conv2D):
            _, height, width, output_channels = layer.output.shape
            if height is None or width is None:
                raise ValueError(f"{network.name}: build it with a fixed input shape to count FLOPs")
            input_channels = layer.input.shape[-1]
            kernel_height, kernel_width = layer.kernel_size
            per_output = kernel_height * kernel_width * input_channels // layer.groups  # multiply-adds per output
            counts.append((layer.name, 2 * height * width * output_channels * per_output))
        elif isinstance(layer, keras.layers.Dense):
            counts.append((layer.name, 2 * layer.input.shape[-1] * layer.units))
    return counts


def tower_flops(input_channels, layer4_stride, height, width):
    """layer_flops of one ResNet-18 trunk (resnet18.build_resnet18) fed height x width x input_channels inputs."""
    network = resnet18.build_resnet18(input_channels=input_channels, layer4_stride=layer4_stride,
                                      input_shape=(height, width), name="flop_count")
    return layer_flops(network)


def train_step_flops(image_size, sample_rate, audio_seconds, layer4_stride=1):
    """Analytic FLOPs of one LVS sample: the convolutions of both towers, forward and forward + backward.

    The backward pass of a convolution is two convolutions of the forward's cost (the gradient with respect to its
    input and to its kernel), so a train step costs 3 x the forward, less the input gradient of each tower's first
    convolution (nothing needs the gradient of the frame or the spectrogram). The loss (a few B x B x h x w
    einsums) and Adam are left out: both are far below 1 % at these shapes.

    Args:
        image_size: side of the frames.
        sample_rate: audio rate (Hz).
        audio_seconds: audio length; with sample_rate it gives the spectrogram width.
        layer4_stride: the vision tower's layer4 stride (the audio tower's is always 1).

    Returns:
        {"forward": FLOPs per sample of the forward pass, "train": FLOPs per sample of a train step}.
    """
    width = preprocessing.spectrogram_width(sample_rate, audio_seconds)
    vision = tower_flops(3, layer4_stride, image_size, image_size)
    audio = tower_flops(1, 1, preprocessing.SPECTROGRAM_SEGMENT // 2 + 1, width)
    forward = sum(flops for _, flops in vision) + sum(flops for _, flops in audio)
    return {"forward": forward, "train": 3 * forward - vision[0][1] - audio[0][1]}


# ----------------------------------------------------------------------------------------------------------------
# The machine


def onednn_text():
    """Whether TensorFlow runs on oneDNN in this process, and who decided."""
    from tensorflow.python.util import _pywrap_util_port

    state = "on" if _pywrap_util_port.IsMklEnabled() else "off"
    value = os.environ.get(cpu_features.ONEDNN_VARIABLE)
    if safeguards.quiet_tensorflow.ONEDNN_TURNED_ON:
        return f"{state} ({cpu_features.ONEDNN_VARIABLE}=1 set by safeguards/quiet_tensorflow.py: TensorFlow would " \
               "leave it off on this CPU, where its own kernels are slower)"
    if value:
        return f"{state} ({cpu_features.ONEDNN_VARIABLE}={value})"
    return f"{state} (TensorFlow's default on this CPU)"


def machine_description():
    """The machine and the libraries, as a dict of label -> text."""
    memory = psutil.virtual_memory()
    flags = cpu_features.cpu_flags()
    return {
        "CPU": cpu_features.cpu_model(),
        "cores": f"{len(os.sched_getaffinity(0))} usable ({psutil.cpu_count(logical=False)} physical, "
                 f"{psutil.cpu_count()} logical)",
        "CPU flags of note": " ".join(flag for flag in cpu_features.FLAGS_OF_NOTE if flag in flags) or "none found",
        "CPU class": cpu_features.cpu_class(flags),
        "oneDNN (TensorFlow)": onednn_text(),
        "RAM": f"{memory.total / 2**30:.1f} GiB ({memory.available / 2**30:.1f} GiB available at start)",
        "OS": platform.platform(),
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": np.__version__,
    }


# ----------------------------------------------------------------------------------------------------------------
# Inputs and steps


# ----------------------------------------------------------------------------------------------------------------
# Matmul peak, input pipeline, memory


def matmul_gflops(size, repeats):
    """Achieved GFLOP/s of size x size matrix products (2 size^3 FLOPs each): TF and PyTorch, float32 and bfloat16.

    Returns:
        {"tf float32": GFLOP/s, "tf bfloat16": ..., "torch float32": ..., "torch bfloat16": ...}, median of repeats.
    """
    rng = np.random.default_rng(0)
    left = rng.normal(size=(size, size)).astype(np.float32)
    right = rng.normal(size=(size, size)).astype(np.float32)
    flops = 2.0 * size**3
    results = {}
    for dtype_name, tf_dtype, torch_dtype in (("float32", tf.float32, torch.float32),
                                              ("bfloat16", tf.bfloat16, torch.bfloat16)):
        tf_left, tf_right = tf.cast(tf.constant(left), tf_dtype), tf.cast(tf.constant(right), tf_dtype)
        timing = time_steps(lambda: tf.matmul(tf_left, tf_right)[0, 0].numpy(), 2, repeats)
        results[f"tf {dtype_name}"] = flops / timing["median"] / 1e9
        torch_left, torch_right = torch.from_numpy(left).to(torch_dtype), torch.from_numpy(right).to(torch_dtype)
        timing = time_steps(lambda: torch.mm(torch_left, torch_right)[0, 0].item(), 2, repeats)
        results[f"torch {dtype_name}"] = flops / timing["median"] / 1e9
    return results


def analytic_memory(shape, batch_sizes):
    """Sizes (bytes) of what a float32 train step holds besides the towers' blocks, counted from the shapes.

    Args:
        shape: a SHAPES name.
        batch_sizes: the batches of the memory runs.

    Returns:
        A list of (item, {batch: bytes}).
    """
    settings = model_settings(shape)
    width = preprocessing.spectrogram_width(settings["sample_rate"], settings["audio_seconds"])
    size = settings["image_size"]

    def stem_maps(height, width):  # conv1 (stride 2, pad 3, 7x7) and maxpool (stride 2, pad 1, 3x3) output sides
        height, width = (height - 1) // 2 + 1, (width - 1) // 2 + 1
        return height * width * 64, ((height - 1) // 2 + 1) * ((width - 1) // 2 + 1) * 64

    stem = 0
    for height, tower_width in ((size, size), (257, width)):
        conv_outputs, pooled = stem_maps(height, tower_width)
        stem += 4 * (2 * conv_outputs + pooled)  # kept for the backward: bn1's input, relu's output, maxpool's output
    side = size // 16  # the vision map at layer4 stride 1
    items = [
        ("the stems' kept activations (conv1 output, ReLU output, max-pool output of both towers), float32",
         {batch: stem * batch for batch in batch_sizes}),
        ("one input batch (frames + spectrograms), float32", {batch: 4 * batch * (size * size * 3 + 257 * width)
                                                              for batch in batch_sizes}),
        (f"one k x k x h x w similarity volume of the loss (h = w = {side}), float32",
         {batch: 4 * batch * batch * side * side for batch in batch_sizes}),
    ]
    return items


def memory_probe(specification, shape, batch_size, warmup, steps):
    """Run in a subprocess: one training run, then print its RSS figures and step time as a JSON line (PROBE_PREFIX).

    Args:
        specification: "keras:VARIANT" or "torch:VARIANT".
        shape: a SHAPES name.
        batch_size: pairs per step.
        warmup, steps: steps to run (all of them count for the peak; the median of the timed ones is reported).
    """
    framework, variant, cap = bench_memory.parse_specification(specification)
    if cap is not None:
        host_memory.limit(cap)  # TF_MKL_ALLOC_MAX_BYTES, before the first TensorFlow operation
    process = psutil.Process()
    after_imports = process.memory_info().rss
    peak_source = bench_memory.reset_peak_rss()
    builder = keras_train_step if framework == "keras" else torch_train_step
    step, settings = builder(shape, batch_size, variant)
    after_build = process.memory_info().rss
    timing = time_steps(step, warmup, steps)
    print(bench_memory.PROBE_PREFIX + json.dumps({
        "after_imports": after_imports, "after_build": after_build, "peak": bench_memory.peak_rss(peak_source),
        "peak_source": peak_source, "median_step": timing["median"], "settings": settings}), flush=True)


# ----------------------------------------------------------------------------------------------------------------
# Command line


def comma_list(text, known, flag):
    """Split a comma-separated flag value and check every item is known; raises ValueError otherwise."""
    items = [item.strip() for item in text.split(",") if item.strip()]
    unknown = [item for item in items if item not in known]
    if unknown:
        raise ValueError(f"--{flag}: unknown {', '.join(unknown)} (choose from {', '.join(known)})")
    return list(dict.fromkeys(items))


def parse_arguments(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", default="paper,demo",
                        help="comma-separated shapes to measure: paper (224 frames, 10 s at 16 kHz: 257x671), demo "
                             "(112 frames, 0.5 s at 8 kHz: 257x15) (default: paper,demo)")
    parser.add_argument("--batch_size", type=int, default=None,
                        help="pairs per step for every shape (default: 16 at paper shapes, 32 at demo shapes)")
    parser.add_argument("--steps", type=int, default=None,
                        help="timed steps per measurement (default: 5 at paper shapes, 20 at demo shapes; "
                             "2 with --quick)")
    parser.add_argument("--warmup", type=int, default=None,
                        help=f"untimed steps before them, the first of which is reported apart as the compile step "
                             f"(default: {DEFAULT_WARMUP}; 1 with --quick)")
    parser.add_argument("--keras_variants", default=None,
                        help=f"our train-step variants to time, comma-separated, from {', '.join(KERAS_VARIANTS)} "
                             f"(default: all; the bf16 ones only on a CPU with native bfloat16)")
    parser.add_argument("--torch_variants", default=None,
                        help=f"PyTorch variants to time, comma-separated, from {', '.join(TORCH_VARIANTS)} "
                             f"(default: all; the bf16 ones only on a CPU with native bfloat16)")
    parser.add_argument("--skip_torch", action="store_true", help="do not time the PyTorch reference")
    parser.add_argument("--skip_inference", action="store_true", help="do not time the inference forward")
    parser.add_argument("--skip_pipeline", action="store_true", help="do not time the input pipeline")
    parser.add_argument("--skip_memory", action="store_true", help="do not measure the peak memory of a training run")
    parser.add_argument("--skip_matmul", action="store_true", help="do not measure the matmul GFLOP/s peak")
    parser.add_argument("--skip_checkpoint", action="store_true",
                        help="do not time train.py's checkpoint at the paper's shapes (and --checkpoint_every's overhead)")
    parser.add_argument("--skip_video", action="store_true",
                        help="do not time predict.py --video on a 10 s clip (benchmarks/video_speed.py) at each --shapes")
    parser.add_argument("--skip_kernels", action="store_true",
                        help="do not take the float32 train step apart into oneDNN primitives, ours against PyTorch's "
                             "(benchmarks/kernel_breakdown.py), at the first of --shapes")
    parser.add_argument("--only", default=None,
                        help=f"comma-separated sections to run, the others skipped, from {', '.join(SECTIONS)} "
                             f"(e.g. --only memory reruns the memory tables alone; default: all)")
    parser.add_argument("--pipeline_batches", type=int, default=None,
                        help=f"batches timed through the input pipeline (default: {DEFAULT_PIPELINE_BATCHES}; 2 with "
                             f"--quick)")
    parser.add_argument("--data_dir", default=None,
                        help=f"time the input pipeline on this folder of frame/audio pairs (its first "
                             f"{pipeline_speed.MAX_PAIRS} by name) instead of generated files shaped as vggss_dl.py "
                             f"writes them (default: generated)")
    parser.add_argument("--json", default=None,
                        help='write the input pipeline\'s figures (samples/s) to this json file: {"per_core": {"ours", '
                             '"reference"}, "all_cores": {"ours", "reference", "cores"}}')
    parser.add_argument("--memory_shape", default=None,
                        help="shape of the peak-memory runs (default: paper if measured, else the first of --shapes)")
    parser.add_argument("--memory_batches", default=None,
                        help=f"comma-separated batches of the peak-memory runs, each variant at each (default: "
                             f"{MEMORY_BATCHES}, or --batch_size when given)")
    parser.add_argument("--memory_variants", default=MEMORY_VARIANTS,
                        help=f"comma-separated keras:VARIANT / torch:VARIANT of the peak-memory runs; "
                             f"keras:VARIANT@GIB caps TensorFlow's CPU allocator at GIB GiB (benchmarks/host_memory.py), e.g. "
                             f"keras:fp32_remat@16 (default: {MEMORY_VARIANTS})")
    parser.add_argument("--memory_margin", type=float, default=MEMORY_MARGIN_GIB,
                        help=f"GiB left to other processes: a memory run starts only if its peak, extrapolated from "
                             f"the smaller batches, fits in the available memory less this, and is stopped when the "
                             f"available memory falls below half of it (default: {MEMORY_MARGIN_GIB})")
    parser.add_argument("--matmul_size", type=int, default=None,
                        help=f"side of the square matrices of the matmul peak (default: {DEFAULT_MATMUL_SIZE}; 512 "
                             f"with --quick)")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)),
                        help="torch.set_num_threads and set_num_interop_threads (default: the usable cores, "
                             f"{len(os.sched_getaffinity(0))} here)")
    parser.add_argument("--tf_threads", type=int, default=0,
                        help="TensorFlow intra-op and inter-op threads; 0 keeps TensorFlow's defaults, one per core "
                             "(default: 0)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run with tiny step counts (steps 2, warm-up 1, 2 pipeline batches of 8 generated "
                             "pairs in one round, 512 matmul): checks that everything runs, the numbers mean nothing")
    parser.add_argument("--output", default="docs/BENCHMARKS.md",
                        help="markdown report to write, atomically (default: docs/BENCHMARKS.md)")
    parser.add_argument("--memory_probe", default=None, metavar="FRAMEWORK:VARIANT",
                        help="internal: run one training run of keras:VARIANT or torch:VARIANT at the first of "
                             "--shapes and print its RSS as JSON (bench.py starts itself this way)")
    parser.add_argument("--time_probe", default=None, metavar="KIND:FRAMEWORK:VARIANT",
                        help="internal: time one row (train or inference, keras or torch, a variant) at the first of "
                             "--shapes and print it as JSON (bench.py times every row this way, each in a fresh "
                             "process)")
    arguments = parser.parse_args(argv)
    # bfloat16 on a CPU that emulates it is many times slower than float32: left out unless asked for by name.
    problem = cpu_features.mixed_precision_problem(cpu_features.cpu_flags(), has_gpu=False)
    arguments.bfloat16_left_out = None  # or why the default variants leave out the bf16 ones
    try:
        arguments.shapes = comma_list(arguments.shapes, SHAPES, "shapes")
        for flag, known in (("keras_variants", KERAS_VARIANTS), ("torch_variants", TORCH_VARIANTS)):
            given = getattr(arguments, flag)
            if given is None and problem:
                setattr(arguments, flag, [variant for variant in known if "bf16" not in variant])
                arguments.bfloat16_left_out = problem
            else:
                setattr(arguments, flag, list(known) if given is None else comma_list(given, known, flag))
    except ValueError as error:
        parser.error(str(error))
    if not arguments.shapes:
        parser.error("--shapes: give at least one of " + ", ".join(SHAPES))
    for name in ("batch_size", "steps", "warmup", "pipeline_batches", "matmul_size", "threads"):
        value = getattr(arguments, name)
        if value is not None and value < 1:
            parser.error(f"--{name} must be a positive integer, got {value}")
    if arguments.tf_threads < 0:
        parser.error(f"--tf_threads must be 0 or more, got {arguments.tf_threads}")
    if arguments.memory_margin < 0:
        parser.error(f"--memory_margin must be 0 or more, got {arguments.memory_margin}")
    try:
        if arguments.only is not None:
            only = comma_list(arguments.only, SECTIONS, "only")
            if not only:
                raise ValueError(f"--only: give at least one of {', '.join(SECTIONS)}")
            for section in SECTIONS:
                if section not in only:
                    setattr(arguments, "skip_" + section, True)
            arguments.skip_train = "train" not in only
        else:
            arguments.skip_train = False
        batches = arguments.memory_batches or (str(arguments.batch_size) if arguments.batch_size else MEMORY_BATCHES)
        arguments.memory_batches = sorted({int(item) for item in batches.split(",") if item.strip()})
        if not arguments.memory_batches or min(arguments.memory_batches) < 1:
            raise ValueError(f"--memory_batches must be positive integers, got {batches}")
        arguments.memory_variants = [item.strip() for item in arguments.memory_variants.split(",") if item.strip()]
        for specification in arguments.memory_variants + ([arguments.memory_probe] if arguments.memory_probe else []):
            framework, variant, cap = bench_memory.parse_specification(specification)
            if variant not in {"keras": KERAS_VARIANTS, "torch": TORCH_VARIANTS}.get(framework, {}) or (
                    cap is not None and (framework != "keras" or not cap > 0)):
                raise ValueError(f"--memory_probe / --memory_variants must be keras:VARIANT, keras:VARIANT@GIB or "
                                 f"torch:VARIANT, got {specification}")
        if arguments.time_probe is not None:
            kind, framework, variant = (arguments.time_probe.split(":") + ["", ""])[:3]
            variants = {"keras": KERAS_VARIANTS if kind == "train" else [KERAS_EAGER, *KERAS_VARIANTS],
                        "torch": TORCH_VARIANTS}
            if kind not in ("train", "inference") or variant not in variants.get(framework, ()):
                raise ValueError(f"--time_probe must be train|inference:keras|torch:VARIANT, got "
                                 f"{arguments.time_probe}")
    except ValueError as error:
        parser.error(str(error).replace("invalid literal for int() with base 10", "--memory_batches: not a number"))
    if arguments.memory_shape is not None and arguments.memory_shape not in SHAPES:
        parser.error(f"--memory_shape: unknown {arguments.memory_shape} (choose from {', '.join(SHAPES)})")
    if not arguments.keras_variants and (arguments.skip_torch or not arguments.torch_variants):
        parser.error("nothing to time: give --keras_variants or --torch_variants")
    folder = os.path.dirname(os.path.abspath(arguments.output))
    existing = folder
    while not os.path.isdir(existing):
        existing = os.path.dirname(existing)
    if not os.access(existing, os.W_OK):
        parser.error(f"--output: cannot write into {existing}")
    # Resolve the defaults that depend on --quick.
    quick = QUICK if arguments.quick else {}
    arguments.warmup = arguments.warmup or quick.get("warmup", DEFAULT_WARMUP)
    arguments.pipeline_batches = arguments.pipeline_batches or quick.get("pipeline_batches", DEFAULT_PIPELINE_BATCHES)
    arguments.pipeline_pairs = quick.get("pipeline_pairs", pipeline_speed.GENERATED_PAIRS)
    arguments.pipeline_warmup = quick.get("pipeline_warmup", pipeline_speed.DEFAULT_WARMUP_BATCHES)
    arguments.pipeline_rounds = quick.get("pipeline_rounds", pipeline_speed.DEFAULT_ROUNDS)
    if arguments.data_dir is not None and not os.path.isdir(arguments.data_dir):
        parser.error(f"--data_dir: not a folder: {arguments.data_dir}")
    if arguments.json is not None and not os.path.isdir(os.path.dirname(os.path.abspath(arguments.json))):
        parser.error(f"--json: its folder does not exist: {arguments.json}")
    arguments.matmul_size = arguments.matmul_size or quick.get("matmul_size", DEFAULT_MATMUL_SIZE)
    if arguments.memory_shape is None:
        arguments.memory_shape = "paper" if "paper" in arguments.shapes else arguments.shapes[0]
    return arguments


def steps_for(arguments, shape):
    """Timed steps at a shape: --steps, else 2 with --quick, else the shape's default."""
    return arguments.steps or (QUICK["steps"] if arguments.quick else SHAPES[shape]["default_steps"])


def set_threads(arguments):
    """Thread counts of both frameworks, before either runs anything."""
    torch.set_num_threads(arguments.threads)
    torch.set_num_interop_threads(arguments.threads)
    if arguments.tf_threads:
        tf.config.threading.set_intra_op_parallelism_threads(arguments.tf_threads)
        tf.config.threading.set_inter_op_parallelism_threads(arguments.tf_threads)


def main(argv=None):
    arguments = parse_arguments(argv)
    set_threads(arguments)
    if arguments.memory_probe:
        shape = arguments.shapes[0]
        memory_probe(arguments.memory_probe, shape, arguments.batch_size or SHAPES[shape]["batch_size"],
                     arguments.warmup, steps_for(arguments, shape))
        return
    if arguments.time_probe:
        shape = arguments.shapes[0]
        kind, framework, variant = arguments.time_probe.split(":")
        result = measure(kind, framework, shape, variant, arguments.batch_size or SHAPES[shape]["batch_size"],
                         arguments.warmup, steps_for(arguments, shape), train_step_flops(**model_settings(shape)))
        print(TIME_PROBE_PREFIX + json.dumps(result), flush=True)
        return
    command = "python " + shlex.join([os.path.relpath(sys.argv[0]) if sys.argv[0] else "bench.py", *sys.argv[1:]])
    context = {
        "command": command,
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "load_start": load_average(),
        "first_load": os.getloadavg()[0],
        "threads": arguments.threads,
        "tf_threads": arguments.tf_threads,
        "matmul_size": f"{arguments.matmul_size}x{arguments.matmul_size}",
        "warmup": arguments.warmup,
        "steps": ", ".join(f"{shape} {steps_for(arguments, shape)}" for shape in arguments.shapes),
        "sections": [section for section in SECTIONS if not getattr(arguments, "skip_" + section)],
        "memory_margin": arguments.memory_margin,
    }
    print(f"load average at start: {context['load_start']} on {len(os.sched_getaffinity(0))} cores", file=sys.stderr)
    if arguments.bfloat16_left_out:
        print(f"note: the bf16 variants are left out: {arguments.bfloat16_left_out} (name them in --keras_variants / "
              "--torch_variants to time them anyway)", file=sys.stderr)
    cpu_start, run_start = cpu_seconds(), time.perf_counter()
    machine = machine_description()
    context["cpu_class"] = machine["CPU class"]
    context["bfloat16_left_out"] = arguments.bfloat16_left_out
    matmul = None if arguments.skip_matmul else matmul_gflops(arguments.matmul_size, 5 if arguments.quick else 10)
    memories = []
    if not arguments.skip_memory:
        # First, while this process holds little more than its imports: TensorFlow's CPU allocator never gives back
        # what the timed sections below take (10 GiB after them at paper shapes), which the memory runs need.
        shape = arguments.memory_shape
        specifications = [item for item in arguments.memory_variants
                          if not (arguments.skip_torch and item.startswith("torch:"))]
        context["memory_load_start"] = load_average()
        memories = bench_memory.measure_memory(specifications, shape, arguments.memory_batches, 1,
                                               min(steps_for(arguments, shape), 2), arguments.threads,
                                               arguments.memory_margin * bench_memory.GIB, __file__)
        context["memory_load_end"] = load_average()
        context["analytic_memory"] = analytic_memory(shape, arguments.memory_batches)
    torch_variants = [] if arguments.skip_torch else arguments.torch_variants
    thread_arguments = ["--threads", str(arguments.threads), "--tf_threads", str(arguments.tf_threads)]
    results, flops = [], {}
    for shape in arguments.shapes:
        settings = model_settings(shape)
        width = preprocessing.spectrogram_width(settings["sample_rate"], settings["audio_seconds"])
        flops[shape] = {**train_step_flops(**settings), "frame": f"{settings['image_size']}x{settings['image_size']}",
                        "spectrogram": f"257x{width}"}
        batch_size = arguments.batch_size or SHAPES[shape]["batch_size"]
        steps = steps_for(arguments, shape)
        plan = []
        if not arguments.skip_train:
            plan += [("train", "torch", variant) for variant in torch_variants]
            plan += [("train", "keras", variant) for variant in arguments.keras_variants]
        if not arguments.skip_inference:
            plan += [("inference", "torch", variant) for variant in torch_variants]
            plan += [("inference", "keras", variant) for variant in [KERAS_EAGER, *arguments.keras_variants]]
        for kind, framework, variant in plan:  # each row in a fresh process, as train.py / predict.py run
            results.append(measure_isolated(kind, framework, shape, variant, batch_size, arguments.warmup, steps,
                                            __file__, thread_arguments, arguments.memory_margin * bench_memory.GIB))
    pipeline = None  # the paper's settings on vggss_dl.py's files (or --data_dir): with the paper shape only
    if not arguments.skip_pipeline and "paper" in arguments.shapes:
        try:
            pipeline = pipeline_speed.measure(arguments.data_dir, arguments.batch_size or SHAPES["paper"]["batch_size"],
                                              arguments.pipeline_warmup, arguments.pipeline_batches,
                                              arguments.pipeline_pairs, arguments.pipeline_rounds)
        except ValueError as error:  # --data_dir without a batch of usable pairs, or no ffmpeg
            raise SystemExit(f"error: --data_dir: {error}" if arguments.data_dir else f"error: {error}")
        if arguments.json:
            write_text(arguments.json, json.dumps(pipeline_speed.json_figures(pipeline), indent=1) + "\n")
            print(f"wrote {arguments.json}", file=sys.stderr)
    checkpoint = None  # the paper's shapes only
    if not arguments.skip_checkpoint and "paper" in arguments.shapes:
        checkpoint = checkpoint_cost.run_isolated(batch_size=1 if arguments.quick else 8,
                                                  saves=1 if arguments.quick else 3)
    video_rows = [] if arguments.skip_video else bench_video.video_rows(tuple(arguments.shapes))
    kernels = None  # the first of --shapes only
    if not arguments.skip_kernels:
        shape = arguments.shapes[0]
        kernels = kernel_breakdown.measure(shape, arguments.batch_size or SHAPES[shape]["batch_size"],
                                           arguments.warmup, steps_for(arguments, shape), __file__,
                                           thread_arguments, arguments.memory_margin * bench_memory.GIB)
        kernels_section = kernel_breakdown.format_section(
            kernels, shape, arguments.batch_size or SHAPES[shape]["batch_size"], context["cpu_class"], command)
    context["load_end"] = load_average()
    context["others_share"] = others_share(cpu_start, cpu_seconds(), time.perf_counter() - run_start)
    if context["sections"] == ["pipeline"] and os.path.isfile(arguments.output) and pipeline is not None:
        # The pipeline alone: its section replaces the one in the report, every other section is kept as it was.
        section = pipeline_speed.format_section(pipeline, command)
        print(section)
        with open(arguments.output) as handle:
            write_text(arguments.output, replace_section(handle.read(), section, pipeline_speed.HEADING))
        print(f"wrote the input pipeline's section into {arguments.output}", file=sys.stderr)
        return
    if context["sections"] == ["checkpoint"] and os.path.isfile(arguments.output) and checkpoint is not None:
        section = checkpoint_cost.format_section(checkpoint, context["cpu_class"], command)
        print(section)
        with open(arguments.output) as handle:
            write_text(arguments.output, replace_section(handle.read(), section, checkpoint_cost.HEADING))
        print(f"wrote the checkpoint section into {arguments.output}", file=sys.stderr)
        return
    if context["sections"] == ["kernels"] and os.path.isfile(arguments.output):
        print(kernels_section)
        with open(arguments.output) as handle:
            write_text(arguments.output, replace_section(handle.read(), kernels_section, kernel_breakdown.HEADING))
        print(f"wrote the kernel section into {arguments.output}", file=sys.stderr)
        return
    report = render_report(machine, context, matmul, flops, results, pipeline, memories)
    if checkpoint is not None:
        report += "\n" + checkpoint_cost.format_section(checkpoint, context["cpu_class"], command)
    if video_rows:
        report += (f"\n## predict.py --video on a 10 s clip (benchmarks/video_speed.py) (CPU class: "
                   f"{context['cpu_class']})\n\n" + bench_video.__doc__.split("\n\n")[1]
                   + "\n\n" + bench_video.format_rows(video_rows) + "\n")
    if kernels is not None:
        report += "\n" + kernels_section
    print(report)
    write_text(arguments.output, report)
    print(f"wrote {arguments.output}", file=sys.stderr)


if __name__ == "__main__":
    main()
