"""argparse value types shared by the command-line scripts (train.py, predict.py, evaluate.py, data_service.py).

Usage:
    from safeguards.arguments import positive_int
    parser.add_argument("--batch_size", type=positive_int, default=16, help="...")
"""

import argparse
import math


def _integer(text, problem):
    """int(text), or an argparse error saying problem."""
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(problem) from None


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


def non_negative_float(text):
    """A finite number >= 0, or an argparse error naming the value."""
    value = float(text)
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number, 0 or more, got {text}")
    return value


def sample_rate(text):
    """A rate in Hz within [1000, 384000], or "native" (each file at its own rate), or an argparse error."""
    if text == "native":
        return text
    value = _integer(text, f"must be a rate in Hz or 'native', got {text}")
    if not 1000 <= value <= 384000:
        raise argparse.ArgumentTypeError(f"must be between 1000 and 384000 Hz (or 'native'), got {text}")
    return value


def port_number(text):
    """A TCP port, 0 (any free one) to 65535, or an argparse error."""
    value = _integer(text, f"not a port number: {text!r}")
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0..65535, got {value}")
    return value


def host_and_port(text):
    """HOST:PORT with a port of 1..65535 (a server's address as others reach it), or an argparse error."""
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return text
