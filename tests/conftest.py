"""pytest setup: the project's root on sys.path, quiet TensorFlow, the shipped metadata folder (data/metadata) as a fixture."""

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


@pytest.fixture
def metadata_dir():
    """data/metadata in the project (real VGG-SS / Flickr lists, official checkpoint layout)."""
    if not METADATA.is_dir():
        raise FileNotFoundError(f"metadata not found at {METADATA}")
    return METADATA
