"""The per-item scores of evaluate.py and their summaries: cIoU and confidence of every row (AV, OBJ, AV+OGL)
under a protocol (one Protocol.score_item call per item), then the LVS numbers over the positives and SLAVC's
numbers with the negatives.

Usage (from evaluate.py):
    rows = score_items(maps, names, ground_truths, protocols.PROTOCOLS["ezvsl"], (-1.0, 1.0), alpha=0.4)
    report = row_report(rows["av"], positives, negatives, True, box_counts, areas)
"""

from evaluation import extended_metrics
from evaluation import metrics
from evaluation import protocols

ROWS = {"av": "AV", "obj": "OBJ", "av_ogl": "AV+OGL"}


def score_items(maps, names, ground_truths, protocol, confidence_range, alpha=None):
    """Every row's (cIoU, confidence) of every item from its raw maps.

    Args:
        maps: dict name -> {"similarity": h x w, "object": h' x w' (needed with alpha)}.
        names: the names to score (all in maps).
        ground_truths: dict name -> 224 x 224 ground truth (zeros for negatives).
        protocol: a protocols.Protocol (protocols.PROTOCOLS[name]).
        confidence_range: (low, high) of the audio-visual map.
        alpha: the OGL weight, or None for the AV row only.

    Returns:
        dict row ("av", "obj", "av_ogl") -> dict name -> (cIoU, confidence).
    """
    rows = {row: {} for row in (ROWS if alpha is not None else ["av"])}
    for name in names:
        object_map = maps[name]["object"] if alpha is not None else None
        item = protocol.score_item(maps[name]["similarity"], ground_truths[name], confidence_range, object_map, alpha)
        for row, scores in item.items():
            rows[row][name] = scores
    return rows


def baseline_scores(names, ground_truths):
    """The centre baseline's (cIoU, confidence) of every item (metrics.score_map of the fixed box map)."""
    heatmap = metrics.centre_baseline_map()  # 224 x 224, 1 inside the centred box
    confidence = protocols.top_quarter_mean(heatmap)
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


