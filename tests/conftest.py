"""pytest setup: the project's root on sys.path, quiet TensorFlow, other libraries' known warnings filtered (so a new
warning of ours stands out), the shipped metadata folder (data/metadata) as a fixture."""

import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

# PyTorch must be imported before TensorFlow in one process: the other order segfaults in torchvision's import.
import torch  # noqa: E402,F401
import torchvision  # noqa: E402,F401

import pytest  # noqa: E402

METADATA = PROJECT / "data" / "metadata"

# Warnings raised inside other libraries about their own code, each by its message and the module that raises it
# (pytest's "action:message:category:module"). Nothing of ours: a warning from our modules still shows.
LIBRARY_WARNINGS = (
    # Keras' TensorFlow backend converts tensors with np.array(EagerTensor); TensorFlow's __array__ takes no `copy`,
    # so NumPy 2 warns on every conversion (thousands a run). Keras' and TensorFlow's to fix, not ours.
    r"ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning:"
    r"keras\.src\.backend\.tensorflow\.core",
)


def pytest_configure(config):
    for line in LIBRARY_WARNINGS:
        config.addinivalue_line("filterwarnings", line)


@pytest.fixture
def metadata_dir():
    """data/metadata in the project (real VGG-SS / Flickr lists, official checkpoint layout)."""
    if not METADATA.is_dir():
        raise FileNotFoundError(f"metadata not found at {METADATA}")
    return METADATA
