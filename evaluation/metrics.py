"""The LVS evaluation protocol (official test.py / utils.py of Chen et al., CVPR 2021) as pure functions.

One test item is scored like this:
1. the raw similarity map (14 x 14) is resized to 224 x 224 with cv2's bilinear INTER_LINEAR and min-max
   normalised to [0, 1]                                                     -> resize_and_normalise
2. the pixels above the value at index 224*224//2 of the sorted map become 1 -> binarise_at_median
3. against a ground-truth map (values 0, 0.5, 1; see annotations.py)
   cIoU_i = sum(pred * gt) / (sum(gt) + sum(pred * (gt == 0)))               -> ciou
Over the test set: "cIoU" = fraction of items with cIoU_i >= 0.5 (success_rate) and AUC = trapezoid area
under the success rate at thresholds 0, 0.05, ..., 1.0 (area_under_curve); later papers add the mean cIoU_i
(summarise).

Details kept from the official code, on purpose:
- the normalisation is written as the official one, 1 - minmax(-map), in float32, so that the median and the
  ties are bit-for-bit those of test.py;
- pixels strictly above the median become 1, and so do pixels equal to 1.0 (the official code sets
  pred[pred > threshold] = 1, then pred[pred < 1] = 0, which leaves the maximum at 1 when more than half of the
  map ties at the maximum);
- thresholds are the floats 0.05 * i (0.05 * 6 = 0.30000000000000004, so a cIoU of exactly 0.3 fails the
  "0.3" threshold, as in the official code);
- an item whose ground truth is empty scores 0 / (number of predicted pixels) = 0; only an empty ground
  truth with an empty prediction gives 0 / 0, which is NaN as in the official code, and NaN counts as a
  failure at every threshold (NaN >= t is False).
One deliberate difference: a flat raw map (max == min) normalises to zeros here, so it predicts nothing
(cIoU 0, or NaN on an empty ground truth). The official code leaves a flat map un-normalised and then
predicts the whole frame if the map's value is >= 0 and nothing otherwise.

Usage:
    from evaluation.metrics import score_map, summarise
    cious = [score_map(raw_map, ground_truth_map) for raw_map, ground_truth_map in items]
    print(summarise(cious))   # {"ciou": ..., "auc": ..., "mean_ciou": ..., "items": ..., "undefined": ...}
"""

import math

import cv2
import numpy as np

MAP_SIZE = 224
SUCCESS_THRESHOLD = 0.5
# exactly the official x = [0.05 * i for i in range(21)] (equal to np.linspace(0, 1, 21))
AUC_THRESHOLDS = np.array([0.05 * index for index in range(21)])


def _check_map(values, name, dimensions=2):
    """A finite numpy array with `dimensions` axes, or ValueError."""
    values = np.asarray(values)
    if values.ndim != dimensions:
        raise ValueError(f"{name} must have {dimensions} axes, got shape {values.shape}")
    if values.size == 0:
        raise ValueError(f"{name} is empty")
    if not np.issubdtype(values.dtype, np.number) and values.dtype != bool:
        raise ValueError(f"{name} must be numeric, got dtype {values.dtype}")
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return values


def resize_and_normalise(raw_map, size=MAP_SIZE):
    """Resize a raw localisation map bilinearly and min-max normalise it, as the official test.py does.

    The official code computes cv2.resize(map, (224, 224), INTER_LINEAR), then 1 - minmax(-resized) in
    float32; this function does the same arithmetic, so its output is bit-for-bit the official `pred`.

    Args:
        raw_map: h x w array of similarities (any real dtype; computed in float32 like the official code).
        size: side of the square output, 224 in the protocol.

    Returns:
        size x size float32 array in [0, 1] (higher = more likely the sound source). A flat map gives zeros.

    Raises:
        ValueError: if raw_map is not a finite 2-D array or size is not a positive integer.
    """
    raw_map = _check_map(raw_map, "raw_map").astype(np.float32)
    if int(size) != size or size < 1:
        raise ValueError(f"size must be a positive integer, got {size}")
    size = int(size)
    resized = cv2.resize(raw_map, dsize=(size, size), interpolation=cv2.INTER_LINEAR)  # size x size
    return normalise(resized)


def normalise(resized_map):
    """The official min-max normalisation, 1 - minmax(-map) in float32 (zeros for a flat map).

    Args:
        resized_map: h x w map (already upsampled).

    Returns:
        h x w float32 array in [0, 1].
    """
    negated = -np.asarray(resized_map, dtype=np.float32)
    minimum, maximum = negated.min(), negated.max()
    if maximum - minimum == 0:
        return np.zeros(negated.shape, np.float32)
    return (1 - (negated - minimum) / (maximum - minimum)).astype(np.float32)


def median_threshold(normalised_map):
    """The official threshold: the value at index int(h * w / 2) of the sorted map (the upper median).

    Args:
        normalised_map: h x w map, usually the output of resize_and_normalise.

    Returns:
        The threshold as a Python float.
    """
    normalised_map = _check_map(normalised_map, "normalised_map")
    height, width = normalised_map.shape
    return float(np.sort(normalised_map.ravel())[int(height * width / 2)])


def binarise_at_median(normalised_map):
    """Keep the top half of a normalised map: 1 above the median threshold (and at 1.0, as officially), else 0.

    Args:
        normalised_map: h x w map in [0, 1], the output of resize_and_normalise.

    Returns:
        h x w float32 map of 0 and 1.

    Raises:
        ValueError: if the map is not a finite 2-D array.
    """
    normalised_map = _check_map(normalised_map, "normalised_map")
    threshold = median_threshold(normalised_map)  # a float32 value, exact as a Python float
    # official: pred[pred > threshold] = 1; pred[pred < 1] = 0; then cal_CIOU keeps pred >= 0.5
    selected = (normalised_map > threshold) | (normalised_map >= 1)
    return selected.astype(np.float32)


def ciou(prediction_binary, ground_truth_map):
    """The official consensus IoU of one item: sum(pred * gt) / (sum(gt) + sum(pred * (gt == 0))).

    Args:
        prediction_binary: h x w map; pixels >= 0.5 count as predicted (official cal_CIOU(..., thres=0.5)).
        ground_truth_map: h x w map with values in [0, 1] (0, 0.5, 1 for Flickr consensus maps; 0, 1 for VGG-SS).

    Returns:
        cIoU_i as a float in [0, 1]; NaN when both the ground truth and the prediction are empty (0 / 0, as
        the official code gives).

    Raises:
        ValueError: if the maps are not finite 2-D arrays of the same shape.
    """
    prediction_binary = _check_map(prediction_binary, "prediction_binary")
    ground_truth_map = _check_map(ground_truth_map, "ground_truth_map").astype(np.float64)
    if prediction_binary.shape != ground_truth_map.shape:
        raise ValueError(
            f"prediction shape {prediction_binary.shape} differs from ground truth shape {ground_truth_map.shape}"
        )
    predicted = (prediction_binary >= 0.5).astype(np.float64)
    intersection = np.sum(predicted * ground_truth_map)
    union = np.sum(ground_truth_map) + np.sum(predicted * (ground_truth_map == 0))
    if union == 0:
        return math.nan
    return float(intersection / union)


def score_map(raw_map, ground_truth_map):
    """cIoU_i of one raw map against its ground truth: resize_and_normalise -> binarise_at_median -> ciou.

    Args:
        raw_map: h x w raw similarity map (e.g. 14 x 14 S_ii).
        ground_truth_map: square size x size ground truth (224 x 224 in the protocol).

    Returns:
        cIoU_i as a float (NaN only if the prediction and the ground truth are both empty).

    Raises:
        ValueError: if the ground truth is not square or either map is malformed.
    """
    ground_truth_map = _check_map(ground_truth_map, "ground_truth_map")
    if ground_truth_map.shape[0] != ground_truth_map.shape[1]:
        raise ValueError(f"ground_truth_map must be square, got shape {ground_truth_map.shape}")
    prediction = binarise_at_median(resize_and_normalise(raw_map, size=ground_truth_map.shape[0]))
    return ciou(prediction, ground_truth_map)


def _cious_array(cious):
    """cIoU_i values as a 1-D float64 array, or ValueError if there are none."""
    cious = np.asarray(cious, dtype=np.float64).ravel()
    if cious.size == 0:
        raise ValueError("no cIoU values to summarise")
    return cious


def success_rate(cious, threshold=SUCCESS_THRESHOLD):
    """Fraction of items with cIoU_i >= threshold (NaN counts as a failure, as in the official code).

    Args:
        cious: sequence of per-item cIoU_i.
        threshold: success threshold; 0.5 gives the reported "cIoU".

    Returns:
        The success rate as a float in [0, 1].

    Raises:
        ValueError: if cious is empty.
    """
    cious = _cious_array(cious)
    return float(np.sum(cious >= threshold) / cious.size)


def success_curve(cious):
    """The success rate at every AUC threshold 0, 0.05, ..., 1.0.

    Args:
        cious: sequence of per-item cIoU_i.

    Returns:
        (thresholds, rates): two arrays of 21 floats.
    """
    cious = _cious_array(cious)
    rates = np.array([np.sum(cious >= threshold) / cious.size for threshold in AUC_THRESHOLDS])
    return AUC_THRESHOLDS.copy(), rates


def area_under_curve(cious):
    """Area under the success curve by the trapezoid rule, as sklearn.metrics.auc(x, results) computes it.

    AUC = sum over i of 0.5 * (rate[i] + rate[i + 1]) * (threshold[i + 1] - threshold[i]).

    Args:
        cious: sequence of per-item cIoU_i.

    Returns:
        The AUC as a float in [0, 1].
    """
    thresholds, rates = success_curve(cious)
    return float(np.trapezoid(rates, thresholds))


def summarise(cious):
    """The reported numbers of a test set.

    Args:
        cious: sequence of per-item cIoU_i (NaN allowed: a failure at every threshold, 0 in the mean).

    Returns:
        {"ciou": success rate at 0.5, "auc": area under the success curve, "mean_ciou": mean cIoU_i with NaN
        as 0, "items": number of items, "undefined": number of NaN cIoU_i}.
    """
    cious = _cious_array(cious)
    undefined = np.isnan(cious)
    return {
        "ciou": success_rate(cious, SUCCESS_THRESHOLD),
        "auc": area_under_curve(cious),
        "mean_ciou": float(np.mean(np.where(undefined, 0.0, cious))),
        "items": int(cious.size),
        "undefined": int(np.sum(undefined)),
    }


def centre_baseline_map(size=MAP_SIZE, shape="box", extent=0.5):
    """A fixed heatmap centred on the frame, to score a prior that ignores image and sound.

    Fed to score_map like a model's raw map. A box map ties everywhere inside and outside the box, so the
    median rule predicts exactly the box whatever its size; a Gaussian map predicts the centred disc that
    covers half the frame.

    Args:
        size: side of the square map.
        shape: "box" (1 inside a centred square of side round(extent * size), 0 outside) or "gaussian"
            (exp(-r^2 / (2 sigma^2)) around the centre, sigma = extent * size).
        extent: box side or Gaussian sigma as a fraction of size; for a box it must leave some frame outside.

    Returns:
        size x size float32 map.

    Raises:
        ValueError: for an unknown shape, a non-positive size, or an extent that gives an empty or full box.
    """
    if int(size) != size or size < 1:
        raise ValueError(f"size must be a positive integer, got {size}")
    size = int(size)
    if not extent > 0:
        raise ValueError(f"extent must be positive, got {extent}")
    if shape == "box":
        side = int(round(extent * size))
        if side < 1 or side >= size:
            raise ValueError(f"extent {extent} gives a box of side {side}; it must be between 1 and {size - 1} px")
        start = (size - side) // 2
        heatmap = np.zeros((size, size), np.float32)
        heatmap[start : start + side, start : start + side] = 1
        return heatmap
    if shape == "gaussian":
        centre = (size - 1) / 2
        coordinates = np.arange(size) - centre
        squared_radius = coordinates[:, None] ** 2 + coordinates[None, :] ** 2  # size x size
        sigma = extent * size
        return np.exp(-squared_radius / (2 * sigma**2)).astype(np.float32)
    raise ValueError(f"shape must be 'box' or 'gaussian', got {shape!r}")
