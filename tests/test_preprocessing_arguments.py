"""arguments.py: every float flag refuses nan/inf; sample rates take 'native'."""

import argparse

import pytest

from safeguards import arguments


@pytest.mark.parametrize("text", ["nan", "inf", "-inf", "1e999", "0", "-2", "abc"])
def test_positive_float_refuses_non_finite_and_non_positive(text):
    with pytest.raises((argparse.ArgumentTypeError, ValueError)):
        arguments.positive_float(text)


def test_positive_float_and_sample_rate_accept_sane_values():
    assert arguments.positive_float("2.5") == 2.5
    assert arguments.sample_rate("native") == "native"
    assert arguments.sample_rate("16000") == 16000
    for text in ("10", "5000000", "fast", "16k"):
        with pytest.raises(argparse.ArgumentTypeError):
            arguments.sample_rate(text)


def test_a_parser_gives_one_line_for_an_absurd_audio_seconds(capsys):
    parser = argparse.ArgumentParser()
    parser.add_argument("--audio_seconds", type=arguments.positive_float, help="seconds")
    with pytest.raises(SystemExit):
        parser.parse_args(["--audio_seconds", "nan"])
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert "argument --audio_seconds: must be a positive number, got nan" in error
