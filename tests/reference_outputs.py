"""Loader for tests/fixtures/reference_outputs: the outputs other projects' evaluation code gave on recorded inputs.

Each fixture is a JSON file with "source" (repository, path, function), "commit", "how" (how it was produced),
"inputs" and "outputs"; tests/fixtures/reference_outputs/README.md lists them. The code that produced them is not
in this repository: the tests run our functions on the inputs and compare with the outputs.
"""

import hashlib
import json
from pathlib import Path

import numpy as np

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "reference_outputs"


def load(name):
    """The parsed fixture tests/fixtures/reference_outputs/<name> (null outputs stand for NaN)."""
    with open(FIXTURES / name, encoding="utf-8") as handle:
        return json.load(handle)


def ground_truth(rectangles, clip_at=None, size=224):
    """A size x size map: each [top, left, bottom, right, value] adds value to its rows and columns, then a cap."""
    gt = np.zeros((size, size))
    for top, left, bottom, right, value in rectangles:
        gt[top:bottom, left:right] += value
    return gt if clip_at is None else np.minimum(gt, clip_at)


def digest(binary_map):
    """sha256 of np.packbits(map > 0) in row-major order: how the fixtures record a 224 x 224 binary prediction."""
    return hashlib.sha256(np.packbits(np.asarray(binary_map) > 0).tobytes()).hexdigest()


def at_grid(values, points):
    """values[np.ix_(points, points)] as float64: the samples of a 224 x 224 map the fixtures record."""
    return np.asarray(values, dtype=np.float64)[np.ix_(points, points)]
