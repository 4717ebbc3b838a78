"""safeguards/cpu_features.py on synthetic flag sets (the same answers on any machine), and the oneDNN setting that
safeguards/quiet_tensorflow.py applies, checked in real child processes that import TensorFlow."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

import bench
from safeguards import cpu_features

PROJECT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
AVX2 = frozenset("fpu sse4_2 avx avx2 fma".split())  # e.g. Haswell to Coffee Lake, Zen 1-3
AVX512 = AVX2 | {"avx512f", "avx512dq", "avx512bw", "avx512vl"}  # Skylake-SP: no VNNI
AVX512_VNNI = AVX512 | {"avx512_vnni"}  # Cascade Lake
AVX512_BF16 = AVX512_VNNI | {"avx512_bf16"}  # Cooper Lake, Zen 4 (this project's machine)
AMX = AVX512_BF16 | {"amx_tile", "amx_int8", "amx_bf16"}  # Sapphire Rapids
AVX_VNNI = AVX2 | {"avx_vnni"}  # Alder Lake: VNNI without AVX-512
OLD = frozenset("fpu sse4_2 avx".split())  # Sandy Bridge: no AVX2
ARM = frozenset("fp asimd sve bf16".split())  # Neoverse V1


@pytest.mark.parametrize("flags,name,native", [
    (AVX2, "AVX2/FMA", False), (AVX_VNNI, "AVX2/FMA", False), (AVX512, "AVX-512", False),
    (AVX512_VNNI, "AVX-512", False), (AVX512_BF16, "AVX-512 + bf16", True), (AMX, "AVX-512 + bf16", True),
    (OLD, "other", False), (ARM, "other", True), (frozenset(), "other", False)])
def test_class_and_native_bfloat16(flags, name, native):
    assert cpu_features.cpu_class(flags) == name
    assert name in cpu_features.CPU_CLASSES
    assert cpu_features.has_native_bfloat16(flags) is native


@pytest.mark.parametrize("flags,tensorflow_default,set_here", [
    (AVX2, False, True),  # TensorFlow leaves it off; measured faster on: turned on
    (AVX512, False, True),  # AVX-512 without VNNI: TensorFlow leaves it off too
    (AVX512_VNNI, True, False), (AVX512_BF16, True, False), (AMX, True, False), (AVX_VNNI, True, False),
    (OLD, False, False), (ARM, False, False)])  # not measured there: TensorFlow's choice stands
def test_onednn_is_turned_on_where_tensorflow_leaves_it_off(flags, tensorflow_default, set_here):
    assert cpu_features.tensorflow_turns_onednn_on(flags) is tensorflow_default
    assert cpu_features.onednn_setting(flags, {}) == ("1" if set_here else None)
    assert cpu_features.onednn_expected(flags, {}) is (tensorflow_default or set_here)
    for value, expected in (("0", False), ("false", False), ("1", True), ("TRUE", True)):
        assert cpu_features.onednn_setting(flags, {"TF_ENABLE_ONEDNN_OPTS": value}) is None  # the user's choice
        assert cpu_features.onednn_expected(flags, {"TF_ENABLE_ONEDNN_OPTS": value}) is expected
    # An empty value is no choice; one TensorFlow cannot read leaves its default.
    assert cpu_features.onednn_setting(flags, {"TF_ENABLE_ONEDNN_OPTS": ""}) == ("1" if set_here else None)
    assert cpu_features.onednn_expected(flags, {"TF_ENABLE_ONEDNN_OPTS": "yes"}) is tensorflow_default


def test_mixed_precision_is_refused_in_one_line_without_native_bfloat16():
    for flags in (AVX2, AVX512, AVX512_VNNI, AVX_VNNI, OLD, frozenset()):
        problem = cpu_features.mixed_precision_problem(flags, has_gpu=False)
        assert problem == ("this CPU has no native bfloat16 (avx512_bf16/AMX): bfloat16 is emulated and about 9x "
                           "slower; train in float32 (drop --mixed_precision) or on a GPU")
        assert "\n" not in problem
        assert cpu_features.mixed_precision_problem(flags, has_gpu=True) is None
    for flags in (AVX512_BF16, AMX, ARM):
        assert cpu_features.mixed_precision_problem(flags, has_gpu=False) is None


def test_flags_are_read_from_cpuinfo(tmp_path):
    x86 = tmp_path / "x86"
    x86.write_text("processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu AVX2 fma avx512f avx512_bf16\n\n"
                   "processor\t: 1\nflags\t\t: fpu\n")
    assert cpu_features.cpu_flags(str(x86)) == {"fpu", "avx2", "fma", "avx512f", "avx512_bf16"}  # the first CPU
    arm = tmp_path / "arm"
    arm.write_text("processor\t: 0\nBogoMIPS\t: 2100.00\nFeatures\t: fp asimd bf16\n")
    assert cpu_features.cpu_flags(str(arm)) == {"fp", "asimd", "bf16"}
    assert cpu_features.cpu_flags(str(tmp_path / "missing")) == frozenset()
    assert cpu_features.cpu_model(str(x86)) == "AMD EPYC"  # the name every benchmark table gives
    assert cpu_features.cpu_model(str(arm)) == cpu_features.cpu_model(str(tmp_path / "missing"))  # platform's, or
    assert cpu_features.cpu_model(str(arm)) and cpu_features.cpu_model(str(arm)) != "AMD EPYC"  # "unknown"
    real = cpu_features.cpu_flags()  # whatever this machine is, one of the classes
    assert cpu_features.cpu_class(real) in cpu_features.CPU_CLASSES


def test_bench_leaves_emulated_bfloat16_variants_out_unless_named(monkeypatch):
    monkeypatch.setattr(cpu_features, "cpu_flags", lambda: AVX2)
    arguments = bench.parse_arguments([])
    assert arguments.keras_variants and not [variant for variant in arguments.keras_variants if "bf16" in variant]
    assert "nchw" in arguments.torch_variants and "channels_last_bf16" not in arguments.torch_variants
    assert arguments.bfloat16_left_out.startswith("this CPU has no native bfloat16")
    named = bench.parse_arguments(["--keras_variants", "fp32,bf16", "--torch_variants", "nchw_bf16"])
    assert (named.keras_variants, named.torch_variants, named.bfloat16_left_out) == (["fp32", "bf16"], ["nchw_bf16"],
                                                                                       None)
    monkeypatch.setattr(cpu_features, "cpu_flags", lambda: AVX512_BF16)
    native = bench.parse_arguments([])
    assert "bf16" in native.keras_variants and "channels_last_bf16" in native.torch_variants
    assert native.bfloat16_left_out is None


def onednn_in_child(setup="", onednn=None):
    """Run a child that (after `setup`) imports safeguards.quiet_tensorflow as every script does; return what
    TensorFlow decided (IsMklEnabled), the variable's value it saw, and whether our module set it."""
    source = textwrap.dedent("""
        import json, os, sys
        sys.path.insert(0, os.getcwd())
        {setup}
        import safeguards.quiet_tensorflow
        from tensorflow.python.util import _pywrap_util_port
        print(json.dumps({{"enabled": bool(_pywrap_util_port.IsMklEnabled()),
                           "value": os.environ.get("TF_ENABLE_ONEDNN_OPTS"),
                           "set_here": safeguards.quiet_tensorflow.ONEDNN_TURNED_ON}}))
    """).format(setup=setup)
    environment = {name: value for name, value in os.environ.items() if name != "TF_ENABLE_ONEDNN_OPTS"}
    if onednn is not None:
        environment["TF_ENABLE_ONEDNN_OPTS"] = onednn
    result = subprocess.run([sys.executable, "-c", source], cwd=PROJECT, capture_output=True, text=True,
                            timeout=300, env=environment)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_a_script_started_without_the_variable_gets_onednn_where_it_is_faster():
    flags = cpu_features.cpu_flags()
    child = onednn_in_child()
    assert child["enabled"] is cpu_features.onednn_expected(flags, {})
    assert child["set_here"] is (cpu_features.onednn_setting(flags, {}) == "1")
    assert child["value"] == ("1" if child["set_here"] else None)
    if cpu_features.cpu_class(flags) != "other":  # every AVX2/FMA or AVX-512 CPU ends with oneDNN on
        assert child["enabled"]


def test_the_setting_turns_onednn_on_as_on_an_avx2_cpu():
    """What quiet_tensorflow does on an AVX2/FMA CPU (flags given, not read), in a real TensorFlow: oneDNN on."""
    setup = ("from safeguards import cpu_features\n"
             "os.environ['TF_ENABLE_ONEDNN_OPTS'] = cpu_features.onednn_setting("
             "frozenset({'avx', 'avx2', 'fma'}), os.environ)")
    child = onednn_in_child(setup)
    assert child == {"enabled": True, "value": "1", "set_here": False}  # set before: the module keeps it


def test_an_explicit_zero_is_respected():
    child = onednn_in_child(onednn="0")
    assert child == {"enabled": False, "value": "0", "set_here": False}
