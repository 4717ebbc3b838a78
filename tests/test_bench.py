"""bench.py, benchmarks/tables.py, benchmarks/memory.py, benchmarks/kernel_breakdown.py: FLOP counts, the tables, the
CLI, the memory guard, the oneDNN log's parsing, a --quick run.

No timing is asserted: only that the numbers are computed, tabulated and written.
"""

import os
import subprocess
import sys
from pathlib import Path

import keras
import pytest
import torch

import bench
from benchmarks import kernel_breakdown
from benchmarks import memory as bench_memory
from benchmarks import tables as bench_report
from pipeline import preprocessing
from benchmarks.torch_reference import TorchLVS

PROJECT = Path(__file__).resolve().parents[1]


def torch_conv_flops(module, inputs):
    """2 x multiply-adds of every torch Conv2d in module for one forward of inputs, per sample (forward hooks)."""
    counts = []

    def hook(layer, layer_inputs, output):
        kernel_height, kernel_width = layer.kernel_size
        per_output = kernel_height * kernel_width * layer.in_channels // layer.groups
        counts.append(2 * output[0].numel() * per_output)  # output[0]: C x h x w of the first sample

    handles = [layer.register_forward_hook(hook) for layer in module.modules() if isinstance(layer, torch.nn.Conv2d)]
    with torch.no_grad():
        module(inputs)
    for handle in handles:
        handle.remove()
    return counts


def test_layer_flops_matches_a_hand_count():
    inputs = keras.Input((10, 8, 3))
    outputs = keras.layers.Conv2D(4, 3, padding="valid")(inputs)  # 8 x 6 x 4
    outputs = keras.layers.Conv2D(6, (1, 3), strides=2, padding="same", use_bias=False)(outputs)  # 4 x 3 x 6
    outputs = keras.layers.Conv2D(6, 3, padding="same", groups=3)(outputs)  # 4 x 3 x 6, 2 input channels per group
    outputs = keras.layers.Dense(5)(keras.layers.Flatten()(outputs))  # 72 -> 5
    counts = [flops for _, flops in bench.layer_flops(keras.Model(inputs, outputs))]
    assert counts == [2 * 8 * 6 * 4 * 3 * 3 * 3, 2 * 4 * 3 * 6 * 1 * 3 * 4, 2 * 4 * 3 * 6 * 3 * 3 * 2, 2 * 72 * 5]


def test_layer_flops_refuses_unknown_sizes():
    inputs = keras.Input((None, None, 3))
    with pytest.raises(ValueError, match="fixed input shape"):
        bench.layer_flops(keras.Model(inputs, keras.layers.Conv2D(2, 3)(inputs)))


def test_resnet18_count_is_the_published_one():
    # He et al. (2016), Table 1: ResNet-18 at 224 x 224 is 1.8e9 multiply-adds.
    counts = bench.tower_flops(3, 2, 224, 224)
    assert sum(flops for _, flops in counts) / 2 == pytest.approx(1.8e9, rel=0.01)
    assert counts[0] == ("conv1", 2 * 112 * 112 * 64 * 7 * 7 * 3)


@pytest.mark.parametrize("image_size,width", [(64, 15), (96, 40)])
def test_tower_flops_equal_the_pytorch_towers(image_size, width):
    network = TorchLVS(layer4_stride=1)
    vision = torch_conv_flops(network.imgnet, torch.zeros(1, 3, image_size, image_size))
    audio = torch_conv_flops(network.audnet, torch.zeros(1, 1, 257, width))
    assert [flops for _, flops in bench.tower_flops(3, 1, image_size, image_size)] == vision
    assert [flops for _, flops in bench.tower_flops(1, 1, 257, width)] == audio


def test_train_step_flops_is_three_forwards_less_the_first_input_gradients():
    flops = bench.train_step_flops(image_size=64, sample_rate=8000, audio_seconds=0.5)
    vision = bench.tower_flops(3, 1, 64, 64)
    audio = bench.tower_flops(1, 1, 257, preprocessing.spectrogram_width(8000, 0.5))
    forward = sum(flops for _, flops in vision + audio)
    assert flops == {"forward": forward, "train": 3 * forward - vision[0][1] - audio[0][1]}


def test_markdown_table_renders_every_row():
    table = bench_report.markdown_table(["shape", "samples/s"], [["paper", 1.5], ["demo", "a|b"]])
    assert table.splitlines() == ["| shape | samples/s |", "|---|---|", "| paper | 1.5 |", "| demo | a\\|b |"]
    with pytest.raises(ValueError, match="2 columns"):
        bench_report.markdown_table(["a", "b"], [["only one"]])


def test_numbers_and_ratios_are_formatted():
    assert bench_report.number(1.23456) == "1.23"
    assert bench_report.number(12345.6) == "12,346"
    assert bench_report.number(None) == "n/a"
    assert bench_report.ratio_text(3.0, 2.0) == "1.50x"
    assert bench_report.ratio_text(None, 2.0) == bench_report.ratio_text(3.0, None) == "n/a"


def test_option_rows_compare_variants_that_differ_by_one_option():
    def result(kind, framework, variant, speed):
        return {"kind": kind, "framework": framework, "variant": variant, "shape": "demo", "samples_per_second": speed}

    results = [result("train", "keras", "fp32", 10.0), result("train", "keras", "fp32_xla", 15.0),
               result("inference", "keras", "fp32", 40.0), result("inference", "keras", "fp32_xla", 20.0),
               result("train", "keras", "fp32_keras_bn", 8.0), result("train", "torch", "nchw", 8.0)]
    rows = bench_report.option_rows(results)
    assert rows == [["demo", "fused BatchNorm kernel, float32", "fp32 vs fp32_keras_bn", "1.25x", "n/a"],
                    ["demo", "XLA (jit_compile=True), float32", "fp32_xla vs fp32", "1.50x", "0.50x"]]
    assert bench_report.best(results, kind="train", framework="keras")["variant"] == "fp32_xla"


def test_summary_compares_fastest_and_matched_precisions():
    def result(kind, framework, variant, speed):
        return {"kind": kind, "framework": framework, "variant": variant, "shape": "paper", "samples_per_second": speed}

    results = [result("train", "keras", "fp32", 2.0), result("train", "keras", "bf16", 3.0),
               result("train", "torch", "nchw", 2.0), result("train", "torch", "channels_last_bf16", 4.0)]
    pipelines = [{"shape": "paper", "samples_per_second": 12.0}]
    text = "\n".join(bench_report.summary_lines(results, pipelines))
    assert "the target: ours as run without flags (`fp32`) / the PyTorch reference (`nchw` float32, the official " \
           "layout): 1.00x, target >= 1.2x: NOT met" in text
    assert "fastest of each (`bf16` vs `channels_last_bf16`): 0.75x, target >= 1.2x: NOT met" in text
    assert "official layout (`nchw` float32): 1.50x, target >= 1.2x: met" in text
    assert "float32 only (`fp32` vs `nchw`): 1.00x" in text
    assert "the bfloat16 target: ours `--mixed_precision` (`bf16`) / PyTorch's fastest bfloat16 " \
           "(`channels_last_bf16`): 0.75x, target >= 1.0x: NOT met" in text
    assert "consumption (fastest train variant of ours): 4.00x, target >= 3x: met" in text
    assert "inference" not in text  # nothing measured, nothing claimed


@pytest.mark.parametrize("argv,message", [
    (["--shapes", "huge"], "unknown huge"),
    (["--keras_variants", "fp16"], "unknown fp16"),
    (["--steps", "0"], "--steps must be a positive integer"),
    (["--memory_probe", "jax:fp32"], "must be keras:VARIANT, keras:VARIANT@GIB or torch:VARIANT"),
    (["--memory_variants", "keras:fp64"], "must be keras:VARIANT, keras:VARIANT@GIB or torch:VARIANT, got keras:fp64"),
    (["--memory_variants", "torch:nchw@16"], "got torch:nchw@16"),
    (["--memory_variants", "keras:fp32_remat@lots"], "the cap after @ must be a number of GiB"),
    (["--memory_batches", "16,x"], "--memory_batches: not a number"),
    (["--memory_batches", "0"], "--memory_batches must be positive"),
    (["--only", "speed"], "--only: unknown speed"),
    (["--time_probe", "train:keras:fp64"], "--time_probe must be train|inference:keras|torch:VARIANT"),
    (["--time_probe", "train:keras:fp32_eager"], "got train:keras:fp32_eager"),
    (["--time_probe", "fit:torch:nchw"], "got fit:torch:nchw"),
])
def test_command_line_mistakes_end_in_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as stopped:
        bench.parse_arguments(argv)
    assert stopped.value.code == 2
    assert message in capsys.readouterr().err


def test_quick_defaults():
    arguments = bench.parse_arguments(["--quick", "--shapes", "demo,paper", "--output", "/tmp/x.md"])
    assert arguments.shapes == ["demo", "paper"]
    assert (arguments.warmup, arguments.pipeline_batches, arguments.matmul_size) == (1, 2, 512)
    assert bench.steps_for(arguments, "paper") == 2
    assert arguments.memory_shape == "paper" and arguments.memory_batches == [16, 64, 256]
    assert bench.steps_for(bench.parse_arguments([]), "paper") == 5
    only = bench.parse_arguments(["--only", "memory,matmul"])
    assert (only.skip_train, only.skip_inference, only.skip_pipeline, only.skip_memory, only.skip_matmul,
            only.skip_video) == (True, True, True, False, False, True)
    assert not bench.parse_arguments(["--only", "video"]).skip_video
    assert bench.parse_arguments(["--batch_size", "8"]).memory_batches == [8]


def test_a_row_whose_process_fails_says_how(tmp_path):
    # measure_isolated runs a real child; this one dies the way a kernel crash or an OOM kill would end it.
    script = tmp_path / "dies.py"
    script.write_text("import sys\nprint('[demo] starting', file=sys.stderr)\nprint('no kernel', file=sys.stderr)\n"
                      "sys.exit(3)\n")
    result = bench.measure_isolated("train", "keras", "demo", "bf16", 2, 1, 1, str(script))
    assert result["error"] == "exit code 3: no kernel"
    assert (result["variant"], result["samples_per_second"], result["median"]) == ("bf16", None, None)


def test_quick_run_writes_the_report(tmp_path):
    output = tmp_path / "B.md"
    command = [sys.executable, str(PROJECT / "bench.py"), "--quick", "--shapes", "demo", "--steps", "1",
               "--warmup", "1", "--batch_size", "2", "--keras_variants", "fp32", "--torch_variants", "nchw",
               "--pipeline_batches", "1", "--matmul_size", "256", "--skip_memory", "--skip_video", "--output", str(output)]
    completed = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300,
                               env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert completed.returncode == 0, completed.stderr[-2000:]
    report = output.read_text()
    assert bench.cpu_features.cpu_model() in report and "| cores |" in report and "| RAM |" in report
    assert f"| tensorflow | {bench.tf.__version__} |" in report and f"| torch | {torch.__version__} |" in report
    assert "--keras_variants fp32 --torch_variants nchw" in report  # the exact command
    rows = [line.split(" | ") for line in report.splitlines() if line.startswith("| demo |")]
    kinds = {(row[1], row[2]) for row in rows}
    assert {("ours (Keras)", "fp32"), ("PyTorch", "nchw"), ("ours (Keras)", "fp32_eager")} <= kinds
    assert "failed" not in report.lower() and "FAILED" not in completed.stderr
    train_row = next(row for row in rows if row[1] == "ours (Keras)" and row[2] == "fp32")
    assert float(train_row[9]) > 0  # samples/s
    assert "## Input pipeline" not in report  # measured at the paper's settings only (tests/test_pipeline_speed.py)
    assert f"## Training throughput (CPU class: {bench.cpu_features.cpu_class(bench.cpu_features.cpu_flags())})" \
        in report  # every table names the CPU class it was measured on
    assert "## Against the targets" in report and "## Peak memory" not in report
    assert report.strip() in completed.stdout  # the same tables on stdout
    assert "timed in a fresh process of its own" in report
    # The child's progress line, passed on once per child: the throughput row's and the kernel breakdown's.
    assert completed.stderr.count("[demo] keras fp32 train:") == 2
    # The kernel section (benchmarks/kernel_breakdown.py): both steps' oneDNN log, the timed step alone counted. Each
    # tower has 20 convolutions (the stem, 16 in the blocks, 3 shortcuts): 40 weight gradients a step for both; the
    # warm-up step counted too would double them.
    assert "## Where the train step's time goes (oneDNN kernels, demo shapes, batch 2" in report
    kernel_rows = {row.split(" | ")[0].lstrip("| "): row.split(" | ")[1:] for row in report.splitlines()
                   if row.startswith("| convolution ") and len(row.split(" | ")) == 6}  # the table by kind
    # With oneDNN off (TF_ENABLE_ONEDNN_OPTS=0) TensorFlow runs its own kernels, which the log does not see.
    ours_on_onednn = bench.cpu_features.onednn_expected(bench.cpu_features.cpu_flags(), os.environ)
    assert kernel_rows["convolution backward_weights"][0] == ("40" if ours_on_onednn else "0")  # ours: calls
    assert kernel_rows["convolution backward_weights"][2] == "40"  # PyTorch: calls
    assert float(kernel_rows["convolution forward_training"][3]) > 0  # PyTorch: ms
    assert ("ours: no convolution ran on oneDNN" in report) is not ours_on_onednn


def test_memory_probe_reports_the_training_runs_own_peak_and_skips_what_would_not_fit():
    # Real probe subprocesses. A margin of 1.5 x the available memory never stops the first run (the guard stops at
    # half the margin) but leaves no room for the second: its estimate plus the margin exceeds what is available.
    margin = 1.5 * bench_memory.psutil.virtual_memory().available
    results = bench_memory.measure_memory(["torch:nchw"], "demo", [4, 2], 1, 1, threads=1, margin=margin,
                                          script=bench.__file__)
    assert [memory["batch_size"] for memory in results] == [2, 4]  # smallest first
    memory = results[0]
    assert memory["error"] is None, results
    assert memory["framework"] == "torch" and memory["variant"] == "nchw"
    assert memory["peak"] >= memory["after_build"] > memory["after_imports"] > 0
    assert memory["peak_source"] in ("VmHWM", "ru_maxrss") and memory["median_step"] > 0
    assert "NCHW" in memory["settings"]
    assert results[1]["error"].startswith("not run: needs about") and "peak" not in results[1]


def test_peak_estimates_extrapolate_the_smaller_batches():
    gib = bench_memory.GIB
    runs = [{"batch_size": 16, "after_imports": 1 * gib, "after_build": 1.5 * gib, "peak": 3 * gib}]
    assert bench_memory.estimate_peak([], 16) is None
    assert bench_memory.estimate_peak(runs, 64) == 1.5 * gib + 1.5 * gib * 4  # one run: its growth after the build
    runs.append({"batch_size": 64, "after_imports": 1 * gib, "after_build": 1.5 * gib, "peak": 6 * gib})
    assert bench_memory.estimate_peak(runs, 256) == 6 * gib + (256 - 64) * gib / 16  # 1/16 GiB per sample
    assert bench_memory.estimate_peak(runs, 32) == 1.5 * gib + 1.5 * gib * 2  # only the batches below count


def test_a_capped_variant_is_parsed_and_its_estimate_bounded_by_the_cap():
    """keras:VARIANT@GIB caps TensorFlow's CPU allocator at GIB GiB: it cannot hold more, so neither can the guess."""
    assert bench_memory.parse_specification("keras:fp32_remat@16") == ("keras", "fp32_remat", 16.0)
    assert bench_memory.parse_specification("torch:nchw") == ("torch", "nchw", None)
    with pytest.raises(ValueError, match="number of GiB"):
        bench_memory.parse_specification("keras:fp32_remat@lots")
    gib = bench_memory.GIB
    runs = [{"batch_size": 16, "after_imports": 1 * gib, "after_build": 1.5 * gib, "peak": 3 * gib},
            {"batch_size": 64, "after_imports": 1 * gib, "after_build": 1.5 * gib, "peak": 9 * gib}]
    assert bench_memory.estimate_peak(runs, 256) == 9 * gib + 192 * 6 * gib / 48  # 33 GiB by the line
    assert bench_memory.estimate_peak(runs, 256, cap=16 * gib) == 1.5 * gib + 16 * gib  # the build + the cap
    assert bench_memory.estimate_peak(runs, 128, cap=64 * gib) == 9 * gib + 64 * 6 * gib / 48  # the line is lower


def test_host_memory_limit_refuses_once_tensorflow_has_run():
    """The cap is read when TensorFlow creates its allocator: setting it later would be silently ignored."""
    import tensorflow as tf

    from benchmarks import host_memory

    tf.constant(1.0) + 1.0  # this process's allocator now exists
    with pytest.raises(ValueError, match="before the first TensorFlow operation"):
        host_memory.limit(8)
    with pytest.raises(ValueError, match="positive number of GiB"):
        host_memory.limit(0)


def test_the_guard_stops_a_run_when_memory_runs_short():
    # A margin twice the machine's memory: the available memory is always below half of it, so the guard stops the
    # child (which would sleep for a minute) at its first look.
    margin = 4 * bench_memory.psutil.virtual_memory().total
    started = bench.time.perf_counter()
    returncode, _, _, reason = bench_memory.run_guarded([sys.executable, "-c", "import time; time.sleep(60)"], margin)
    assert reason.startswith("stopped: the machine's available memory fell to") and returncode != 0
    assert bench.time.perf_counter() - started < 30


def memory_result(framework, variant, batch, peak_gib, step, imports_gib=1.0):
    gib = bench_memory.GIB
    return {"framework": framework, "variant": variant, "shape": "paper", "batch_size": batch, "error": None,
            "after_imports": imports_gib * gib, "peak": peak_gib * gib, "median_step": step}


def test_memory_tables_and_targets():
    memories = [memory_result("keras", "fp32", 16, 3.0, 8.0), memory_result("keras", "fp32", 64, 9.0, 32.0),
                memory_result("torch", "nchw", 16, 3.2, 10.0),
                memory_result("keras", "fp32_remat", 16, 2.0, 10.0), memory_result("keras", "fp32_remat", 64, 3.5, 40.0),
                memory_result("keras", "fp32_remat", 256, 9.5, 176.0),
                memory_result("keras", "fp32_remat@16", 256, 20.5, 120.0),
                {**memory_result("torch", "nchw", 256, 0, 0), "error": "not run: needs about 40 GiB"}]
    slope, fixed = bench_report.per_sample_memory(memories, "keras", "fp32")
    assert slope == pytest.approx(6 * bench_memory.GIB / 48)  # 128 MiB per sample
    assert fixed == pytest.approx(8 * bench_memory.GIB - 64 * slope)  # 0 GiB above the imports
    assert bench_report.per_sample_memory(memories, "torch", "nchw") is None  # one batch only
    fits = bench_report.fit_rows(memories)
    assert fits[0][:4] == ["ours (Keras)", "fp32", "128", "0.00"]
    assert fits[0][4] == str(int(24e9 // slope))
    text = "\n".join(bench_report.memory_summary(memories))
    assert "ours without flags (`fp32`) / PyTorch `nchw` float32: 0.94x, target <= 1.00x: met" in text
    assert "`fp32_remat` at batch 256: peak RSS 9.50 GiB, target < 20 GiB: met" in text
    # 176 s / 256 samples against fp32's 32 s / 64 at its largest batch: 0.6875 / 0.5 = 1.375
    assert "the largest of it that ran): 1.38x, target <= 1.35x: NOT met" in text
    assert "`fp32_remat@16` at batch 256: peak RSS 20.50 GiB, target < 20 GiB: NOT met" in text
    assert "not run or failed: torch:nchw batch 256" in text
    rows = bench_report.memory_rows(memories)
    assert rows[0][:4] == ["paper", "ours (Keras)", "fp32", 16] and rows[0][6] == "2.00" and rows[0][7] == "128"
    assert any(row[4] == "not run: needs about 40 GiB" for row in rows)


def test_others_share_subtracts_this_process():
    cores = len(os.sched_getaffinity(0))
    # The machine got 4 CPU seconds busier in 2 s, 1 of them ours: others used 3 of 2 x cores CPU seconds.
    assert bench.others_share((10.0, 5.0), (14.0, 6.0), 2.0) == pytest.approx(3.0 / (2.0 * cores))
    assert bench.others_share((10.0, 5.0), (11.0, 6.5), 2.0) == 0.0  # clock skew never gives a negative share


def test_video_section_times_predict_video_and_the_pytorch_forward(tmp_path):
    # bench.py --only video: a real 10 s clip through `predict.py --video` (benchmarks/video_speed.py) at demo shapes.
    output = tmp_path / "V.md"
    command = [sys.executable, str(PROJECT / "bench.py"), "--only", "video", "--shapes", "demo", "--output", str(output)]
    completed = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600,
                               env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert completed.returncode == 0, completed.stderr[-2000:]
    report = output.read_text()
    assert "## predict.py --video on a 10 s clip (benchmarks/video_speed.py)" in report
    row = next(line.split(" | ") for line in report.splitlines() if line.startswith("| demo | 4 |"))
    assert row[2:4] == ["250", "40"]  # 10 s at 25 fps, maps at the default 4 per second
    assert float(row[4].rstrip(" s")) > 0 and float(row[5]) > 0 and float(row[6]) > 0 and float(row[7]) > 0
    assert "## Training throughput" not in report  # --only video skipped the other sections


def test_checkpoint_cost_at_the_paper_shapes(tmp_path):
    """bench.py --only checkpoint's measurement, run for real at batch 1: a real file, and the overhead arithmetic."""
    from benchmarks import checkpoint_cost
    from training.checkpoints import DEFAULT_CHECKPOINT_EVERY

    result = checkpoint_cost.run_isolated(batch_size=1, saves=1)
    assert 200 < result["checkpoint_megabytes"] < 400  # two ResNet-18s and Adam's two moments, float32
    assert result["save_seconds"] > 0 and result["step_seconds"] > 0
    assert result["checkpoint_every"] == DEFAULT_CHECKPOINT_EVERY
    assert result["overhead_here"] == pytest.approx(result["save_seconds"] / (DEFAULT_CHECKPOINT_EVERY *
                                                                             result["step_seconds"]))
    assert result["overhead_on_gpu"] == pytest.approx(result["save_seconds"] / (DEFAULT_CHECKPOINT_EVERY * 256 / 3000))
    section = checkpoint_cost.format_section(result, "AVX-512 + bf16", "python bench.py --only checkpoint")
    assert section.startswith(checkpoint_cost.HEADING) and "--checkpoint_every 1000 (the default)" in section


VERBOSE_LOG = """\
onednn_verbose,v1,info,oneDNN v3.7.3 (commit N/A)
onednn_verbose,v1,info,cpu,isa:Intel AVX-512 with float16, Intel DL Boost and bfloat16 support
onednn_verbose,v1,primitive,info,template:timestamp,operation,engine,primitive,implementation,prop_kind,...
onednn_verbose,v1,999.5,primitive,exec,cpu,convolution,jit:avx2,forward_training,src dst,,alg,mb2_ic3,100.0
onednn_verbose,v1,1000.0,primitive,exec,cpu,convolution,brg_conv_fwd:avx2,forward_training,src dst,,alg,mb2_ic3,3.0
onednn_verbose,v1,1001.0,primitive,exec,cpu,convolution,jit:avx2,forward_training,\
src:f32::blocked:acdb::f0 wei:f32:a:blocked:Acdb16a::f0 dst:f32::blocked:acdb::f0,,alg,mb2_ic3,5.0
onednn_verbose,v1,1002.0,primitive,exec,cpu,convolution,jit:avx2,backward_weights,src dst,,alg,mb2_ic3,7.0
onednn_verbose,v1,1003.0,primitive,exec,cpu,reorder,jit:uni,undef,src dst,,,64x3x7x7,1.5
onednn_verbose,v1,1004.0,primitive,exec,cpu,reorder,jit:uni,undef,src dst,,,64x3x7x7,not-a-number
onednn_verbose,v1,1005.0,primitive,exec,cpu,reorder
some other line,1,2,3
TIME_PROBE {}
"""


def test_kernel_breakdown_counts_the_timed_steps_per_step():
    breakdown = kernel_breakdown.parse_verbose(VERBOSE_LOG, since_ms=1000.0, steps=2)
    assert breakdown["isa"] == "Intel AVX-512 with float16, Intel DL Boost and bfloat16 support"
    assert breakdown["kinds"][("convolution", "forward_training")] == {"calls": 1.0, "ms": 4.0}  # (3 + 5) / 2
    assert breakdown["kinds"][("convolution", "backward_weights")] == {"calls": 0.5, "ms": 3.5}
    assert breakdown["kinds"][("reorder", "")] == {"calls": 0.5, "ms": 0.75}  # the unreadable lines left out
    assert breakdown["total"] == pytest.approx(4.0 + 3.5 + 0.75)
    assert breakdown["shapes"][("convolution", "forward_training", "mb2_ic3")]["implementations"] == {
        "brg_conv_fwd:avx2", "jit:avx2 (acdb)"}  # the source's layout; the 100 ms line before the timed steps is not
    # counted
    with pytest.raises(ValueError, match="steps must be at least 1"):
        kernel_breakdown.parse_verbose(VERBOSE_LOG, 0, 0)


def test_kernel_section_subtracts_by_hand():
    ours = kernel_breakdown.parse_verbose(VERBOSE_LOG, 1000.0, 1)  # 8 + 7 + 1.5 = 16.5 ms of oneDNN
    reference = kernel_breakdown.parse_verbose(VERBOSE_LOG.replace("jit:avx2,backward", "gemm,backward"), 0, 1)
    results = {"keras": {"variant": "fp32", "median": 0.020, "error": None, "breakdown": ours},
               "torch": {"variant": "nchw", "median": 0.130, "error": None, "breakdown": reference}}
    measured = {"date": "2026-12-04T20:40+00:00", "cpu": "Some CPU", "load_start": "0.5 / 0.5 / 0.5",
                "load_end": "1.0 / 0.6 / 0.5", "frameworks": results}
    section = kernel_breakdown.format_section(measured, "demo", 2, "AVX2/FMA", "python bench.py --only kernels")
    lines = section.splitlines()
    assert lines[0] == "## Where the train step's time goes (oneDNN kernels, demo shapes, batch 2, CPU class: AVX2/FMA)"
    assert "Measured on 2026-12-04T20:40+00:00, CPU Some CPU, load average 0.5 / 0.5 / 0.5 at start" in section
    assert "| convolution forward_training | 2 | 8.0 | 3 | 108 | -100 |" in lines  # the reference counts the 100 ms
    assert "| all oneDNN primitives | | 16 | | 116 | -100 |" in lines  # 16.5 and 116.5, rounded half to even
    assert "| outside oneDNN (the step less the above) | | 4 | | 14 | -10 |" in lines  # 20 - 16.5, 130 - 116.5
    assert "| the step (median) | | 20 | | 130 | -110 |" in lines
    assert "| convolution backward_weights | `mb2_ic3` | 7.0 | 7.0 | +0 | jit:avx2 | gemm |" in lines
    failed = {**results, "torch": {**results["torch"], "error": "exit code 3: no kernel", "breakdown": None}}
    assert "- torch nchw: FAILED exit code 3: no kernel" in kernel_breakdown.format_section(
        {**measured, "frameworks": failed}, "demo", 2, "AVX2/FMA", "python bench.py")
