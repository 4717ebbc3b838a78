"""A cap on TensorFlow's host (CPU) memory allocator, for bench.py's capped memory runs (keras:VARIANT@GIB).

TensorFlow on x86 with oneDNN (the default) allocates every CPU tensor of 4 KiB or more from a BFC allocator
(MklCPUAllocator) whose limit is the machine's RAM. It grows in regions that double in size and keeps them; a new
tensor goes to the best-fitting free chunk, often in an untouched region, so the process's resident memory climbs
above the tensors alive at any moment, by an amount that changes from run to run. At the paper's shapes with
train.py --remat, batch 256, before the stems ran in chunks (remat.stem_in_chunks), single runs peaked at 17.2 to
22.5 GiB, against 14.6 GiB with the system allocator (TF_ONEDNN_USE_SYSTEM_ALLOCATOR=1, which made the step 1.55x
slower). With a cap the allocator stays inside it: before growing past it, it hands back regions with nothing left
in them and allocates again.

train.py does not offer the cap: when a step needs about as much as the cap allows, TensorFlow does not always
raise ResourceExhaustedError; one batch-256 run with 16 GiB ended in a segmentation fault inside TensorFlow
instead (another at 16 GiB finished at 17.2 GiB; one at 12 GiB raised). bench.py measures it on request
(--memory_variants keras:fp32_remat@16), with that caveat.

The cap is TensorFlow's own TF_MKL_ALLOC_MAX_BYTES. TensorFlow reads it when it creates the CPU allocator, at
the first operation of the process, so limit() must run before any tensor exists (importing TensorFlow is fine).

Usage:
    from benchmarks import host_memory
    host_memory.limit(16)   # GiB, before the first TensorFlow operation
"""

import os

from tensorflow.python.eager import context

VARIABLE = "TF_MKL_ALLOC_MAX_BYTES"
GIB = 1024**3


def limit(gibibytes):
    """Cap TensorFlow's CPU allocator at `gibibytes` GiB (see the module docstring).

    Args:
        gibibytes: the cap, a positive number of GiB (2**30 bytes).

    Returns:
        The cap in bytes.

    Raises:
        ValueError: for a cap that is not a positive finite number, or when a TensorFlow operation has already
            run in this process (the allocator exists and would ignore the cap).
    """
    if not gibibytes > 0 or gibibytes == float("inf"):
        raise ValueError(f"the memory limit must be a positive number of GiB, got {gibibytes}")
    if _allocator_created():
        raise ValueError("the memory limit must be set before the first TensorFlow operation of the process")
    cap = int(gibibytes * GIB)
    os.environ[VARIABLE] = str(cap)
    return cap


def _allocator_created():
    """Whether TensorFlow's eager context, and with it the CPU allocator, exists (TensorFlow has no public test)."""
    return context.context()._context_handle is not None  # noqa: SLF001
