"""The two test protocols of the field, as pure functions: LVS's and the EZ-VSL family's (EZ-VSL, SLAVC, FNAC).

                      lvs (Chen et al., test.py)                 ezvsl (stoneMo/EZ-VSL test.py, datasets.py)
    frame             shorter side to 224 + centre crop          Resize((224, 224)): the whole frame squashed
    audio             the checkpoint's audio_seconds, from 0 s   3 s from the middle of the file (tiled if shorter)
    upsampling        cv2.resize INTER_LINEAR                    F.interpolate(bilinear, align_corners=True)
    prediction        1 - minmax(-map) > median (or == 1)        minmax(map) >= sorted(map)[n // 2]
The slavc protocol is ezvsl with F.interpolate(bicubic, align_corners=True) (SLAVC test.py, with
--relative_prediction and pred_size 0.5, the thresholding SLAVC's numbers use with OGL).

The ground truth is the same in both: SLAVC's datasets.py builds VGG-SS maps from (clip(box, 0, 1) * 224).astype(int),
which equals LVS's int(224 * max(v, 0)) capped at 224 (annotations.py); Flickr consensus maps are identical.

F.interpolate(..., align_corners=True) is written here as two 1-D interpolation matrices (out x in), applied to
rows and columns: output pixel i samples input coordinate i * (in - 1) / (out - 1); bicubic uses PyTorch's cubic
convolution kernel (A = -0.75) with the indices clamped at the border.

Usage:
    from evaluation.protocols import PROTOCOLS, upsample, binarise
    protocol = PROTOCOLS["ezvsl"]
    large = upsample(raw_map, 224, protocol["upsampling"])
    prediction = binarise(large, protocol["prediction"])
"""

import cv2
import numpy as np

from evaluation import metrics

MAP_SIZE = 224
CUBIC_A = -0.75  # PyTorch's bicubic kernel parameter
PROTOCOLS = {
    "lvs": {"resize": "crop", "audio_window": "start", "audio_seconds": None, "upsampling": "cv2_bilinear",
            "prediction": "lvs_median"},
    "ezvsl": {"resize": "squash", "audio_window": "centre", "audio_seconds": 3.0, "upsampling": "bilinear",
              "prediction": "ezvsl_median"},
    "slavc": {"resize": "squash", "audio_window": "centre", "audio_seconds": 3.0, "upsampling": "bicubic",
              "prediction": "ezvsl_median"},
}
UPSAMPLING_MODES = ("cv2_bilinear", "bilinear", "bicubic")
PREDICTION_RULES = ("lvs_median", "ezvsl_median")


def _source_coordinates(in_size, out_size):
    """align_corners=True: output index i reads input coordinate i * (in - 1) / (out - 1)."""
    if out_size == 1:
        return np.zeros(1)
    return np.arange(out_size) * ((in_size - 1) / (out_size - 1))


def _cubic_weights(fraction):
    """PyTorch's four cubic convolution weights for offsets -1, 0, 1, 2 at a fractional position (A = -0.75)."""
    def near(x):  # |x| <= 1
        return ((CUBIC_A + 2) * x - (CUBIC_A + 3)) * x * x + 1

    def far(x):  # 1 < |x| < 2
        return ((CUBIC_A * x - 5 * CUBIC_A) * x + 8 * CUBIC_A) * x - 4 * CUBIC_A

    return [far(fraction + 1), near(fraction), near(1 - fraction), far(2 - fraction)]


def interpolation_matrix(in_size, out_size, mode):
    """The out_size x in_size matrix of F.interpolate(mode, align_corners=True) along one axis.

    Args:
        in_size, out_size: lengths of the axis before and after.
        mode: "bilinear" or "bicubic".

    Returns:
        float64 array out_size x in_size whose rows sum to 1.
    """
    matrix = np.zeros((out_size, in_size))
    for row, coordinate in enumerate(_source_coordinates(in_size, out_size)):
        base = int(np.floor(coordinate))
        fraction = coordinate - base
        if mode == "bilinear":
            offsets, weights = (0, 1), (1 - fraction, fraction)
        elif mode == "bicubic":
            offsets, weights = (-1, 0, 1, 2), _cubic_weights(fraction)
        else:
            raise ValueError(f"unknown interpolation mode {mode!r} (expected bilinear or bicubic)")
        for offset, weight in zip(offsets, weights):
            matrix[row, min(max(base + offset, 0), in_size - 1)] += weight  # border indices clamped, like PyTorch
    return matrix


def upsample(raw_map, size=MAP_SIZE, mode="cv2_bilinear"):
    """Upsample an h x w map to size x size as a protocol does.

    Args:
        raw_map: h x w array.
        size: the output side (224).
        mode: "cv2_bilinear" (LVS: cv2.resize INTER_LINEAR, float32), "bilinear" or "bicubic" (F.interpolate
            with align_corners=True, EZ-VSL / SLAVC).

    Returns:
        size x size array (float32 for cv2_bilinear, float64 otherwise).
    """
    raw_map = np.asarray(raw_map)
    if raw_map.ndim != 2 or raw_map.size == 0:
        raise ValueError(f"raw_map must be a non-empty 2-D map, got shape {raw_map.shape}")
    if mode == "cv2_bilinear":
        return cv2.resize(raw_map.astype(np.float32), (size, size), interpolation=cv2.INTER_LINEAR)
    rows = interpolation_matrix(raw_map.shape[0], size, mode)  # size x h
    columns = interpolation_matrix(raw_map.shape[1], size, mode)  # size x w
    return rows @ raw_map.astype(np.float64) @ columns.T  # (size x h) (h x w) (w x size) -> size x size


def min_max(values):
    """EZ-VSL / SLAVC utils.normalize_img: (v - min) / (max - min); a flat map is returned unchanged."""
    values = np.asarray(values, dtype=np.float64)
    low, high = values.min(), values.max()
    return values if high - low == 0 else (values - low) / (high - low)


def ezvsl_binarise(upsampled_map):
    """EZ-VSL test.py's prediction: min-max normalise, threshold at sorted(map)[int(n * 0.5)], keep >= threshold.

    Args:
        upsampled_map: the 224 x 224 map.

    Returns:
        224 x 224 float64 map of 0 and 1.
    """
    normalised = min_max(upsampled_map)
    threshold = np.sort(normalised.ravel())[int(normalised.shape[0] * normalised.shape[1] * 0.5)]
    return (normalised >= threshold).astype(np.float64)


def binarise(upsampled_map, rule):
    """The prediction of a protocol from its upsampled map: "lvs_median" or "ezvsl_median"."""
    if rule == "lvs_median":
        return metrics.binarise_at_median(metrics.normalise(upsampled_map))
    if rule == "ezvsl_median":
        return ezvsl_binarise(upsampled_map)
    raise ValueError(f"unknown prediction rule {rule!r} (expected one of {PREDICTION_RULES})")


def score(upsampled_map, ground_truth_map, rule):
    """cIoU of one item from its upsampled map under a protocol's prediction rule."""
    return metrics.ciou(binarise(upsampled_map, rule), ground_truth_map)


def audio_window(samples, sample_rate, seconds, where="start"):
    """The part of a recording a protocol feeds (before tiling).

    Args:
        samples: 1-D samples.
        sample_rate: their rate.
        seconds: the window's length.
        where: "start" (LVS: from 0 s) or "centre" (EZ-VSL: from max(duration / 2 - seconds / 2, 0)).

    Returns:
        The samples of the window (shorter than seconds when the file is; the caller tiles them).
    """
    length = int(round(sample_rate * seconds))
    if where == "start":
        return samples[:length]
    if where == "centre":
        start = max(int(round((samples.shape[0] / sample_rate / 2 - seconds / 2) * sample_rate)), 0)
        return samples[start:start + length]
    raise ValueError(f"unknown audio window {where!r} (expected start or centre)")
