"""Measure how fast LVS trains and predicts on this machine, next to the same network in PyTorch; write BENCHMARKS.md.

One command measures, at the paper's shapes (224 x 224 frames, 10 s of 16 kHz audio: 257 x 671 spectrograms) and
at the demo's (112 x 112 frames, 0.5 s of 8 kHz audio: 257 x 15):

- training throughput of our train step (model.train_on_batch: forward, LVS loss, backward, Adam) for several
  variants (float32 or mixed_bfloat16 policy, XLA jit_compile on or off), and of the same two-tower ResNet-18 and
  loss in PyTorch (torch_reference.py: NCHW or channels_last memory format, float32 or bfloat16 autocast);
  samples/s is the batch size over the median of the timed steps; the first step (tracing, XLA compilation,
  allocations) is reported apart;
- inference throughput of predict.py's forward (model(inputs) -> similarity, positive mask), ours and PyTorch's;
- the input pipeline (preprocessing.make_dataset decoding generated jpg/wav files of the right sizes), next to
  what the train step consumes;
- peak memory (RSS) of a training run, each in its own subprocess so the peak is that run's own;
- achieved GFLOP/s of every train step, from an analytic count of its convolutions, against this CPU's matmul
  GFLOP/s.

Timings go to stdout as markdown tables and to --output (BENCHMARKS.md) with the machine, library versions, the date,
the load average and the exact command. Run it on a quiet machine: other work on the cores makes every number noisy.

Usage:
    python bench.py                                   # everything, both shapes (slow: ~25 min on 2 cores)
    python bench.py --shapes demo                     # the demo's shapes only (a few minutes)
    python bench.py --quick --output /tmp/BENCHMARKS.md   # smoke run, tiny step counts, numbers meaningless
    python bench.py --shapes paper --keras_variants fp32,bf16 --torch_variants nchw --skip_memory
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import shlex  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import psutil  # noqa: E402
import scipy.io.wavfile  # noqa: E402
from PIL import Image  # noqa: E402

# PyTorch (and torch_reference, which imports torchvision) before TensorFlow: the other order segfaults in
# torchvision's import.
import torch  # noqa: E402
import torchvision  # noqa: E402
from torch_reference import TorchLVS, torch_lvs_loss  # noqa: E402

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

import loss as lvs  # noqa: E402
import preprocessing  # noqa: E402
import resnet18  # noqa: E402
from atomic import write_text  # noqa: E402
from model import LVSModel, build_model  # noqa: E402

# name -> model settings, default batch size, and the size of the generated source files for the input pipeline.
SHAPES = {
    "paper": {"image_size": 224, "sample_rate": 16000, "audio_seconds": 10.0, "batch_size": 16,
              "source_image": (320, 240), "default_steps": 5},
    "demo": {"image_size": 112, "sample_rate": 8000, "audio_seconds": 0.5, "batch_size": 32,
             "source_image": (128, 128), "default_steps": 20},
}
# Our train step: the Keras dtype policy, model.compile(jit_compile=...) and the towers' layers. fp32 is exactly
# train.py's default (jit_compile="auto", which Keras resolves to False on a machine without an accelerator;
# resnet18.BatchNormalization on TensorFlow's fused kernel; resnet18.Conv2D, stride-1 convolutions padded inside
# the op and kernel taps that only read padding skipped).
# _keras_bn computes BatchNorm as separate ops, as keras.layers.BatchNormalization does; _stock builds the towers
# from stock Keras layers (that BatchNorm, keras.layers.Conv2D after a ZeroPadding2D layer wherever it pads).
KERAS_VARIANTS = {
    "fp32": {"policy": "float32", "jit_compile": "auto", "fused_batch_norm": True, "stock_layers": False},
    "fp32_keras_bn": {"policy": "float32", "jit_compile": "auto", "fused_batch_norm": False, "stock_layers": False},
    "fp32_stock": {"policy": "float32", "jit_compile": "auto", "fused_batch_norm": False, "stock_layers": True},
    "fp32_xla": {"policy": "float32", "jit_compile": True, "fused_batch_norm": True, "stock_layers": False},
    "bf16": {"policy": "mixed_bfloat16", "jit_compile": False, "fused_batch_norm": True, "stock_layers": False},
    "bf16_keras_bn": {"policy": "mixed_bfloat16", "jit_compile": False, "fused_batch_norm": False,
                      "stock_layers": False},
    "bf16_xla": {"policy": "mixed_bfloat16", "jit_compile": True, "fused_batch_norm": True, "stock_layers": False},
}
KERAS_DEFAULT = "fp32"  # what train.py and predict.py run without flags
# The PyTorch reference: memory format of the network and inputs, bfloat16 autocast of the towers (loss in float32).
TORCH_VARIANTS = {
    "nchw": {"channels_last": False, "bfloat16": False},
    "channels_last": {"channels_last": True, "bfloat16": False},
    "nchw_bf16": {"channels_last": False, "bfloat16": True},
    "channels_last_bf16": {"channels_last": True, "bfloat16": True},
}
KERAS_EAGER = "fp32_eager"  # inference only: model(inputs) called eagerly (predict.py wraps it in tf.function)
TORCH_OFFICIAL = "nchw"  # the official layout, the reference every ratio is taken against
LEARNING_RATE = 1e-4
DEFAULT_WARMUP = 2
DEFAULT_PIPELINE_BATCHES = 20
DEFAULT_MATMUL_SIZE = 2048
MEMORY_BATCH_SIZE = 16
PROBE_PREFIX = "MEMORY_PROBE "
QUICK = {"steps": 2, "warmup": 1, "pipeline_batches": 2, "matmul_size": 512}


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
# Tables and formatting


def markdown_table(headers, rows):
    """A GitHub markdown table.

    Args:
        headers: column titles.
        rows: lists of cells (anything; str() is applied, '|' is escaped), each as long as headers.

    Returns:
        The table as a string, one line per row, ending with a newline.
    """
    lines = ["| " + " | ".join(str(header) for header in headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    for row in rows:
        if len(row) != len(headers):
            raise ValueError(f"row has {len(row)} cells, the table has {len(headers)} columns: {row}")
        lines.append("| " + " | ".join(str(cell).replace("|", "\\|") for cell in row) + " |")
    return "\n".join(lines) + "\n"


def number(value, digits=3):
    """value with `digits` significant digits (no exponent below 1e6), or 'n/a' for None."""
    if value is None:
        return "n/a"
    if abs(value) >= 10 ** digits:
        return f"{value:,.0f}"
    return f"{value:.{digits}g}"


def ratio_text(numerator, denominator):
    """'1.23x' or 'n/a' when either side is missing."""
    if numerator is None or not denominator:
        return "n/a"
    return f"{numerator / denominator:.2f}x"


# ----------------------------------------------------------------------------------------------------------------
# The machine


def cpu_model():
    """The CPU's 'model name' from /proc/cpuinfo (platform.processor() elsewhere)."""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cpu_flags_of_note():
    """The vector-instruction flags of /proc/cpuinfo that matter here (AVX2, AVX-512, bfloat16, AMX)."""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("flags"):
                    flags = line.split(":", 1)[1].split()
                    return [flag for flag in flags if flag in ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16",
                                                                "amx_bf16", "amx_tile", "avx512_fp16")]
    except OSError:
        pass
    return []


def machine_description():
    """The machine and the libraries, as a dict of label -> text."""
    memory = psutil.virtual_memory()
    return {
        "CPU": cpu_model(),
        "cores": f"{len(os.sched_getaffinity(0))} usable ({psutil.cpu_count(logical=False)} physical, "
                 f"{psutil.cpu_count()} logical)",
        "CPU flags of note": " ".join(cpu_flags_of_note()) or "none found",
        "RAM": f"{memory.total / 2**30:.1f} GiB ({memory.available / 2**30:.1f} GiB available at start)",
        "OS": platform.platform(),
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": np.__version__,
    }


def cpu_seconds():
    """(CPU seconds every process of the machine has used, CPU seconds this process and its waited children have)."""
    machine = psutil.cpu_times()
    busy = sum(machine) - machine.idle - getattr(machine, "iowait", 0.0)
    own = psutil.Process().cpu_times()
    return busy, own.user + own.system + own.children_user + own.children_system


def others_share(start, end, seconds):
    """Fraction of the cores that other processes used between two cpu_seconds() readings taken seconds apart."""
    others = (end[0] - start[0]) - (end[1] - start[1])
    return max(others, 0.0) / (seconds * len(os.sched_getaffinity(0)))


def load_average():
    """The 1, 5 and 15 minute load averages as text."""
    return " / ".join(f"{value:.2f}" for value in os.getloadavg())


# ----------------------------------------------------------------------------------------------------------------
# Inputs and steps


def random_inputs(settings, batch_size, seed=0):
    """Random model inputs: {"frame": B x S x S x 3, "spectrogram": B x 257 x T x 1} float32 numpy arrays."""
    rng = np.random.default_rng(seed)
    width = preprocessing.spectrogram_width(settings["sample_rate"], settings["audio_seconds"])
    size = settings["image_size"]
    return {
        "frame": rng.normal(size=(batch_size, size, size, 3)).astype(np.float32),
        "spectrogram": (rng.normal(size=(batch_size, 257, width, 1)) * 0.2 - 0.8).astype(np.float32),
    }


def torch_inputs(inputs, channels_last):
    """Our NHWC inputs as PyTorch's NCHW tensors (frames B x 3 x S x S, spectrograms B x 1 x 257 x T)."""
    frames = torch.from_numpy(inputs["frame"].transpose(0, 3, 1, 2).copy())  # B x S x S x 3 -> B x 3 x S x S
    spectrograms = torch.from_numpy(inputs["spectrogram"].transpose(0, 3, 1, 2).copy())  # -> B x 1 x 257 x T
    if channels_last:
        frames = frames.contiguous(memory_format=torch.channels_last)
        spectrograms = spectrograms.contiguous(memory_format=torch.channels_last)
    return frames, spectrograms


def precision(variant):
    """'bfloat16' for a bf16 variant of either framework, else 'float32'."""
    return "bfloat16" if "bf16" in variant else "float32"


def model_settings(shape):
    """LVSModel settings of a SHAPES entry."""
    return {key: SHAPES[shape][key] for key in ("image_size", "sample_rate", "audio_seconds")}


class StockLayersLVSModel(LVSModel):
    """LVSModel whose towers are built from stock Keras layers: what our own layers gain is measured against it."""

    stock_layers = True


def build_keras_model(shape, variant, seed=0):
    """A new LVSModel (random weights) under the variant's dtype policy; the global policy is restored after."""
    options = KERAS_VARIANTS[variant]
    keras.mixed_precision.set_global_policy(options["policy"])
    try:
        keras.utils.set_random_seed(seed)
        if options["stock_layers"]:
            return StockLayersLVSModel(**model_settings(shape))
        model = build_model(image_weights="none", **model_settings(shape))
        for layer in model.batch_norm_layers():
            layer.fused = options["fused_batch_norm"]
        return model
    finally:
        keras.mixed_precision.set_global_policy("float32")


def batch_norm_text(options):
    """How a Keras variant builds its towers, for the settings column."""
    if options["stock_layers"]:
        return "stock Keras layers (ZeroPadding2D layers, Conv2D, BatchNorm as separate ops)"
    return "fused BatchNorm" if options["fused_batch_norm"] else "BatchNorm as separate ops"


def keras_train_step(shape, batch_size, variant, seed=0):
    """Our train step at a shape, compiled as the variant says.

    Args:
        shape: a SHAPES name.
        batch_size: pairs per step.
        variant: a KERAS_VARIANTS name.
        seed: weights and inputs seed.

    Returns:
        (step, description): step() runs one train step and returns the loss; description names the settings.
    """
    options = KERAS_VARIANTS[variant]
    model = build_keras_model(shape, variant, seed)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=LEARNING_RATE), jit_compile=options["jit_compile"])
    batch = {key: tf.constant(value) for key, value in random_inputs(model.settings, batch_size, seed).items()}

    def step():
        logs = model.train_on_batch(batch, return_dict=True)  # returns numpy values: the step has finished
        return float(logs["loss"])

    jit_text = f"jit_compile={options['jit_compile']}"
    if options["jit_compile"] == "auto":
        jit_text += f" (= {model.jit_compile} here, as train.py)"
    return step, f"policy {options['policy']}, {jit_text}, {batch_norm_text(options)}, train_on_batch"


def keras_forward(shape, batch_size, variant, seed=0):
    """predict.py's forward (model(inputs, training=False) -> similarity, positive mask, fetched as numpy).

    Args:
        shape: a SHAPES name.
        batch_size: pairs per forward.
        variant: KERAS_EAGER (the model called eagerly) or a KERAS_VARIANTS name (the call
            wrapped in tf.function, with jit_compile=True for the _xla ones).
        seed: weights and inputs seed.

    Returns:
        (forward, description): forward() runs one batch.
    """
    model = build_keras_model(shape, "fp32" if variant == KERAS_EAGER else variant, seed)
    batch = {key: tf.constant(value) for key, value in random_inputs(model.settings, batch_size, seed).items()}
    if variant == KERAS_EAGER:
        call, description = (lambda inputs: model(inputs, training=False)), "policy float32, eager call"
    else:
        options = KERAS_VARIANTS[variant]
        jit_compile = options["jit_compile"] is True
        call = tf.function(lambda inputs: model(inputs, training=False), jit_compile=jit_compile)
        description = f"policy {options['policy']}, tf.function(jit_compile={jit_compile}), {batch_norm_text(options)}"

    def forward():
        outputs = call(batch)
        return outputs["similarity"].numpy(), outputs["positive_mask"].numpy()

    return forward, description


def torch_train_step(shape, batch_size, variant, seed=0):
    """The PyTorch reference's train step (TorchLVS forward, torch_lvs_loss, backward, Adam) at a shape.

    Args:
        shape: a SHAPES name.
        batch_size: pairs per step.
        variant: a TORCH_VARIANTS name.
        seed: weights and inputs seed.

    Returns:
        (step, description): step() runs one train step and returns the loss.
    """
    options = TORCH_VARIANTS[variant]
    torch.manual_seed(seed)
    network = TorchLVS(layer4_stride=1).train()
    if options["channels_last"]:
        network = network.to(memory_format=torch.channels_last)
    inputs = random_inputs(model_settings(shape), batch_size, seed)
    frames, spectrograms = torch_inputs(inputs, options["channels_last"])
    optimizer = torch.optim.Adam(network.parameters(), lr=LEARNING_RATE)

    def step():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=options["bfloat16"]):
            frame_features, audio_features = network(frames, spectrograms)
        loss = torch_lvs_loss(frame_features.float(), audio_features.float())  # the loss in float32, as ours
        loss.backward()
        optimizer.step()
        return loss.item()

    return step, torch_description(options) + ", Adam"


def torch_forward(shape, batch_size, variant, seed=0):
    """The PyTorch reference's inference forward: towers, S_ii and m_ip, in eval mode under torch.inference_mode."""
    options = TORCH_VARIANTS[variant]
    torch.manual_seed(seed)
    network = TorchLVS(layer4_stride=1).eval()
    if options["channels_last"]:
        network = network.to(memory_format=torch.channels_last)
    inputs = random_inputs(model_settings(shape), batch_size, seed)
    frames, spectrograms = torch_inputs(inputs, options["channels_last"])

    def forward():
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=options["bfloat16"]):
            frame_features, audio_features = network(frames, spectrograms)
        frame_features, audio_features = frame_features.float(), audio_features.float()
        similarity = torch.einsum("nchw,nc->nhw", frame_features, audio_features)  # B x h x w
        mask = torch.sigmoid((similarity - lvs.EPS_POS) / lvs.TAU)
        return similarity.numpy(), mask.numpy()

    return forward, torch_description(options) + ", eval, inference_mode"


def torch_description(options):
    """The settings of a PyTorch variant as text."""
    layout = "channels_last" if options["channels_last"] else "NCHW (contiguous)"
    precision = "bfloat16 autocast" if options["bfloat16"] else "float32"
    return f"{layout}, {precision}, {torch.get_num_threads()} threads"


def time_steps(step, warmup, steps):
    """Run step() warmup times untimed-in-the-median (the first one separately timed), then steps timed times.

    Args:
        step: a callable that finishes its work before returning.
        warmup: untimed runs, at least 1; the first one (tracing, compilation, allocation) is reported apart.
        steps: timed runs, at least 1.

    Returns:
        {"first": seconds of the first run, "median", "min", "max": seconds of the timed runs, "times": all of them}.
    """
    if warmup < 1 or steps < 1:
        raise ValueError(f"warmup and steps must be at least 1, got {warmup} and {steps}")
    start = time.perf_counter()
    step()
    first = time.perf_counter() - start
    for _ in range(warmup - 1):
        step()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return {"first": first, "median": statistics.median(times), "min": min(times), "max": max(times), "times": times}


def measure(kind, framework, shape, variant, batch_size, warmup, steps, flops):
    """Build and time one step function; a failure becomes a row that says so instead of stopping the run.

    Args:
        kind: "train" or "inference".
        framework: "keras" or "torch".
        shape: a SHAPES name.
        variant: a variant name of that framework.
        batch_size: pairs per step.
        warmup: untimed steps (the first is reported apart).
        steps: timed steps.
        flops: {"forward", "train"} FLOPs per sample (train_step_flops).

    Returns:
        A result dict: kind, framework, shape, variant, batch_size, settings, first, median, samples_per_second,
        gflops_per_second (None when it failed), error.
    """
    builders = {("train", "keras"): keras_train_step, ("train", "torch"): torch_train_step,
                ("inference", "keras"): keras_forward, ("inference", "torch"): torch_forward}
    result = {"kind": kind, "framework": framework, "shape": shape, "variant": variant, "batch_size": batch_size,
              "settings": "", "first": None, "median": None, "min": None, "max": None, "samples_per_second": None,
              "gflops_per_second": None, "error": None}
    try:
        step, result["settings"] = builders[(kind, framework)](shape, batch_size, variant)
        timing = time_steps(step, warmup, steps)
    except Exception as error:  # e.g. an XLA or bfloat16 kernel this build lacks: report it, keep going
        result["error"] = f"{type(error).__name__}: {str(error).splitlines()[0][:160] if str(error) else ''}"
        print(f"[{shape}] {framework} {variant} {kind}: FAILED {result['error']}", file=sys.stderr, flush=True)
        return result
    finally:
        keras.backend.clear_session()
    result.update({key: timing[key] for key in ("first", "median", "min", "max")})
    result["samples_per_second"] = batch_size / timing["median"]
    result["gflops_per_second"] = flops["train" if kind == "train" else "forward"] * result["samples_per_second"] / 1e9
    print(f"[{shape}] {framework} {variant} {kind}: {result['samples_per_second']:.3g} samples/s "
          f"(median step {timing['median']:.3f} s of {steps}, first {timing['first']:.2f} s, "
          f"load {load_average()})", file=sys.stderr, flush=True)
    return result


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


def write_pipeline_files(folder, count, image_width, image_height, sample_rate, audio_seconds, seed=0):
    """Write count NAME.jpg + NAME.wav pairs: smooth random frames with grain, 16-bit noise audio.

    Args:
        folder: where the files go.
        count: number of pairs.
        image_width, image_height: size of the jpgs (video frames: 320 x 240 for VGGSound-like input).
        sample_rate: rate of the wavs (the model's, so no resampling is timed).
        audio_seconds: length of the wavs.
        seed: content seed.

    Returns:
        The list of preprocessing.Pair found in folder.
    """
    rng = np.random.default_rng(seed)
    length = int(round(sample_rate * audio_seconds))
    for index in range(count):
        coarse = rng.integers(0, 256, size=(image_height // 16 + 1, image_width // 16 + 1, 3), dtype=np.uint8)
        smooth = np.asarray(Image.fromarray(coarse).resize((image_width, image_height), Image.BILINEAR), np.int16)
        grain = rng.integers(-12, 13, size=smooth.shape)
        pixels = np.clip(smooth + grain, 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(os.path.join(folder, f"bench_{index:04d}.jpg"), quality=90)
        samples = np.clip(rng.normal(size=length) * 3000, -32768, 32767).astype(np.int16)
        scipy.io.wavfile.write(os.path.join(folder, f"bench_{index:04d}.wav"), sample_rate, samples)
    pairs, skipped = preprocessing.find_pairs(folder)
    if skipped or len(pairs) != count:
        raise RuntimeError(f"generated pairs unreadable: {skipped[:3]}")
    return pairs


def measure_pipeline(shape, batch_size, batches, folder):
    """Samples/s of preprocessing.make_dataset (training=True) over generated files, after one warm-up batch.

    The files sit in the page cache (written just before), so this is decoding and preprocessing, not disk reads.

    Args:
        shape: a SHAPES name.
        batch_size: pairs per batch.
        batches: batches timed.
        folder: an empty folder for the generated files; it must outlive the run (tf.data workers may still be
            reading from it when this returns).

    Returns:
        A result dict: shape, batch_size, files (text), samples_per_second, error.
    """
    settings = model_settings(shape)
    width, height = SHAPES[shape]["source_image"]
    result = {"shape": shape, "batch_size": batch_size, "samples_per_second": None, "error": None,
              "files": f"{width}x{height} jpg + {settings['audio_seconds']:g} s {settings['sample_rate']} Hz "
                       f"16-bit wav"}
    try:
        pairs = write_pipeline_files(folder, max(2 * batch_size, 8), width, height, settings["sample_rate"],
                                     settings["audio_seconds"])
        dataset = preprocessing.make_dataset(pairs, settings, training=True, batch_size=batch_size,
                                             drop_remainder=True).repeat()
        iterator = iter(dataset)
        next(iterator)  # starts the workers and the autotuner
        start = time.perf_counter()
        for _ in range(batches):
            batch = next(iterator)
        seconds = time.perf_counter() - start
        expected_width = preprocessing.spectrogram_width(settings["sample_rate"], settings["audio_seconds"])
        if tuple(batch["spectrogram"].shape) != (batch_size, 257, expected_width, 1):
            raise RuntimeError(f"unexpected spectrogram batch {batch['spectrogram'].shape}")
        if preprocessing.SKIPPED_WHILE_LOADING:
            raise RuntimeError(f"files failed to decode: {preprocessing.SKIPPED_WHILE_LOADING[:2]}")
    except Exception as error:
        result["error"] = f"{type(error).__name__}: {error}"
        print(f"[{shape}] input pipeline: FAILED {result['error']}", file=sys.stderr, flush=True)
        return result
    result["samples_per_second"] = batches * batch_size / seconds
    print(f"[{shape}] input pipeline: {result['samples_per_second']:.3g} samples/s ({batches} batches, "
          f"load {load_average()})", file=sys.stderr, flush=True)
    return result


def memory_probe(specification, shape, batch_size, warmup, steps):
    """Run in a subprocess: one training run, then print its RSS figures as a JSON line starting with PROBE_PREFIX.

    Args:
        specification: "keras:VARIANT" or "torch:VARIANT".
        shape: a SHAPES name.
        batch_size: pairs per step.
        warmup, steps: steps to run (all of them count for the peak).
    """
    framework, variant = specification.split(":", 1)
    process = psutil.Process()
    after_imports = process.memory_info().rss
    peak_source = reset_peak_rss()
    builder = keras_train_step if framework == "keras" else torch_train_step
    step, settings = builder(shape, batch_size, variant)
    after_build = process.memory_info().rss
    for _ in range(warmup + steps):
        step()
    print(PROBE_PREFIX + json.dumps({"after_imports": after_imports, "after_build": after_build,
                                     "peak": peak_rss(peak_source), "peak_source": peak_source,
                                     "settings": settings}), flush=True)


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


def measure_memory(specifications, shape, batch_size, warmup, steps, threads):
    """Peak RSS of a training run per specification, each in its own `bench.py --memory_probe` subprocess.

    Two probes run at a time (their peaks are per process, so running side by side does not change them).

    Returns:
        A list of result dicts: framework, variant, shape, batch_size, after_imports, after_build, peak (bytes),
        settings, error.
    """
    script = os.path.abspath(__file__)
    results = []
    for start in range(0, len(specifications), 2):
        running = []
        for specification in specifications[start : start + 2]:
            command = [sys.executable, script, "--memory_probe", specification, "--shapes", shape,
                       "--batch_size", str(batch_size), "--warmup", str(warmup), "--steps", str(steps),
                       "--threads", str(threads)]
            running.append((specification, subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                                            text=True)))
        for specification, child in running:
            stdout, stderr = child.communicate()
            framework, variant = specification.split(":", 1)
            result = {"framework": framework, "variant": variant, "shape": shape, "batch_size": batch_size,
                      "error": None}
            lines = [line for line in stdout.splitlines() if line.startswith(PROBE_PREFIX)]
            if child.returncode != 0 or not lines:
                last = (stderr.strip().splitlines() or ["no output"])[-1]
                result["error"] = f"exit code {child.returncode}: {last[:160]}"
                print(f"[{shape}] memory {specification}: FAILED {result['error']}", file=sys.stderr, flush=True)
            else:
                result.update(json.loads(lines[-1][len(PROBE_PREFIX):]))
                print(f"[{shape}] memory {specification}: peak RSS {result['peak'] / 2**30:.2f} GiB", file=sys.stderr,
                      flush=True)
            results.append(result)
    return results


# ----------------------------------------------------------------------------------------------------------------
# The report


def gibibytes(value):
    return "n/a" if value is None else f"{value / 2**30:.2f}"


def best(results, **conditions):
    """The fastest successful result matching every condition (key == value), or None."""
    matching = [result for result in results if result["samples_per_second"] is not None
                and all(result[key] == value for key, value in conditions.items())]
    return max(matching, key=lambda result: result["samples_per_second"], default=None)


def find(results, **conditions):
    """The result matching every condition, or None."""
    for result in results:
        if all(result[key] == value for key, value in conditions.items()):
            return result
    return None


def speed(result):
    return None if result is None else result["samples_per_second"]


def throughput_rows(results, kind, matmul):
    """Rows of the training or inference table."""
    rows = []
    for result in results:
        if result["kind"] != kind:
            continue
        reference = find(results, kind=kind, shape=result["shape"], framework="torch", variant=TORCH_OFFICIAL)
        ours = "ours (Keras)" if result["framework"] == "keras" else "PyTorch"
        if result["error"]:
            rows.append([result["shape"], ours, result["variant"], result["batch_size"], result["settings"] or "",
                         "failed", "", "", "", result["error"], "", "", ""])
            continue
        compile_seconds = max(result["first"] - result["median"], 0.0)
        rows.append([
            result["shape"], ours, result["variant"], result["batch_size"], result["settings"],
            f"{result['first']:.2f}", f"{compile_seconds:.2f}", f"{result['median']:.3f}",
            f"{result['min']:.3f} - {result['max']:.3f}",
            number(result["samples_per_second"]), ratio_text(result["samples_per_second"], speed(reference)),
            number(result["gflops_per_second"]),
            f"{100 * result['gflops_per_second'] / matmul['tf ' + precision(result['variant'])]:.0f} %" if matmul
            else "n/a",
        ])
    return rows


def option_rows(results):
    """What each option gained or lost: ratios of samples/s between variants that differ by that option only."""
    comparisons = [
        ("our tower layers instead of stock Keras layers, float32", "keras", "fp32", "fp32_stock"),
        ("our convolutions (stride-1 padding inside the op, padding-only taps skipped), float32", "keras",
         "fp32_keras_bn", "fp32_stock"),
        ("fused BatchNorm kernel, float32", "keras", "fp32", "fp32_keras_bn"),
        ("fused BatchNorm kernel, mixed_bfloat16", "keras", "bf16", "bf16_keras_bn"),
        ("XLA (jit_compile=True), float32", "keras", "fp32_xla", "fp32"),
        ("XLA (jit_compile=True), mixed_bfloat16", "keras", "bf16_xla", "bf16"),
        ("mixed_bfloat16 policy, no XLA", "keras", "bf16", "fp32"),
        ("mixed_bfloat16 policy, with XLA", "keras", "bf16_xla", "fp32_xla"),
        ("tf.function instead of eager (inference)", "keras", "fp32", KERAS_EAGER),
        ("PyTorch channels_last, float32", "torch", "channels_last", "nchw"),
        ("PyTorch bfloat16 autocast, NCHW", "torch", "nchw_bf16", "nchw"),
        ("PyTorch bfloat16 autocast, channels_last", "torch", "channels_last_bf16", "channels_last"),
    ]
    rows = []
    for shape in dict.fromkeys(result["shape"] for result in results):
        for label, framework, variant, baseline in comparisons:
            cells = []
            for kind in ("train", "inference"):
                with_option = find(results, kind=kind, shape=shape, framework=framework, variant=variant)
                without = find(results, kind=kind, shape=shape, framework=framework, variant=baseline)
                cells.append(ratio_text(speed(with_option), speed(without)) if with_option and without else "n/a")
            if cells != ["n/a", "n/a"]:
                rows.append([shape, label, f"{variant} vs {baseline}", *cells])
    return rows


def variant_name(result):
    return "n/a" if result is None else result["variant"]


def verdict(numerator, denominator, target):
    """'1.23x, target >= 1.2x: met' (or NOT met), or 'not measured' when either side is missing."""
    if numerator is None or not denominator:
        return "not measured"
    value = numerator / denominator
    return f"{value:.2f}x, target >= {target}x: {'met' if value >= target else 'NOT met'}"


def summary_lines(results, pipelines):
    """The targets of the issue, met or not, per shape: our default against the PyTorch reference (the target),
    then fastest against fastest and precision against precision."""
    lines = []
    for shape in dict.fromkeys(result["shape"] for result in results):
        default_train = find(results, kind="train", shape=shape, framework="keras", variant=KERAS_DEFAULT)
        ours_train = best(results, kind="train", shape=shape, framework="keras")
        torch_train = best(results, kind="train", shape=shape, framework="torch")
        lines.append(f"- **{shape}**: fastest train step of ours: `{variant_name(ours_train)}` "
                     f"({number(speed(ours_train))} samples/s; train.py's default `{KERAS_DEFAULT}`: "
                     f"{number(speed(default_train))}); fastest PyTorch: `{variant_name(torch_train)}` "
                     f"({number(speed(torch_train))} samples/s).")
        for kind, target in (("train", 1.2), ("inference", 1.0)):
            ours_default = find(results, kind=kind, shape=shape, framework="keras", variant=KERAS_DEFAULT)
            official = find(results, kind=kind, shape=shape, framework="torch", variant=TORCH_OFFICIAL)
            if ours_default and official:
                lines.append(f"  - **{kind}, the target: ours as run without flags (`{KERAS_DEFAULT}`) / the PyTorch "
                             f"reference (`{TORCH_OFFICIAL}` float32, the official layout): "
                             f"{verdict(speed(ours_default), speed(official), target)}**")
        for kind, target in (("train", 1.2), ("inference", 1.0)):
            ours = best(results, kind=kind, shape=shape, framework="keras")
            reference = best(results, kind=kind, shape=shape, framework="torch")
            if ours is None and reference is None:
                continue
            lines.append(f"  - {kind}, ours / PyTorch, fastest of each (`{variant_name(ours)}` vs "
                         f"`{variant_name(reference)}`): {verdict(speed(ours), speed(reference), target)}")
            official = find(results, kind=kind, shape=shape, framework="torch", variant=TORCH_OFFICIAL)
            if official is not None and official is not reference:
                lines.append(f"  - {kind}, ours fastest / PyTorch official layout (`nchw` float32): "
                             f"{verdict(speed(ours), speed(official), target)}")
            for dtype in ("float32", "bfloat16"):
                candidates = [result for result in results if precision(result["variant"]) == dtype]
                ours_matched = best(candidates, kind=kind, shape=shape, framework="keras")
                reference_matched = best(candidates, kind=kind, shape=shape, framework="torch")
                if ours_matched and reference_matched:
                    lines.append(f"  - {kind}, {dtype} only (`{variant_name(ours_matched)}` vs "
                                 f"`{variant_name(reference_matched)}`): "
                                 f"{verdict(speed(ours_matched), speed(reference_matched), target)}")
        pipeline = find(pipelines, shape=shape)
        lines.append(f"  - input pipeline / train step's consumption (fastest train variant of ours): "
                     f"{verdict(pipeline and pipeline['samples_per_second'], speed(ours_train), 3)}")
    return lines


def render_report(machine, context, matmul, flops, results, pipelines, memories):
    """The whole BENCHMARKS.md text.

    Args:
        machine: machine_description().
        context: dict with command, date, load_start, load_end, threads, tf_threads, steps, warmup (text).
        matmul: matmul_gflops() result (or None).
        flops: {shape: train_step_flops()}.
        results: measure() results (train and inference).
        pipelines: measure_pipeline() results.
        memories: measure_memory() results.

    Returns:
        Markdown text.
    """
    parts = [
        "# Benchmarks\n",
        f"Measured by `bench.py` on {context['date']}, command:\n\n```\n{context['command']}\n```\n",
        "Every number below comes from that one run on the machine described here; rerun the command to "
        "refresh it. Timings are medians of timed steps after warm-up; the first step (tracing, XLA "
        "compilation, first allocations) is reported apart and 'compile' is first step - median.\n",
        "## Machine\n",
        markdown_table(["", ""], [[key, value] for key, value in machine.items()]
                       + [["load average (1/5/15 min) at start", context["load_start"]],
                          ["load average at end (this run included)", context["load_end"]],
                          ["CPU used by other processes during the run",
                           f"{100 * context['others_share']:.0f} % of the cores"]]),
    ]
    cores = len(os.sched_getaffinity(0))
    if context["others_share"] > 0.1 or context["first_load"] > 0.5 * cores:
        parts.append(f"**Warning: the machine was busy (other processes used {100 * context['others_share']:.0f} % of "
                     f"the cores during the run; 1-minute load {context['first_load']:.2f} at start): these numbers "
                     f"are noisy.**\n")
    parts += [
        "## Settings\n",
        f"- Threads: PyTorch `torch.set_num_threads({context['threads']})` and "
        f"`set_num_interop_threads({context['threads']})`; TensorFlow "
        + ("its defaults (intra-op and inter-op 0: one thread per core), oneDNN on "
           f"(TF_ENABLE_ONEDNN_OPTS={os.environ.get('TF_ENABLE_ONEDNN_OPTS', 'unset: on')})."
           if not context["tf_threads"] else f"intra-op and inter-op parallelism set to {context['tf_threads']}.")
        + f" OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}. PyTorch's OpenMP threads slow down "
        "sharply (up to 20x seen) when another process takes a core, TensorFlow's thread pool far less: compare "
        "frameworks only in a quiet run.",
        "- Ours: `model.LVSModel` (random weights), `model.compile(optimizer=Adam(1e-4), jit_compile=...)` and "
        "`train_on_batch` on a fixed batch of random inputs already in memory. Variants: `fp32` = train.py's "
        "default (float32 policy, jit_compile='auto', resnet18.BatchNormalization on TensorFlow's fused kernel), "
        "`fp32_xla` = jit_compile=True, `bf16` / `bf16_xla` = the `mixed_bfloat16` global policy (loss and L2 "
        "normalisation stay float32), `_keras_bn` = BatchNorm computed as separate ops like stock "
        "keras.layers.BatchNormalization, `fp32_stock` = towers built from stock Keras layers (that BatchNorm, and "
        "keras.layers.Conv2D after a ZeroPadding2D layer wherever it pads: what the towers were before resnet18.py's "
        "own layers; resnet18.Conv2D pads stride-1 convolutions inside the op and skips the kernel taps that can only "
        "read padding, which maps one pixel wide have: the demo's audio tower in layer3 and layer4).",
        "- PyTorch: `torch_reference.TorchLVS` (torchvision ResNet-18 trunks, layer4 stride 1, max-pooled audio) "
        "and `torch_lvs_loss` (float32), `torch.optim.Adam(1e-4)`. Variants: `nchw` = the official layout, "
        "`channels_last` = network and inputs in torch.channels_last, `_bf16` = towers under "
        "`torch.autocast('cpu', torch.bfloat16)`.",
        "- Inference: predict.py's forward, model(inputs, training=False) -> similarity S_ii and positive mask "
        "m_ip, fetched as numpy. `fp32_eager` calls the model eagerly; the other Keras variants wrap the call in "
        "tf.function as predict.py does (jit_compile=True for `_xla`). PyTorch runs eval() under "
        "torch.inference_mode().",
        f"- Steps: {context['steps']}; warm-up steps (including the first): {context['warmup']}.",
        "- 'min - max step' is the spread of the timed steps: a wide one means other work disturbed the run.",
        "- 'vs PyTorch nchw' divides a row's samples/s by PyTorch's `nchw` float32 row at the same shape and kind.",
        "",
        "## FLOPs and matmul peak\n",
        "FLOPs are counted analytically from the conv shapes (bench.layer_flops over a fixed-shape build of each "
        "tower): a convolution costs 2 x output pixels x output channels x kernel area x input channels. A train "
        "step is 3 x the forward (the backward pass is two convolutions of the forward's cost each: input and "
        "kernel gradients) less each tower's first-conv input gradient; BatchNorm, ReLU, pooling, the loss and "
        "Adam are not counted (< 1 %). GFLOP/s = FLOPs per sample x samples/s; '% matmul' is against TF's matmul "
        "below in the row's precision (float32, or bfloat16 for the bf16 variants).\n",
    ]
    flop_rows = []
    for shape, counts in flops.items():
        settings = model_settings(shape)
        width = preprocessing.spectrogram_width(settings["sample_rate"], settings["audio_seconds"])
        flop_rows.append([shape, f"{settings['image_size']}x{settings['image_size']}", f"257x{width}",
                          f"{counts['forward'] / 1e9:.2f}", f"{counts['train'] / 1e9:.2f}"])
    parts.append(markdown_table(
        ["shape", "frame", "spectrogram", "forward GFLOP / sample", "train step GFLOP / sample"], flop_rows))
    if matmul:
        parts.append(markdown_table(["matmul (" + context["matmul_size"] + ")", "GFLOP/s"],
                                    [[key, number(value)] for key, value in matmul.items()]))
    headers = ["shape", "framework", "variant", "batch", "settings", "first step (s)", "compile (s)",
               "median step (s)", "min - max step (s)", "samples/s", "vs PyTorch nchw", "GFLOP/s", "% matmul"]
    parts += ["## Training throughput\n", markdown_table(headers, throughput_rows(results, "train", matmul))]
    inference_rows = throughput_rows(results, "inference", matmul)
    if inference_rows:
        parts += ["## Inference throughput (predict's forward)\n", markdown_table(headers, inference_rows)]
    if pipelines:
        rows = []
        for pipeline in pipelines:
            consumer = best(results, kind="train", shape=pipeline["shape"], framework="keras")
            rows.append([pipeline["shape"], pipeline["files"], pipeline["batch_size"],
                         pipeline["error"] or number(pipeline["samples_per_second"]),
                         f"{number(speed(consumer))} ({consumer['variant']})" if consumer else "n/a",
                         ratio_text(pipeline["samples_per_second"], speed(consumer))])
        parts += ["## Input pipeline\n",
                  "preprocessing.make_dataset(training=True) over generated files in a temporary folder (already in "
                  "the page cache: decoding and preprocessing, no disk reads), after one warm-up batch, measured "
                  "alone (in training it shares the cores with the train step).\n",
                  markdown_table(["shape", "files", "batch", "pipeline samples/s", "train step consumes (samples/s)",
                                  "pipeline / consumption"], rows)]
    if memories:
        rows = []
        for memory in memories:
            framework = "ours (Keras)" if memory["framework"] == "keras" else "PyTorch"
            if memory["error"]:
                rows.append([memory["shape"], framework, memory["variant"], memory["batch_size"], memory["error"],
                             "", "", ""])
                continue
            rows.append([memory["shape"], framework, memory["variant"], memory["batch_size"],
                         gibibytes(memory["after_imports"]), gibibytes(memory["after_build"]),
                         gibibytes(memory["peak"]), gibibytes(memory["peak"] - memory["after_imports"])])
        parts += ["## Peak memory of a training run\n",
                  "Each row is its own subprocess (`bench.py --memory_probe`) that imports PyTorch and TensorFlow "
                  "both, builds one model and runs warm-up + timed train steps; RSS from psutil; peak = the kernel's "
                  "high-water mark (VmHWM, reset after the imports through /proc/self/clear_refs, so it is the "
                  "training run's own; ru_maxrss where that reset is unavailable).\n",
                  markdown_table(["shape", "framework", "variant", "batch", "RSS after imports (GiB)",
                                  "RSS after build (GiB)", "peak RSS (GiB)", "peak - imports (GiB)"], rows)]
    option_table = option_rows(results)
    if option_table:
        parts += ["## What each option gained or lost\n",
                  "Ratio of samples/s with the option to without it (> 1: the option is faster).\n",
                  markdown_table(["shape", "option", "variants", "train", "inference"], option_table)]
    parts += ["## Against the targets\n", "\n".join(summary_lines(results, pipelines)) + "\n"]
    return "\n".join(parts)


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
    parser.add_argument("--keras_variants", default=",".join(KERAS_VARIANTS),
                        help=f"our train-step variants to time, comma-separated, from {', '.join(KERAS_VARIANTS)} "
                             f"(default: all)")
    parser.add_argument("--torch_variants", default=",".join(TORCH_VARIANTS),
                        help=f"PyTorch variants to time, comma-separated, from {', '.join(TORCH_VARIANTS)} "
                             f"(default: all)")
    parser.add_argument("--skip_torch", action="store_true", help="do not time the PyTorch reference")
    parser.add_argument("--skip_inference", action="store_true", help="do not time the inference forward")
    parser.add_argument("--skip_pipeline", action="store_true", help="do not time the input pipeline")
    parser.add_argument("--skip_memory", action="store_true", help="do not measure the peak memory of a training run")
    parser.add_argument("--skip_matmul", action="store_true", help="do not measure the matmul GFLOP/s peak")
    parser.add_argument("--pipeline_batches", type=int, default=None,
                        help=f"batches timed through the input pipeline (default: {DEFAULT_PIPELINE_BATCHES}; 2 with "
                             f"--quick)")
    parser.add_argument("--memory_shape", default=None,
                        help="shape of the peak-memory runs (default: paper if measured, else the first of --shapes)")
    parser.add_argument("--memory_batch_size", type=int, default=None,
                        help=f"batch of the peak-memory runs (default: {MEMORY_BATCH_SIZE}, or --batch_size when "
                             f"given)")
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
                        help="smoke run with tiny step counts (steps 2, warm-up 1, 2 pipeline batches, 512 matmul): "
                             "checks that everything runs, the numbers mean nothing")
    parser.add_argument("--output", default="BENCHMARKS.md",
                        help="markdown report to write, atomically (default: BENCHMARKS.md)")
    parser.add_argument("--memory_probe", default=None, metavar="FRAMEWORK:VARIANT",
                        help="internal: run one training run of keras:VARIANT or torch:VARIANT at the first of "
                             "--shapes and print its RSS as JSON (bench.py starts itself this way)")
    arguments = parser.parse_args(argv)
    try:
        arguments.shapes = comma_list(arguments.shapes, SHAPES, "shapes")
        arguments.keras_variants = comma_list(arguments.keras_variants, KERAS_VARIANTS, "keras_variants")
        arguments.torch_variants = comma_list(arguments.torch_variants, TORCH_VARIANTS, "torch_variants")
    except ValueError as error:
        parser.error(str(error))
    if not arguments.shapes:
        parser.error("--shapes: give at least one of " + ", ".join(SHAPES))
    for name in ("batch_size", "steps", "warmup", "pipeline_batches", "memory_batch_size", "matmul_size", "threads"):
        value = getattr(arguments, name)
        if value is not None and value < 1:
            parser.error(f"--{name} must be a positive integer, got {value}")
    if arguments.tf_threads < 0:
        parser.error(f"--tf_threads must be 0 or more, got {arguments.tf_threads}")
    if arguments.memory_shape is not None and arguments.memory_shape not in SHAPES:
        parser.error(f"--memory_shape: unknown {arguments.memory_shape} (choose from {', '.join(SHAPES)})")
    if arguments.memory_probe is not None:
        framework, _, variant = arguments.memory_probe.partition(":")
        known = {"keras": KERAS_VARIANTS, "torch": TORCH_VARIANTS}.get(framework, {})
        if variant not in known:
            parser.error(f"--memory_probe must be keras:VARIANT or torch:VARIANT, got {arguments.memory_probe}")
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
    arguments.matmul_size = arguments.matmul_size or quick.get("matmul_size", DEFAULT_MATMUL_SIZE)
    arguments.memory_batch_size = arguments.memory_batch_size or arguments.batch_size or MEMORY_BATCH_SIZE
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
    }
    print(f"load average at start: {context['load_start']} on {len(os.sched_getaffinity(0))} cores", file=sys.stderr)
    cpu_start, run_start = cpu_seconds(), time.perf_counter()
    machine = machine_description()
    matmul = None if arguments.skip_matmul else matmul_gflops(arguments.matmul_size, 5 if arguments.quick else 10)
    torch_variants = [] if arguments.skip_torch else arguments.torch_variants
    results, pipelines, flops = [], [], {}
    scratch_folder = tempfile.TemporaryDirectory(prefix="lvs_bench_")  # the pipeline's files, removed at exit
    scratch = scratch_folder.name
    for shape in arguments.shapes:
        settings = model_settings(shape)
        flops[shape] = train_step_flops(**settings)
        batch_size = arguments.batch_size or SHAPES[shape]["batch_size"]
        steps = steps_for(arguments, shape)
        plan = [("train", "torch", variant) for variant in torch_variants]
        plan += [("train", "keras", variant) for variant in arguments.keras_variants]
        if not arguments.skip_inference:
            plan += [("inference", "torch", variant) for variant in torch_variants]
            plan += [("inference", "keras", variant) for variant in [KERAS_EAGER, *arguments.keras_variants]]
        for kind, framework, variant in plan:
            results.append(measure(kind, framework, shape, variant, batch_size, arguments.warmup, steps, flops[shape]))
        if not arguments.skip_pipeline:
            folder = os.path.join(scratch, shape)
            os.makedirs(folder)
            pipelines.append(measure_pipeline(shape, batch_size, arguments.pipeline_batches, folder))
    memories = []
    if not arguments.skip_memory:
        shape = arguments.memory_shape
        specifications = []
        if arguments.keras_variants:
            specifications.append("keras:" + arguments.keras_variants[0])
            fastest = best(results, kind="train", shape=shape, framework="keras")
            if fastest and fastest["variant"] != arguments.keras_variants[0]:
                specifications.append("keras:" + fastest["variant"])
        if torch_variants:
            specifications.append("torch:" + torch_variants[0])
            fastest = best(results, kind="train", shape=shape, framework="torch")
            if fastest and fastest["variant"] != torch_variants[0]:
                specifications.append("torch:" + fastest["variant"])
        memories = measure_memory(specifications, shape, arguments.memory_batch_size, 1,
                                  min(steps_for(arguments, shape), 2), arguments.threads)
    context["load_end"] = load_average()
    context["others_share"] = others_share(cpu_start, cpu_seconds(), time.perf_counter() - run_start)
    report = render_report(machine, context, matmul, flops, results, pipelines, memories)
    print(report)
    write_text(arguments.output, report)
    print(f"wrote {arguments.output}", file=sys.stderr)
    scratch_folder.cleanup()


if __name__ == "__main__":
    main()
