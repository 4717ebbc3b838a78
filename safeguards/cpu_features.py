"""What this CPU computes natively, from /proc/cpuinfo: its class (for the benchmark tables), whether it has
bfloat16 arithmetic, and whether TensorFlow should run its CPU ops on oneDNN.

TensorFlow 2.21 on Linux turns oneDNN on by itself only on CPUs with AVX512_VNNI, AVX512_BF16, AVX_VNNI or AMX
(DefaultOneDnnPolicy in tensorflow/core/util/port.cc); everywhere else it runs its own Eigen kernels, compiled
for AVX only. On an AVX2 + FMA CPU without those, oneDNN is the faster path: the float32 train step at the
paper's shapes, batch 8, took 10.43 s with TensorFlow's default and 9.38 s with TF_ENABLE_ONEDNN_OPTS=1 (issue 21,
a 2-core AVX2/FMA machine). So safeguards/quiet_tensorflow.py, imported first by every script that uses
TensorFlow, sets TF_ENABLE_ONEDNN_OPTS=1 on such CPUs when the user has not set it (onednn_setting).

bfloat16 is native with avx512_bf16 or AMX (amx_bf16) on x86, and with the Arm BF16 extension (bf16); without
them TensorFlow emulates it and the step is far slower than float32 (9x at the paper's shapes on the AVX2
machine): mixed_precision_problem says so in one line.

Every function takes the flag set as an argument, so the logic is the same whatever machine runs it (the tests
pass synthetic flag sets); cpu_flags() reads this machine's.

Usage:
    from safeguards import cpu_features
    flags = cpu_features.cpu_flags()
    cpu_features.cpu_class(flags)                         # "AVX-512 + bf16", "AVX-512", "AVX2/FMA" or "other"
    problem = cpu_features.mixed_precision_problem(flags, has_gpu=False)   # None, or the reason and what to do
"""

import platform

ONEDNN_VARIABLE = "TF_ENABLE_ONEDNN_OPTS"
CPU_CLASSES = ("AVX-512 + bf16", "AVX-512", "AVX2/FMA", "other")
NATIVE_BFLOAT16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})  # bf16: the Arm BF16 extension
# The flags with which TensorFlow turns oneDNN on by itself on Linux (tensorflow/core/util/port.cc, 2.21).
TENSORFLOW_ONEDNN_FLAGS = frozenset({"avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile", "amx_int8", "amx_bf16"})
# The flags worth naming in a benchmark's machine table.
FLAGS_OF_NOTE = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_tile", "avx512_fp16")
NO_NATIVE_BFLOAT16 = ("this CPU has no native bfloat16 (avx512_bf16/AMX): bfloat16 is emulated and about 9x slower; "
                      "train in float32 (drop --mixed_precision) or on a GPU")


def cpu_flags(path="/proc/cpuinfo"):
    """This machine's instruction-set flags: the first 'flags' (x86) or 'Features' (Arm) line of /proc/cpuinfo.

    Args:
        path: the cpuinfo file.

    Returns:
        A frozenset of lower-case flag names; empty where the file is missing or has no such line (not Linux).
    """
    try:
        with open(path) as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key.strip() in ("flags", "Features"):
                    return frozenset(value.lower().split())
    except OSError:
        pass
    return frozenset()


def cpu_model(path="/proc/cpuinfo"):
    """The CPU's 'model name' from /proc/cpuinfo (platform.processor() elsewhere, or "unknown")."""
    try:
        with open(path) as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cpu_class(flags):
    """The class of a CPU for the benchmark tables, from its flags.

    Args:
        flags: a set of /proc/cpuinfo flag names.

    Returns:
        "AVX-512 + bf16" (avx512f and native bfloat16), "AVX-512", "AVX2/FMA" or "other".
    """
    if "avx512f" in flags:
        return "AVX-512 + bf16" if has_native_bfloat16(flags) else "AVX-512"
    if "avx2" in flags and "fma" in flags:
        return "AVX2/FMA"
    return "other"


def has_native_bfloat16(flags):
    """Whether the CPU computes bfloat16 in hardware: avx512_bf16 or amx_bf16 (x86), bf16 (Arm)."""
    return bool(NATIVE_BFLOAT16_FLAGS & set(flags))


def tensorflow_turns_onednn_on(flags):
    """Whether TensorFlow (Linux) runs on oneDNN by itself on a CPU with these flags, TF_ENABLE_ONEDNN_OPTS unset."""
    return bool(TENSORFLOW_ONEDNN_FLAGS & set(flags))


def onednn_is_faster(flags):
    """Whether oneDNN is the faster path for our train step on this CPU: x86 with AVX2 and FMA or better (measured:
    10.43 s -> 9.38 s per step on AVX2/FMA; oneDNN is TensorFlow's own default on the AVX-512 CPUs with VNNI)."""
    return "avx2" in flags and "fma" in flags


def onednn_setting(flags, environment):
    """The TF_ENABLE_ONEDNN_OPTS value to start TensorFlow with, or None to leave the environment as it is.

    Args:
        flags: the CPU's flags.
        environment: the environment TensorFlow will read (os.environ); a non-empty TF_ENABLE_ONEDNN_OPTS there is
            the user's choice and is kept.

    Returns:
        "1" where TensorFlow would leave oneDNN off and it is faster; None otherwise (the user set it, TensorFlow
        turns it on itself, or it is not known to be faster on this CPU).
    """
    if environment.get(ONEDNN_VARIABLE, ""):
        return None
    if tensorflow_turns_onednn_on(flags) or not onednn_is_faster(flags):
        return None
    return "1"


def onednn_expected(flags, environment):
    """Whether TensorFlow will run on oneDNN, after onednn_setting, on a Linux x86 build of TensorFlow.

    Args:
        flags: the CPU's flags.
        environment: the environment as the user started the process (before onednn_setting).

    Returns:
        True or False.
    """
    value = (environment.get(ONEDNN_VARIABLE, "") or onednn_setting(flags, environment) or "").strip().lower()
    if value in ("1", "true", "0", "false"):  # what TensorFlow reads; anything else leaves its default
        return value in ("1", "true")
    return tensorflow_turns_onednn_on(flags)


def mixed_precision_problem(flags, has_gpu):
    """Why bfloat16 mixed precision should not be used here, or None when it may.

    Args:
        flags: the CPU's flags.
        has_gpu: whether the run has a GPU (then the GPU's float16/bfloat16 is used and the CPU does not matter).

    Returns:
        None on a GPU or a CPU with native bfloat16; otherwise one line that says why and what to use instead.
    """
    if has_gpu or has_native_bfloat16(flags):
        return None
    return NO_NATIVE_BFLOAT16
