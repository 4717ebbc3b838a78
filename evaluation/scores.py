"""The per-item scores of evaluate.py and their summaries: cIoU and confidence of every row (AV, OBJ, AV+OGL)
under a protocol, then the LVS numbers over the positives and SLAVC's numbers with the negatives.

Usage (from evaluate.py):
    rows = score_items(maps, names, ground_truths, protocols.PROTOCOLS["ezvsl"], (-1.0, 1.0), alpha=0.4,
                       protocol="ezvsl")
    report = row_report(rows["av"], positives, negatives, True, box_counts, areas)
"""

from evaluation import extended_metrics
from evaluation import metrics
from evaluation import object_guidance
from evaluation import protocols

ROWS = {"av": "AV", "obj": "OBJ", "av_ogl": "AV+OGL"}


def item_scores(large_map, ground_truth, rule, scaled_map):
    """(cIoU, confidence) of one map: the protocol's prediction rule, SLAVC's top-quarter confidence."""
    return protocols.score(large_map, ground_truth, rule), extended_metrics.top_quarter_mean(scaled_map)


def score_items(maps, names, ground_truths, spec, confidence_range, alpha=None, protocol="lvs"):
    """Every row's (cIoU, confidence) of every item from its raw maps.

    Args:
        maps: dict name -> {"similarity": h x w, "object": optional h' x w'}.
        names: the names to score (all in maps).
        ground_truths: dict name -> 224 x 224 ground truth (zeros for negatives).
        spec: protocols.PROTOCOLS[protocol].
        confidence_range: (low, high) of the audio-visual map.
        alpha: the OGL weight, or None for the AV row only.
        protocol: the protocol's name (how OGL mixes).

    Returns:
        dict row ("av", "obj", "av_ogl") -> dict name -> (cIoU, confidence).
    """
    low, high = confidence_range
    rows = {row: {} for row in (ROWS if alpha is not None else ["av"])}
    for name in names:
        ground_truth = ground_truths[name]
        av_large = protocols.upsample(maps[name]["similarity"], metrics.MAP_SIZE, spec["upsampling"])
        av_scaled = extended_metrics.fixed_range_scale(av_large, low, high)
        rows["av"][name] = item_scores(av_large, ground_truth, spec["prediction"], av_scaled)
        if alpha is None:
            continue
        object_large = protocols.upsample(maps[name]["object"], metrics.MAP_SIZE, spec["upsampling"])
        object_scaled = object_guidance.scale_object(object_large)
        rows["obj"][name] = item_scores(object_large, ground_truth, spec["prediction"], object_scaled)
        mixed = object_guidance.mix(av_large, object_large, alpha, protocol, confidence_range)
        rows["av_ogl"][name] = item_scores(mixed, ground_truth, spec["prediction"], mixed)
    return rows


def baseline_scores(names, ground_truths):
    """The centre baseline's (cIoU, confidence) of every item (metrics.score_map of the fixed box map)."""
    heatmap = metrics.centre_baseline_map()  # 224 x 224, 1 inside the centred box
    confidence = extended_metrics.top_quarter_mean(heatmap)
    return {"av": {name: (metrics.score_map(heatmap, ground_truths[name]), confidence) for name in names}}


def row_report(scores, positives, negatives, extended, box_counts, areas):
    """The numbers of one row: the LVS summary over the positives, and the extended numbers with the negatives."""
    summary = metrics.summarise([scores[name][0] for name in positives])
    report = {"ciou": summary["ciou"], "auc": summary["auc"], "mean_ciou": summary["mean_ciou"],
              "n_scored": summary["items"], "n_undefined": summary["undefined"]}
    if extended:
        names = positives + negatives
        numbers = extended_metrics.summarise_extended([box_counts[name] for name in names],
                                                      [scores[name][0] for name in names],
                                                      [scores[name][1] for name in names],
                                                      [areas[name] for name in names])
        thresholds, precisions, recalls = extended_metrics.precision_recall_curve(
            [box_counts[name] for name in names], [scores[name][0] for name in names],
            [scores[name][1] for name in names])
        report.update(numbers)
        report["precision_recall"] = {"thresholds": thresholds, "precision": precisions, "recall": recalls}
    return report


