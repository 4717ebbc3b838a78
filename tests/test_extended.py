"""extended_metrics.py: hand-computed AP / max-F1 / LocAcc / buckets, and a transcription check against SLAVC.

The reference below is stoneMo/SLAVC utils.py (EvaluatorFull.calc_precision_recall, calc_ap, the F1 lines of
finalize_stats, filter_subset's size buckets) and test.py (the confidence), transcribed with only the class
wrapper, the asserts and the print removed.
"""

import math

import numpy as np
import pytest

from evaluation import extended_metrics
from evaluation.extended_metrics import average_precision, confidence, f1_scores, precision_recall, summarise_extended


# ---- SLAVC, utils.py (EvaluatorFull), transcribed -------------------------------------------------------------
def slavc_calc_precision_recall(bb_list, ciou_list, confidence_list, confidence_thr, ciou_thr=0.5):
    true_pos, false_pos, false_neg = 0, 0, 0
    for bb, ciou, confidence in zip(bb_list, ciou_list, confidence_list):
        if bb == 0:
            if confidence >= confidence_thr:
                false_pos += 1
        else:
            if confidence >= confidence_thr:
                if ciou >= ciou_thr:
                    true_pos += 1
                else:
                    false_pos += 1
            else:
                false_neg += 1
    precision = 1. if true_pos + false_pos == 0 else true_pos / (true_pos + false_pos)
    recall = 1. if true_pos + false_neg == 0 else true_pos / (true_pos + false_neg)
    return precision, recall


def slavc_calc_ap(bb_list_full, ciou_list_full, confidence_list_full, iou_thr=0.5):
    precision, recall, skip_thr = [], [], max(1, len(ciou_list_full)//200)
    for thr in np.sort(np.array(confidence_list_full))[:-1][::-skip_thr]:
        p, r = slavc_calc_precision_recall(bb_list_full, ciou_list_full, confidence_list_full, thr, iou_thr)
        precision.append(p)
        recall.append(r)
    precision_max = [np.max(precision[i:]) for i in range(len(precision))]
    ap = sum([precision_max[i]*(recall[i+1]-recall[i])
              for i in range(len(precision_max)-1)])
    return ap


def slavc_f1(bb_list, ciou_list, conf_list, iou_thr=0.5):
    conf_thr = list(sorted(conf_list))[::max(1, len(conf_list)//10)]
    pr = [slavc_calc_precision_recall(bb_list, ciou_list, conf_list, thr, iou_thr) for thr in conf_thr]
    f1 = [2*r*p/(r+p) if r+p > 0 else 0. for p, r in pr]
    return f1


def slavc_subset(subset, area_list, bb_list):
    min_sizes = {'small': 0, 'medium': 32**2, 'large': 96**2, 'huge': 144**2}
    max_sizes = {'small': 32**2, 'medium': 96**2, 'large': 144**2, 'huge': 10000**2}
    return [i for i, sz in enumerate(area_list) if min_sizes[subset] <= sz < max_sizes[subset] and bb_list[i] > 0]


def slavc_confidence(heatmap_av, av_min=-1.0, av_max=1.0):  # test.py, with LVS's cosine range
    min_max_norm = lambda x, xmin, xmax: (x - xmin) / (xmax - xmin)  # noqa: E731
    n = heatmap_av.size
    scores_av = min_max_norm(heatmap_av, av_min, av_max)
    return np.sort(scores_av.flatten())[-n//4:].mean()
# ---- end of the transcription ---------------------------------------------------------------------------------


# (boxes, cIoU, confidence): A right place, B negative, C wrong place, D right place but unsure, E negative
HAND_ITEMS = [(1, 0.8, 0.9), (0, 0.0, 0.8), (1, 0.3, 0.7), (1, 0.6, 0.4), (0, 0.0, 0.2)]
HAND_AREAS = [500, 0, 5000, 5000, 0]


def columns(items):
    return [item[0] for item in items], [item[1] for item in items], [item[2] for item in items]


def test_hand_computed_precision_recall_ap_f1_and_loc_acc():
    boxes, cious, confidences = columns(HAND_ITEMS)
    # t = 0.7: A TP, B FP, C FP (wrong place), D FN (not detected), E not detected -> p 1/3, r 1/2
    assert precision_recall(boxes, cious, confidences, 0.7) == pytest.approx((1 / 3, 1 / 2))
    # AP walks t = 0.8, 0.7, 0.4, 0.2: (p, r) = (1/2, 1/3), (1/3, 1/2), (1/2, 1), (2/5, 1);
    # right-maximised p = 1/2, 1/2, 1/2, 2/5; AP = 1/2 (1/2 - 1/3) + 1/2 (1 - 1/2) + 1/2 (1 - 1) = 1/3
    assert average_precision(boxes, cious, confidences) == pytest.approx(1 / 3)
    # F1 at t = 0.2, 0.4, 0.7, 0.8, 0.9: 4/7, 2/3, 2/5, 2/5, 1/2
    thresholds, scores = f1_scores(boxes, cious, confidences)
    assert thresholds == [0.2, 0.4, 0.7, 0.8, 0.9]
    assert scores == pytest.approx([4 / 7, 2 / 3, 2 / 5, 2 / 5, 1 / 2])
    report = summarise_extended(boxes, cious, confidences, HAND_AREAS)
    assert report["ap"] == pytest.approx(1 / 3)
    assert report["max_f1"] == pytest.approx(2 / 3)
    assert report["loc_acc"] == pytest.approx(2 / 3)  # A and D of the three positives have cIoU >= 0.5
    assert (report["n_items"], report["n_positive"], report["n_negative"]) == (5, 3, 2)
    # buckets hold positives only: small = {A}, medium = {C, D}
    small, medium = report["buckets"]["small"], report["buckets"]["medium"]
    assert (small["n_items"], medium["n_items"]) == (1, 2)
    assert small["loc_acc"] == 1.0 and medium["loc_acc"] == pytest.approx(0.5)
    assert medium["ap"] == 0.0  # one AP threshold (sorted confidences but the largest) gives no recall step
    assert medium["max_f1"] == pytest.approx(2 / 3)  # t = 0.4: C FP, D TP -> p 1/2, r 1
    assert report["buckets"]["large"]["n_items"] == 0 and math.isnan(report["buckets"]["large"]["ap"])


def test_ap_counts_recall_from_the_second_largest_confidence_as_slavc_does():
    # SLAVC's AP never sees recall 0: its first point is the threshold at the second-largest confidence.
    boxes, cious = [1, 1, 1, 0, 0, 0], [0.9, 0.8, 0.7, 0, 0, 0]
    # sure on positives: thresholds 0.8, 0.7, 0.3, 0.2, 0.1 give recall 2/3, 1, 1, 1, 1 at precision 1, 1, 3/4,
    # 3/5, 1/2 -> AP = 1 * (1 - 2/3) = 1/3
    assert average_precision(boxes, cious, [0.9, 0.8, 0.7, 0.1, 0.2, 0.3]) == pytest.approx(1 / 3)
    # sure on negatives: thresholds 0.8, 0.7, 0.6, 0.5, 0.4 give (p, r) = (0, 0), (0, 0), (1/4, 1/3), (2/5, 2/3),
    # (1/2, 1); right-maximised precision 1/2 everywhere -> AP = 1/2 * 1 = 1/2
    assert average_precision(boxes, cious, [0.6, 0.5, 0.4, 0.9, 0.8, 0.7]) == pytest.approx(1 / 2)


@pytest.mark.parametrize("count", [7, 60, 450, 1234])
def test_transcription_of_slavc_on_random_items(count):
    rng = np.random.default_rng(count)
    boxes = list(rng.integers(0, 3, size=count))
    cious = list(rng.uniform(0, 1, size=count))
    confidences = list(np.round(rng.uniform(0, 1, size=count), 2))  # rounding makes ties, which SLAVC keeps
    areas = list(np.where(np.array(boxes) > 0, rng.integers(0, 224 * 224 + 1, size=count), 0))
    for threshold in (-1000, 0.0, 0.37, 0.5, 1.0):
        assert precision_recall(boxes, cious, confidences, threshold) == slavc_calc_precision_recall(
            boxes, cious, confidences, threshold)
    assert average_precision(boxes, cious, confidences) == pytest.approx(slavc_calc_ap(boxes, cious, confidences),
                                                                         abs=1e-12)
    report = summarise_extended(boxes, cious, confidences, areas)
    reference_f1 = slavc_f1(boxes, cious, confidences)
    assert report["f1"] == pytest.approx(reference_f1, abs=1e-12) and report["max_f1"] == max(reference_f1)
    visible = [i for i, count in enumerate(boxes) if count > 0]
    loc_acc = slavc_calc_precision_recall([boxes[i] for i in visible], [cious[i] for i in visible],
                                          [confidences[i] for i in visible], -1000)[0]
    assert report["loc_acc"] == loc_acc
    for bucket in extended_metrics.SIZE_BUCKETS:
        chosen = slavc_subset(bucket, areas, boxes)
        mine = report["buckets"][bucket]
        assert mine["n_items"] == len(chosen)
        if chosen:
            subset = ([boxes[i] for i in chosen], [cious[i] for i in chosen], [confidences[i] for i in chosen])
            assert mine["ap"] == pytest.approx(slavc_calc_ap(*subset), abs=1e-12)
            assert mine["max_f1"] == pytest.approx(max(slavc_f1(*subset)), abs=1e-12)


@pytest.mark.parametrize("shape", [(224, 224), (7, 7), (5, 3)])
def test_confidence_is_slavcs_top_quarter_of_the_fixed_range_scaled_map(shape):
    heatmap = np.random.default_rng(1).uniform(-1, 1, size=shape)
    assert confidence(heatmap, -1.0, 1.0) == pytest.approx(slavc_confidence(heatmap), abs=1e-12)
    # hand: a map of one value v has confidence (v + 1) / 2 whatever its size
    assert confidence(np.full(shape, 0.2), -1.0, 1.0) == pytest.approx(0.6)
    with pytest.raises(ValueError, match="low < high"):
        confidence(heatmap, 1.0, 1.0)


def test_mismatched_lengths_are_refused():
    with pytest.raises(ValueError, match="differ in length"):
        precision_recall([1, 0], [0.5], [0.1, 0.2], 0.1)
    with pytest.raises(ValueError, match="areas"):
        summarise_extended([1], [0.5], [0.3], [1, 2])
