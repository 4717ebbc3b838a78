"""Every array a .keras checkpoint holds (weights, BatchNorm statistics, optimizer state), read with h5py: the tests
compare runs exactly without loading a model."""

import io
import zipfile

import h5py
import numpy as np


def checkpoint_arrays(path):
    """{dataset name: array} of the model.weights.h5 inside a .keras archive."""
    arrays = {}
    with zipfile.ZipFile(path) as archive:
        with h5py.File(io.BytesIO(archive.read("model.weights.h5")), "r") as weights:
            weights.visititems(lambda name, item: arrays.__setitem__(name, np.array(item))
                               if isinstance(item, h5py.Dataset) else None)
    return arrays


def assert_identical(first, second):
    """Both checkpoints hold the same arrays, bit for bit (NaN never equals, so a NaN fails too)."""
    one, two = checkpoint_arrays(first), checkpoint_arrays(second)
    assert sorted(one) == sorted(two)
    assert any(name.startswith("optimizer") for name in one), "the optimizer state is not in the checkpoint"
    different = [name for name in one if one[name].shape != two[name].shape or
                 one[name].tobytes() != two[name].tobytes()]
    assert not different, f"{len(different)} of {len(one)} arrays differ, e.g. {different[:3]}"
