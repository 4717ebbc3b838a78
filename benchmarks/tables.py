"""The tables of bench.py: docs/BENCHMARKS.md from its measurements (no measuring here).

bench.py measures (throughput, the input pipeline, peak memory) and hands its result dicts to render_report, which
writes the markdown: the machine, the settings, the tables, what each option gained and the targets met or not.

Usage (bench.py does this):
    from benchmarks.tables import render_report
    text = render_report(machine, context, matmul, flops, results, pipelines, memories)
"""

import os

from benchmarks import pipeline_speed

KERAS_DEFAULT = "fp32"  # what train.py and predict.py run without flags
TORCH_OFFICIAL = "nchw"  # the official layout, the reference every ratio is taken against
KERAS_EAGER = "fp32_eager"  # inference only: model(inputs) called eagerly (predict.py wraps it in tf.function)

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



def precision(variant):
    """'bfloat16' for a bf16 variant of either framework, else 'float32'."""
    return "bfloat16" if "bf16" in variant else "float32"


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
                if not (ours_matched and reference_matched):
                    continue
                if kind == "train" and dtype == "bfloat16":
                    # The mixed-precision target: train.py --mixed_precision at least as fast as PyTorch's fastest
                    # bfloat16 training (channels_last + autocast), >= 1.0x.
                    mixed = find(results, kind=kind, shape=shape, framework="keras", variant="bf16")
                    lines.append(f"  - **train, the bfloat16 target: ours `--mixed_precision` (`bf16`) / PyTorch's "
                                 f"fastest bfloat16 (`{variant_name(reference_matched)}`): "
                                 f"{verdict(mixed and speed(mixed), speed(reference_matched), 1.0)}**")
                    continue
                lines.append(f"  - {kind}, {dtype} only (`{variant_name(ours_matched)}` vs "
                             f"`{variant_name(reference_matched)}`): "
                             f"{verdict(speed(ours_matched), speed(reference_matched), target)}")
        pipeline = find(pipelines, shape=shape)
        if pipeline:
            lines.append(f"  - input pipeline / train step's consumption (fastest train variant of ours): "
                         f"{verdict(pipeline['samples_per_second'], speed(ours_train), 3)}")
    return lines


def successful(memories, **conditions):
    """The memory results without an error matching every condition, by batch."""
    return sorted((memory for memory in memories if not memory["error"]
                   and all(memory[key] == value for key, value in conditions.items())),
                  key=lambda memory: memory["batch_size"])


def per_sample_memory(memories, framework, variant):
    """(bytes per sample, fixed bytes above the imports) of a variant: the line through its two largest batches.

    Returns:
        None unless two batches of the variant ran.
    """
    runs = successful(memories, framework=framework, variant=variant)
    if len(runs) < 2:
        return None
    small, large = runs[-2], runs[-1]
    slope = (large["peak"] - small["peak"]) / (large["batch_size"] - small["batch_size"])
    fixed = (large["peak"] - large["after_imports"]) - slope * large["batch_size"]
    return slope, fixed


def framework_name(framework):
    return "ours (Keras)" if framework == "keras" else "PyTorch"


def memory_rows(memories):
    """Rows of the memory-versus-batch table."""
    rows = []
    for memory in sorted(memories, key=lambda memory: (memory["framework"] != "keras", memory["variant"],
                                                        memory["batch_size"])):
        cells = [memory["shape"], framework_name(memory["framework"]), memory["variant"], memory["batch_size"]]
        if memory["error"]:
            rows.append(cells + [memory["error"], "", "", "", "", ""])
            continue
        above = memory["peak"] - memory["after_imports"]
        rows.append(cells + [gibibytes(memory["after_imports"]), gibibytes(memory["peak"]), gibibytes(above),
                             f"{above / memory['batch_size'] / 2**20:.0f}", f"{memory['median_step']:.2f}",
                             f"{memory['median_step'] / memory['batch_size']:.3f}"])
    return rows


def fit_rows(memories, capacities=(24, 40, 80)):
    """Per variant: memory per sample, fixed part, and the batch that fits in each capacity (GB) by arithmetic."""
    rows = []
    for framework, variant in dict.fromkeys((memory["framework"], memory["variant"]) for memory in memories):
        line = per_sample_memory(memories, framework, variant)
        if line is None:
            continue
        slope, fixed = line
        if slope <= 0:  # the batches differ too little for the noise of the peaks
            fits = ["n/a"] * len(capacities)
        else:
            fits = [str(max(int((capacity * 1e9 - fixed) // slope), 0)) for capacity in capacities]
        rows.append([framework_name(framework), variant, f"{slope / 2**20:.0f}", gibibytes(fixed), *fits])
    return rows


def memory_summary(memories):
    """The memory targets, met or not: batch-16 peak against PyTorch's, --remat at 256 under 20 GiB and its time."""
    lines = []
    smallest = min(memory["batch_size"] for memory in memories)
    ours = find(successful(memories), framework="keras", variant=KERAS_DEFAULT, batch_size=smallest)
    reference = find(successful(memories), framework="torch", variant=TORCH_OFFICIAL, batch_size=smallest)
    if ours and reference:
        ratio = ours["peak"] / reference["peak"]
        above = (ours["peak"] - ours["after_imports"]) / (reference["peak"] - reference["after_imports"])
        lines.append(f"- **peak RSS at batch {smallest}, ours without flags (`{KERAS_DEFAULT}`) / PyTorch "
                     f"`{TORCH_OFFICIAL}` float32: {ratio:.2f}x, target <= 1.00x: {'met' if ratio <= 1 else 'NOT met'}"
                     f"** (above the imports: {above:.2f}x)")
    remat_variants = [variant for variant in dict.fromkeys(memory["variant"] for memory in memories
                                                             if memory["framework"] == "keras")
                      if variant.partition("@")[0] == "fp32_remat"]
    for framework, variant, baseline in ([("keras", variant, KERAS_DEFAULT) for variant in remat_variants]
                                         + [("torch", "nchw_checkpoint", TORCH_OFFICIAL)]):
        runs = successful(memories, framework=framework, variant=variant)
        if not runs:
            continue
        largest = runs[-1]
        text = (f"- {framework_name(framework)} `{variant}` at batch {largest['batch_size']}: peak RSS "
                f"{gibibytes(largest['peak'])} GiB")
        if framework == "keras" and largest["batch_size"] >= 256:
            met = largest["peak"] < 20 * 2**30
            text = f"**{text[2:]}, target < 20 GiB: {'met' if met else 'NOT met'}**"
            text = "- " + text
        plain = successful(memories, framework=framework, variant=baseline)
        if plain:
            reference_run = plain[-1]
            ratio = (largest["median_step"] / largest["batch_size"]) / (
                reference_run["median_step"] / reference_run["batch_size"])
            text += (f"; time per sample / `{baseline}`'s at batch {reference_run['batch_size']} (the largest of it "
                     f"that ran): {ratio:.2f}x" + (", target <= 1.35x: " + ("met" if ratio <= 1.35 else "NOT met")
                                                   if framework == "keras" else ""))
        lines.append(text)
    missing = [memory for memory in memories if memory["error"]]
    if missing:
        lines.append("- not run or failed: " + "; ".join(f"{memory['framework']}:{memory['variant']} batch "
                                                         f"{memory['batch_size']}" for memory in missing))
    return lines


def breakdown_parts(memories, analytic):
    """Where the memory goes: measured differences between variants, and sizes counted from the shapes."""
    batches = sorted({memory["batch_size"] for memory in memories})
    rows = []
    for label, first, second in (("recomputing the stems saves (fp32_no_remat - fp32)", "fp32_no_remat", "fp32"),
                                 ("--remat saves (fp32 - fp32_remat)", "fp32", "fp32_remat")):
        cells = []
        for batch in batches:
            with_it = find(successful(memories), framework="keras", variant=second, batch_size=batch)
            without = find(successful(memories), framework="keras", variant=first, batch_size=batch)
            cells.append(gibibytes(without["peak"] - with_it["peak"]) if with_it and without else "n/a")
        rows.append(["measured: " + label, *cells])
    for framework, variant in (("keras", KERAS_DEFAULT), ("torch", TORCH_OFFICIAL)):
        line = per_sample_memory(memories, framework, variant)
        rows.append([f"measured: {framework_name(framework)} `{variant}`, fixed part (weights, optimizer, "
                     f"workspaces)", *([gibibytes(line[1])] * len(batches) if line else ["n/a"] * len(batches))])
        rows.append([f"measured: {framework_name(framework)} `{variant}`, per-sample part x batch",
                     *([gibibytes(line[0] * batch) for batch in batches] if line else ["n/a"] * len(batches))])
    for label, sizes in analytic:
        rows.append(["counted: " + label, *[gibibytes(sizes.get(batch)) for batch in batches]])
    return ["### Where the memory goes\n",
            "Measured rows are differences of peaks in the table above (or the line through a variant's two largest "
            "batches); counted rows are sizes from the shapes. The tf.data pipeline is not in these runs: in "
            "train.py it adds its prefetch buffer (preprocessing.make_dataset prefetches with tf.data.AUTOTUNE, "
            "typically one or two batches the size of the input-batch row, plus the decoded items in flight).\n",
            markdown_table(["GiB at batch", *[str(batch) for batch in batches]], rows)]


def memory_parts(memories, context):
    """The memory sections of the report: the table per batch, what fits where, the breakdown, the targets."""
    parts = [
        f"## Peak memory of a training run, by batch (CPU class: {context['cpu_class']})\n",
        "Each row is its own subprocess (`bench.py --memory_probe`), one at a time, that imports PyTorch and "
        "TensorFlow both, builds one model and runs 1 warm-up + 2 timed train steps (1 from batch 64 up) on random "
        "inputs already in memory (no tf.data pipeline); peak = the kernel's RSS high-water mark (VmHWM, reset "
        "after the imports through /proc/self/clear_refs, so it is the training run's own). A run starts only if "
        "its peak, extrapolated from the same variant's smaller batches, leaves "
        f"{context['memory_margin']:g} GiB available to the other processes of the machine, and is stopped if the "
        "available memory falls below half of that. Load average during these runs: "
        f"{context.get('memory_load_start', 'n/a')} at start, {context.get('memory_load_end', 'n/a')} at end. "
        "Step times come from these runs (with another process using the cores they are only indicative; "
        "ratios between rows of one run are what to read).\n",
        "Variants: `fp32` = train.py without flags (the stems, conv1 + bn1 + relu + maxpool, recomputed in the "
        "backward pass), `fp32_no_remat` = nothing recomputed (what the towers kept before), `fp32_remat` = "
        "train.py --remat (the BasicBlocks of layer1 to layer3 recomputed with keras.remat, the stems recomputed in "
        "chunks of 32 samples, forward and backward: training/remat.py), `fp32_remat@16` (if asked for) = "
        "it with TensorFlow's CPU allocator capped at 16 GiB (TF_MKL_ALLOC_MAX_BYTES, benchmarks/host_memory.py: without a cap "
        "it grows in doubling regions and keeps them, so its peak runs above the tensors in use at large batches, by "
        "an amount that varies between runs; a cap near the need can crash TensorFlow instead of raising, so "
        "train.py does not offer it), "
        "`fp32_remat_all` = layer4's blocks recomputed too, `nchw` = the PyTorch reference, `nchw_checkpoint` = it "
        "with torch.utils.checkpoint on the same segments as `fp32_remat` (the stem, layer1 to layer3).\n",
        markdown_table(["shape", "framework", "variant", "batch", "RSS after imports (GiB)", "peak RSS (GiB)",
                        "peak - imports (GiB)", "per sample (MiB)", "median step (s)", "s per sample"],
                       memory_rows(memories)),
    ]
    fits = fit_rows(memories)
    if fits:
        parts += ["### What fits where (arithmetic, no GPU here)\n",
                  "Memory per sample = the growth of the peak between the two largest batches of a variant; fixed = "
                  "the peak above the imports less that times the batch (weights, Adam's moments, gradients, "
                  "workspaces). The batch that fits a card of N GB = (N GB - fixed) / per sample, by arithmetic from "
                  "these CPU runs: a GPU framework keeps its own workspaces and allocator, so leave headroom.\n",
                  markdown_table(["framework", "variant", "per sample (MiB)", "fixed (GiB)", "batch in 24 GB",
                                  "batch in 40 GB", "batch in 80 GB"], fits)]
    parts += breakdown_parts(memories, context.get("analytic_memory", []))
    parts += ["### Memory targets\n", "\n".join(memory_summary(memories)) + "\n"]
    return parts


def replace_section(document, section, heading):
    """A markdown document with the section that starts with `heading` replaced by `section`.

    Args:
        document: the markdown text.
        section: the new section, its first line a "## " heading.
        heading: the start of the heading line to replace (e.g. "## Input pipeline"); the old section runs to the
            next "## " heading or the end.

    Returns:
        The new text: the section in the old one's place, or appended at the end when there was none. Every other
        line is kept as it was.
    """
    lines = document.splitlines()
    start = next((index for index, line in enumerate(lines) if line.startswith(heading)), None)
    if start is None:
        return document.rstrip("\n") + "\n\n" + section.strip("\n") + "\n"
    end = next((index for index in range(start + 1, len(lines)) if lines[index].startswith("## ")), len(lines))
    kept_after = "\n".join(lines[end:])
    return "\n".join(lines[:start] + section.strip("\n").splitlines()) + "\n" + ("\n" + kept_after + "\n"
                                                                                 if kept_after else "")


def render_report(machine, context, matmul, flops, results, pipeline, memories):
    """The whole docs/BENCHMARKS.md text.

    Args:
        machine: machine_description().
        context: dict with command, date, load_start, load_end, threads, tf_threads, steps, warmup (text), cpu_class.
        matmul: matmul_gflops() result (or None).
        flops: {shape: train_step_flops() plus "frame" and "spectrogram", their sizes as text}.
        results: measure() results (train and inference).
        pipeline: pipeline_speed.measure() result, or None.
        memories: measure_memory() results.

    Returns:
        Markdown text.
    """
    in_class = f" (CPU class: {context['cpu_class']})"
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
        + ("its defaults (intra-op and inter-op 0: one thread per core)."
           if not context["tf_threads"] else f"intra-op and inter-op parallelism set to {context['tf_threads']}.")
        + f" oneDNN: {machine.get('oneDNN (TensorFlow)', 'n/a')}."
        + f" OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}. PyTorch's OpenMP threads slow down "
        "sharply (up to 20x seen) when another process takes a core, TensorFlow's thread pool far less: compare "
        "frameworks only in a quiet run.",
        "- Ours: `model.LVSModel` (random weights), `model.compile(optimizer=optimizer.TorchAdam(1e-4), jit_compile=...)` (train.py's optimizer) and "
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
        "- Each training and inference row is timed in a fresh process of its own (`bench.py --time_probe`), as "
        "train.py and predict.py run one model per process: a row timed after others in one process ran up to 10 % "
        "slower (TensorFlow's allocator, thread pools and functions left by the rows before it).",
        f"- Sections run: {', '.join(context['sections'])} (the others were skipped: `--only` / `--skip_*`).",
        *([f"- bfloat16 variants left out: {context['bfloat16_left_out']}."] if context.get("bfloat16_left_out")
          else []),
        "- 'min - max step' is the spread of the timed steps: a wide one means other work disturbed the run.",
        "- 'vs PyTorch nchw' divides a row's samples/s by PyTorch's `nchw` float32 row at the same shape and kind.",
        "",
        f"## FLOPs and matmul peak{in_class}\n",
        "FLOPs are counted analytically from the conv shapes (bench.layer_flops over a fixed-shape build of each "
        "tower): a convolution costs 2 x output pixels x output channels x kernel area x input channels. A train "
        "step is 3 x the forward (the backward pass is two convolutions of the forward's cost each: input and "
        "kernel gradients) less each tower's first-conv input gradient; BatchNorm, ReLU, pooling, the loss and "
        "Adam are not counted (< 1 %). GFLOP/s = FLOPs per sample x samples/s; '% matmul' is against TF's matmul "
        "below in the row's precision (float32, or bfloat16 for the bf16 variants).\n",
    ]
    flop_rows = []
    for shape, counts in flops.items():
        flop_rows.append([shape, counts["frame"], counts["spectrogram"], f"{counts['forward'] / 1e9:.2f}",
                          f"{counts['train'] / 1e9:.2f}"])
    parts.append(markdown_table(
        ["shape", "frame", "spectrogram", "forward GFLOP / sample", "train step GFLOP / sample"], flop_rows))
    if matmul:
        parts.append(markdown_table(["matmul (" + context["matmul_size"] + ")", "GFLOP/s"],
                                    [[key, number(value)] for key, value in matmul.items()]))
    headers = ["shape", "framework", "variant", "batch", "settings", "first step (s)", "compile (s)",
               "median step (s)", "min - max step (s)", "samples/s", "vs PyTorch nchw", "GFLOP/s", "% matmul"]
    train_rows = throughput_rows(results, "train", matmul)
    if train_rows:
        parts += [f"## Training throughput{in_class}\n", markdown_table(headers, train_rows)]
    inference_rows = throughput_rows(results, "inference", matmul)
    if inference_rows:
        parts += [f"## Inference throughput (predict's forward){in_class}\n", markdown_table(headers, inference_rows)]
    if pipeline:
        parts.append(pipeline_speed.format_section(pipeline, context["command"]))
    if memories:
        parts += memory_parts(memories, context)
    option_table = option_rows(results)
    if option_table:
        parts += [f"## What each option gained or lost{in_class}\n",
                  "Ratio of samples/s with the option to without it (> 1: the option is faster).\n",
                  markdown_table(["shape", "option", "variants", "train", "inference"], option_table)]
    if results:
        pipelines = []  # what the pipeline gives on all cores, beside what the train step consumes
        if pipeline:
            cores = max(row["cores"] for row in pipeline["rows"])
            pipelines.append({"shape": "paper", "samples_per_second": pipeline_speed.figure(pipeline, "ours", cores)})
        parts += [f"## Against the targets{in_class}\n", "\n".join(summary_lines(results, pipelines)) + "\n"]
    return "\n".join(parts)
