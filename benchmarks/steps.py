"""The train steps and forwards bench.py times: ours (Keras) and the PyTorch reference, in every variant.

Each builder returns a callable that runs one step (or one forward) on a fixed batch of random inputs already in
memory and finishes its work before returning; time_steps times it and measure() turns it into a result row.
bench.py calls measure_isolated(), which runs measure() in a fresh process per row (`bench.py --time_probe`), so no
row is timed inside a process that earlier rows have shaped (TensorFlow's allocator and thread pools, compiled
functions, PyTorch's caches): the step is timed as train.py or predict.py would run it, one model per process.

Usage (bench.py does this):
    step, settings = keras_train_step("paper", 16, "fp32")
    timing = time_steps(step, warmup=2, steps=5)
"""

import json
import os
import statistics
import sys
import time

import numpy as np

# PyTorch (and torch_reference, which imports torchvision) before TensorFlow: the other order segfaults in
# torchvision's import.
import torch
from benchmarks.torch_reference import TorchLVS, torch_lvs_loss

import keras
import tensorflow as tf

from benchmarks import memory as bench_memory
from benchmarks.machine_load import load_average
import loss as lvs
from pipeline import preprocessing
from benchmarks.tables import KERAS_EAGER
from model import LVSModel, build_model
from training import optimizer

# name -> model settings, default batch size and timed steps.
SHAPES = {
    "paper": {"image_size": 224, "sample_rate": 16000, "audio_seconds": 10.0, "batch_size": 16,
              "default_steps": 5},
    "demo": {"image_size": 112, "sample_rate": 8000, "audio_seconds": 0.5, "batch_size": 32,
             "default_steps": 20},
}
# Our train step: the Keras dtype policy, model.compile(jit_compile=...) and the towers' layers. fp32 is exactly
# train.py's default (jit_compile="auto", which Keras resolves to False on a machine without an accelerator;
# resnet18.BatchNormalization on TensorFlow's fused kernel; resnet18.Conv2D, stride-1 convolutions padded inside
# the op and kernel taps that only read padding skipped).
# _keras_bn computes BatchNorm as separate ops, as keras.layers.BatchNormalization does; _stock builds the towers
# from stock Keras layers (that BatchNorm, keras.layers.Conv2D after a ZeroPadding2D layer wherever it pads).
# Every variant but _stock recomputes the stems in the backward pass (LVSModel's default); _remat is train.py
# --remat (the stem and layer1 to layer3 recomputed), _remat_all recomputes layer4 too, _no_remat recomputes
# nothing (what the stems' recomputation saves).
KERAS_VARIANTS = {
    "fp32": {"policy": "float32", "jit_compile": "auto", "fused_batch_norm": True, "stock_layers": False},
    "fp32_keras_bn": {"policy": "float32", "jit_compile": "auto", "fused_batch_norm": False, "stock_layers": False},
    "fp32_stock": {"policy": "float32", "jit_compile": "auto", "fused_batch_norm": False, "stock_layers": True},
    "fp32_xla": {"policy": "float32", "jit_compile": True, "fused_batch_norm": True, "stock_layers": False},
    "bf16": {"policy": "mixed_bfloat16", "jit_compile": False, "fused_batch_norm": True, "stock_layers": False},
    "bf16_keras_bn": {"policy": "mixed_bfloat16", "jit_compile": False, "fused_batch_norm": False,
                      "stock_layers": False},
    "bf16_xla": {"policy": "mixed_bfloat16", "jit_compile": True, "fused_batch_norm": True, "stock_layers": False},
    "fp32_remat": {"policy": "float32", "jit_compile": "auto", "fused_batch_norm": True, "stock_layers": False,
                   "remat": True},
    "bf16_remat": {"policy": "mixed_bfloat16", "jit_compile": False, "fused_batch_norm": True, "stock_layers": False,
                   "remat": True},
    "fp32_remat_all": {"policy": "float32", "jit_compile": "auto", "fused_batch_norm": True, "stock_layers": False,
                       "remat": True, "remat_segments": None},
    "fp32_no_remat": {"policy": "float32", "jit_compile": "auto", "fused_batch_norm": True, "stock_layers": False,
                      "remat_stems": False},
}
# The PyTorch reference: memory format of the network and inputs, bfloat16 autocast of the towers (loss in float32).
TORCH_VARIANTS = {
    "nchw": {"channels_last": False, "bfloat16": False},
    "channels_last": {"channels_last": True, "bfloat16": False},
    "nchw_bf16": {"channels_last": False, "bfloat16": True},
    "channels_last_bf16": {"channels_last": True, "bfloat16": True},
    "nchw_checkpoint": {"channels_last": False, "bfloat16": False, "checkpoint": LVSModel.remat_segments},
}
LEARNING_RATE = 1e-4


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


def model_settings(shape):
    """LVSModel settings of a SHAPES entry."""
    return {key: SHAPES[shape][key] for key in ("image_size", "sample_rate", "audio_seconds")}


class StockLayersLVSModel(LVSModel):
    """LVSModel whose towers are built from stock Keras layers: what our own layers gain is measured against it."""

    stock_layers = True


class NoRematLVSModel(LVSModel):
    """LVSModel that recomputes nothing in the backward pass, not even the stems (the fp32_no_remat variant)."""

    remat_stems = False


class RematAllLVSModel(LVSModel):
    """LVSModel whose remat recomputes every segment, layer4 too (the fp32_remat_all variant)."""

    remat_segments = None


def build_keras_model(shape, variant, seed=0):
    """A new LVSModel (random weights) under the variant's dtype policy; the global policy is restored after."""
    options = KERAS_VARIANTS[variant]
    keras.mixed_precision.set_global_policy(options["policy"])
    try:
        keras.utils.set_random_seed(seed)
        if options["stock_layers"]:
            return StockLayersLVSModel(**model_settings(shape))
        if not options.get("remat_stems", True):
            model = NoRematLVSModel(**model_settings(shape))
        elif "remat_segments" in options:
            model = RematAllLVSModel(remat=True, **model_settings(shape))
        else:
            model = build_model(image_weights="none", remat=options.get("remat", False), **model_settings(shape))
        for layer in model.batch_norm_layers():
            layer.fused = options["fused_batch_norm"]
        return model
    finally:
        keras.mixed_precision.set_global_policy("float32")


def batch_norm_text(options):
    """How a Keras variant builds its towers and what it recomputes, for the settings column."""
    if options["stock_layers"]:
        return "stock Keras layers (ZeroPadding2D layers, Conv2D, BatchNorm as separate ops)"
    text = "fused BatchNorm" if options["fused_batch_norm"] else "BatchNorm as separate ops"
    if options.get("remat"):
        return text + (", remat (stem and every block recomputed)" if "remat_segments" in options
                       else ", remat (stem and layer1-layer3 recomputed)")
    return text + (", nothing recomputed" if not options.get("remat_stems", True) else "")


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
    model.compile(optimizer=optimizer.TorchAdam(learning_rate=LEARNING_RATE), jit_compile=options["jit_compile"])
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
    network = TorchLVS(layer4_stride=1, checkpoint=options.get("checkpoint", 0)).train()
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
    checkpoint = (f", torch.utils.checkpoint on the first {options['checkpoint']} segments (stem, blocks)"
                  if options.get("checkpoint") else "")
    return f"{layout}, {precision}{checkpoint}, {torch.get_num_threads()} threads"


def time_steps(step, warmup, steps):
    """Run step() warmup times untimed-in-the-median (the first one separately timed), then steps timed times.

    Args:
        step: a callable that finishes its work before returning.
        warmup: untimed runs, at least 1; the first one (tracing, compilation, allocation) is reported apart.
        steps: timed runs, at least 1.

    Returns:
        {"first": seconds of the first run, "median", "min", "max": seconds of the timed runs, "times": all of them,
        "timed_start": time.time() when the timed runs began (what benchmarks/kernel_breakdown.py counts from)}.
    """
    if warmup < 1 or steps < 1:
        raise ValueError(f"warmup and steps must be at least 1, got {warmup} and {steps}")
    start = time.perf_counter()
    step()
    first = time.perf_counter() - start
    for _ in range(warmup - 1):
        step()
    times = []
    timed_start = time.time()
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return {"first": first, "median": statistics.median(times), "min": min(times), "max": max(times), "times": times,
            "timed_start": timed_start}


def empty_result(kind, framework, shape, variant, batch_size):
    """A result row with nothing measured yet (error None): what measure() fills in."""
    return {"kind": kind, "framework": framework, "shape": shape, "variant": variant, "batch_size": batch_size,
            "settings": "", "first": None, "median": None, "min": None, "max": None, "samples_per_second": None,
            "gflops_per_second": None, "timed_start": None, "error": None}


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
    result = empty_result(kind, framework, shape, variant, batch_size)
    try:
        step, result["settings"] = builders[(kind, framework)](shape, batch_size, variant)
        timing = time_steps(step, warmup, steps)
    except Exception as error:  # e.g. an XLA or bfloat16 kernel this build lacks: report it, keep going
        result["error"] = f"{type(error).__name__}: {str(error).splitlines()[0][:160] if str(error) else ''}"
        print(f"[{shape}] {framework} {variant} {kind}: FAILED {result['error']}", file=sys.stderr, flush=True)
        return result
    finally:
        keras.backend.clear_session()
    result.update({key: timing[key] for key in ("first", "median", "min", "max", "timed_start")})
    result["samples_per_second"] = batch_size / timing["median"]
    result["gflops_per_second"] = flops["train" if kind == "train" else "forward"] * result["samples_per_second"] / 1e9
    print(f"[{shape}] {framework} {variant} {kind}: {result['samples_per_second']:.3g} samples/s "
          f"(median step {timing['median']:.3f} s of {steps}, first {timing['first']:.2f} s, "
          f"load {load_average()})", file=sys.stderr, flush=True)
    return result


TIME_PROBE_PREFIX = "TIME_PROBE "  # the line of a --time_probe child that carries its result


def measure_isolated(kind, framework, shape, variant, batch_size, warmup, steps, script, extra=(), margin=0,
                     environment=None):
    """measure() in a fresh process: `python script --time_probe KIND:FRAMEWORK:VARIANT ...` (bench.py).

    Args:
        kind, framework, shape, variant, batch_size, warmup, steps: as measure() (the child counts the FLOPs).
        script: the path of bench.py.
        extra: more arguments for the child (thread counts).
        margin: bytes of the machine's memory kept for others: the child is stopped below half of it
            (bench_memory.run_guarded).
        environment: the child's environment (this process's when None).

    Returns:
        measure()'s result dict; when the child fails, the same dict with error saying how. With an environment,
        the child's stdout too, under "stdout" (what oneDNN's verbose log writes to).
    """
    command = [sys.executable, os.path.abspath(script), "--time_probe", f"{kind}:{framework}:{variant}",
               "--shapes", shape, "--batch_size", str(batch_size), "--warmup", str(warmup), "--steps", str(steps),
               *extra]
    returncode, stdout, stderr, stopped = bench_memory.run_guarded(command, margin, environment=environment)
    sys.stderr.write("".join(line + "\n" for line in stderr.splitlines() if line.startswith(f"[{shape}] ")))
    lines = [line for line in stdout.splitlines() if line.startswith(TIME_PROBE_PREFIX)]
    if not stopped and returncode == 0 and lines:
        result = json.loads(lines[-1][len(TIME_PROBE_PREFIX):])
        if environment is not None:
            result["stdout"] = stdout
        return result
    last = (stderr.strip().splitlines() or ["no output"])[-1]
    result = empty_result(kind, framework, shape, variant, batch_size)
    result["error"] = stopped or f"exit code {returncode}: {last[:160]}"
    print(f"[{shape}] {framework} {variant} {kind}: FAILED {result['error']}", file=sys.stderr, flush=True)
    return result
