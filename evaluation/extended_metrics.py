"""Scoring of the extended test sets (SLAVC, Mo & Morgado, NeurIPS 2022): AP, max-F1 and LocAcc with negatives.

An extended test set adds "non-sounding" pairs (a frame with the audio of another clip; no box) to the usual
positives. Every item carries a confidence (how sure the model is that something in the frame sounds) besides
its cIoU. At a confidence threshold t, as SLAVC's utils.EvaluatorFull.calc_precision_recall counts them:
- a negative (no box) with confidence >= t is a false positive;
- a positive with confidence >= t is a true positive if cIoU >= 0.5, else a false positive;
- a positive with confidence < t is a false negative.
precision = TP / (TP + FP) and recall = TP / (TP + FN), both 1 when their denominator is 0.

- AP (SLAVC calc_ap): precision and recall at the sorted confidences (all but the largest), walked from the
  largest down in steps of max(1, n // 200); precision made monotone from the right; AP = sum of
  max-precision_i * (recall_{i+1} - recall_i). Kept as published: the sum starts at the recall of the
  second-largest confidence, not at recall 0, so AP is not the area under the whole curve.
- max-F1: the largest F1 over the thresholds sorted(confidences)[::max(1, n // 10)] (SLAVC finalize_stats).
- LocAcc: the precision with every item detected (t = -1000) on the positives alone, i.e. the fraction of
  positives with cIoU >= 0.5 (SLAVC's "Precision-visible@50").
- Box-size buckets (SLAVC min_sizes / max_sizes): the ground-truth map's area (its sum, in pixels of 224 x 224)
  in [0, 32^2), [32^2, 96^2), [96^2, 144^2), [144^2, 10000^2): small, medium, large, huge. Buckets hold
  positives only, as in SLAVC.
The confidence of an item (SLAVC test.py's top-quarter mean of the map scaled from a fixed range) is a protocol's
rule: evaluation/protocols.py, Protocol.confidence.

Usage:
    from evaluation.extended_metrics import summarise_extended
    report = summarise_extended(box_counts, cious, confidences, areas)   # {"ap": ..., "max_f1": ..., ...}
"""

import numpy as np

CIOU_THRESHOLD = 0.5
ALWAYS_DETECTED = -1000  # SLAVC's confidence threshold under which every item counts as detected
AP_STEPS = 200
F1_STEPS = 10
SIZE_BUCKETS = {"small": (0, 32**2), "medium": (32**2, 96**2), "large": (96**2, 144**2), "huge": (144**2, 10000**2)}


def _as_lists(box_counts, cious, confidences):
    box_counts = [int(count) for count in box_counts]
    cious = [float(value) for value in cious]
    confidences = [float(value) for value in confidences]
    if not len(box_counts) == len(cious) == len(confidences):
        raise ValueError(f"box_counts, cious and confidences differ in length: "
                         f"{len(box_counts)}, {len(cious)}, {len(confidences)}")
    return box_counts, cious, confidences


def precision_recall(box_counts, cious, confidences, threshold, ciou_threshold=CIOU_THRESHOLD):
    """Precision and recall at one confidence threshold (SLAVC EvaluatorFull.calc_precision_recall).

    Args:
        box_counts: per item, its number of boxes (0 for a negative: nothing sounds in the frame).
        cious: per item, its cIoU (ignored for negatives; NaN never reaches the threshold).
        confidences: per item, its confidence.
        threshold: items with confidence >= threshold are detections.
        ciou_threshold: a detection of a positive is correct when cIoU >= this.

    Returns:
        (precision, recall) as floats.
    """
    box_counts, cious, confidences = _as_lists(box_counts, cious, confidences)
    true_positives = false_positives = false_negatives = 0
    for count, ciou, item_confidence in zip(box_counts, cious, confidences):
        detected = item_confidence >= threshold
        if count == 0:
            false_positives += detected
        elif not detected:
            false_negatives += 1
        elif ciou >= ciou_threshold:
            true_positives += 1
        else:
            false_positives += 1
    precision = 1.0 if true_positives + false_positives == 0 else true_positives / (true_positives + false_positives)
    recall = 1.0 if true_positives + false_negatives == 0 else true_positives / (true_positives + false_negatives)
    return precision, recall


def precision_recall_curve(box_counts, cious, confidences, ciou_threshold=CIOU_THRESHOLD):
    """SLAVC's AP thresholds and the precision / recall at each (largest confidence first).

    Returns:
        (thresholds, precisions, recalls): three lists (empty when there is a single item).
    """
    confidences = [float(value) for value in confidences]
    step = max(1, len(confidences) // AP_STEPS)
    thresholds = [float(value) for value in np.sort(np.array(confidences))[:-1][::-step]]
    points = [precision_recall(box_counts, cious, confidences, threshold, ciou_threshold) for threshold in thresholds]
    return thresholds, [point[0] for point in points], [point[1] for point in points]


def average_precision(box_counts, cious, confidences, ciou_threshold=CIOU_THRESHOLD):
    """SLAVC's AP (EvaluatorFull.calc_ap): area under the right-maximised precision over the recall steps.

    Returns:
        AP as a float (0 when there are fewer than three items, as SLAVC's sum over no step gives).
    """
    _, precisions, recalls = precision_recall_curve(box_counts, cious, confidences, ciou_threshold)
    maximised = [max(precisions[index:]) for index in range(len(precisions))]
    return float(sum(maximised[index] * (recalls[index + 1] - recalls[index]) for index in range(len(maximised) - 1)))


def f1_scores(box_counts, cious, confidences, ciou_threshold=CIOU_THRESHOLD):
    """F1 at SLAVC's ten-odd thresholds sorted(confidences)[::max(1, n // 10)] (EvaluatorFull.finalize_stats).

    Returns:
        (thresholds, f1 values) as two lists.
    """
    confidences = [float(value) for value in confidences]
    thresholds = sorted(confidences)[::max(1, len(confidences) // F1_STEPS)]
    scores = []
    for threshold in thresholds:
        precision, recall = precision_recall(box_counts, cious, confidences, threshold, ciou_threshold)
        scores.append(2 * recall * precision / (recall + precision) if recall + precision > 0 else 0.0)
    return thresholds, scores


def size_bucket(area):
    """The SLAVC bucket name of a ground-truth area (pixels of the 224 x 224 map)."""
    for name, (low, high) in SIZE_BUCKETS.items():
        if low <= area < high:
            return name
    raise ValueError(f"area {area} is outside every size bucket")


def _subset_numbers(box_counts, cious, confidences):
    """AP, max-F1, LocAcc and counts of one subset (NaN when it is empty, as SLAVC)."""
    if not box_counts:
        return {"ap": float("nan"), "max_f1": float("nan"), "loc_acc": float("nan"), "f1": [], "n_items": 0,
                "n_positive": 0}
    positives = [index for index, count in enumerate(box_counts) if count > 0]
    loc_acc = (precision_recall([box_counts[i] for i in positives], [cious[i] for i in positives],
                                [confidences[i] for i in positives], ALWAYS_DETECTED)[0] if positives else float("nan"))
    _, scores = f1_scores(box_counts, cious, confidences)
    return {
        "ap": average_precision(box_counts, cious, confidences),
        "max_f1": float(max(scores)),
        "loc_acc": float(loc_acc),
        "f1": [float(score) for score in scores],
        "n_items": len(box_counts),
        "n_positive": len(positives),
    }


def summarise_extended(box_counts, cious, confidences, areas):
    """Every number of an extended test set, overall and per box-size bucket.

    Args:
        box_counts: per item, its number of boxes (0 = negative).
        cious: per item, its cIoU.
        confidences: per item, its confidence.
        areas: per item, the sum of its 224 x 224 ground-truth map (0 for negatives).

    Returns:
        {"ap", "max_f1", "loc_acc", "f1", "n_items", "n_positive", "n_negative", "buckets": {name: the same keys
        over the positives of that size}}.
    """
    box_counts, cious, confidences = _as_lists(box_counts, cious, confidences)
    areas = [float(area) for area in areas]
    if len(areas) != len(box_counts):
        raise ValueError(f"areas has {len(areas)} values for {len(box_counts)} items")
    report = _subset_numbers(box_counts, cious, confidences)
    report["n_negative"] = sum(count == 0 for count in box_counts)
    report["buckets"] = {}
    for name, (low, high) in SIZE_BUCKETS.items():
        chosen = [i for i, area in enumerate(areas) if low <= area < high and box_counts[i] > 0]
        report["buckets"][name] = _subset_numbers([box_counts[i] for i in chosen], [cious[i] for i in chosen],
                                                  [confidences[i] for i in chosen])
    return report
