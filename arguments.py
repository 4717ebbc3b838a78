"""argparse value types shared by the command-line scripts (train.py, predict.py, evaluate.py).

Usage:
    from arguments import positive_int
    parser.add_argument("--batch_size", type=positive_int, default=16, help="...")
"""

import argparse
import math


def positive_int(text):
    """An integer >= 1, or an argparse error naming the value."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def non_negative_int(text):
    """An integer >= 0, or an argparse error naming the value."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def positive_float(text):
    """A finite number > 0, or an argparse error naming the value."""
    value = float(text)
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value
