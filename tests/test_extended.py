"""extended_metrics.py: hand-computed AP / max-F1 / LocAcc / buckets, and the recorded outputs of SLAVC's code.

The references are stoneMo/SLAVC utils.py (EvaluatorFull: calc_precision_recall, calc_ap, cal_auc, filter_subset's
size buckets, finalize_stats with its F1 lines) and test.py (the confidence), run once outside this repository on
seeded item lists: tests/fixtures/reference_outputs/slavc_evaluator_full.json and slavc_test_py.json.
"""

import math

import numpy as np
import pytest

import reference_outputs
from evaluation import extended_metrics
from evaluation import metrics
from evaluation.extended_metrics import average_precision, f1_scores, precision_recall, summarise_extended
from evaluation.protocols import SLAVC


FULL = reference_outputs.load("slavc_evaluator_full.json")
SLAVC_TEST = reference_outputs.load("slavc_test_py.json")


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


@pytest.mark.parametrize("index", range(4))
def test_slavc_evaluator_full_outputs_on_random_items(index):
    # 7, 60, 450 and 1234 seeded items: box counts 0..2, cIoUs rounded to 3 decimals (some exactly 0.5 and 0.75),
    # confidences rounded to 2 (ties, which SLAVC keeps), areas for the positives. Counts and precision / recall
    # ratios are computed the same way: exact. AP and F1 sum or divide the same values: equal to 1e-12.
    data, recorded = FULL["inputs"]["sets"][index], FULL["outputs"]["sets"][index]
    boxes, cious, confidences, areas = data["box_counts"], data["cious"], data["confidences"], data["areas"]
    assert len(boxes) == (7, 60, 450, 1234)[index]
    for threshold, expected in zip(FULL["inputs"]["thresholds"], recorded["precision_recall"]):
        assert precision_recall(boxes, cious, confidences, threshold) == tuple(expected)
    stats, subsets = recorded["finalize_stats"], recorded["subsets"]
    report = summarise_extended(boxes, cious, confidences, areas)
    assert report["ap"] == pytest.approx(stats["AP-all@50"], abs=1e-12)
    assert report["f1"] == pytest.approx(subsets["all@50"]["f1"], abs=1e-12)
    assert report["max_f1"] == max(subsets["all@50"]["f1"])
    assert report["loc_acc"] == stats["Precision-visible@50"]
    assert report["n_positive"] == len(subsets["visible@50"]["items"])
    for iou_threshold in (0.5, 0.75):
        suffix = f"@{int(iou_threshold * 100)}"
        for subset in ("all", "visible") + tuple(extended_metrics.SIZE_BUCKETS):
            chosen = subsets[subset + suffix]["items"]
            if subset in extended_metrics.SIZE_BUCKETS:
                assert chosen == [i for i, area in enumerate(areas)
                                  if extended_metrics.size_bucket(area) == subset and boxes[i] > 0]
            if not chosen:
                assert stats[f"AP-{subset}{suffix}"] is None
                if subset in extended_metrics.SIZE_BUCKETS and iou_threshold == 0.5:
                    assert report["buckets"][subset]["n_items"] == 0 and math.isnan(report["buckets"][subset]["ap"])
                continue
            columns_ = ([boxes[i] for i in chosen], [cious[i] for i in chosen], [confidences[i] for i in chosen])
            assert average_precision(*columns_, ciou_threshold=iou_threshold) == pytest.approx(
                stats[f"AP-{subset}{suffix}"], abs=1e-12)
            thresholds, scores = f1_scores(*columns_, ciou_threshold=iou_threshold)
            assert thresholds == subsets[subset + suffix]["f1_thresholds"]
            assert scores == pytest.approx(subsets[subset + suffix]["f1"], abs=1e-12)
            assert " ".join(f"{value * 100:.1f}" for value in scores) == stats[f"F1-{subset}{suffix}"]
            assert precision_recall(*columns_, -1000, iou_threshold)[0] == stats[f"Precision-{subset}{suffix}"]
            positives = [cious[i] for i in chosen if boxes[i] > 0]
            # SLAVC's cal_auc is LVS's AUC over the positives (sklearn's trapezoids, summed in another order)
            assert metrics.area_under_curve(positives) == pytest.approx(stats[f"AUC-{subset}{suffix}"], abs=1e-15)
            if subset in extended_metrics.SIZE_BUCKETS and iou_threshold == 0.5:
                mine = report["buckets"][subset]
                assert mine["n_items"] == len(chosen)
                assert mine["ap"] == pytest.approx(stats[f"AP-{subset}{suffix}"], abs=1e-12)
                assert mine["max_f1"] == max(subsets[subset + suffix]["f1"])
                assert mine["loc_acc"] == stats[f"Precision-{subset}{suffix}"]


@pytest.mark.parametrize("case", range(4))
def test_confidence_is_slavcs_top_quarter_of_the_fixed_range_scaled_map(case):
    # SLAVC test.py's confidence lines recorded on seeded maps of 16 x 16, 14 x 14, 7 x 7 and 5 x 3 (n // 4 and
    # -n // 4 differ when n is not a multiple of 4); summing the same sorted values: equal to 1e-12
    heatmap = np.array(SLAVC_TEST["inputs"]["confidence_cases"][case]["map"])
    expected = SLAVC_TEST["outputs"]["confidence_cases"][case]
    assert SLAVC.confidence(heatmap, (-1.0, 1.0)) == pytest.approx(expected, abs=1e-12)
    # hand: a map of one value v has confidence (v + 1) / 2 whatever its size
    assert SLAVC.confidence(np.full(heatmap.shape, 0.2), (-1.0, 1.0)) == pytest.approx(0.6)
    with pytest.raises(ValueError, match="low < high"):
        SLAVC.confidence(heatmap, (1.0, 1.0))


def test_mismatched_lengths_are_refused():
    with pytest.raises(ValueError, match="differ in length"):
        precision_recall([1, 0], [0.5], [0.1, 0.2], 0.1)
    with pytest.raises(ValueError, match="areas"):
        summarise_extended([1], [0.5], [0.3], [1, 2])
