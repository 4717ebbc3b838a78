"""metrics.py against hand-computed cIoU / AUC values, PyTorch's bilinear resize and the recorded outputs of the
official test.py (tests/fixtures/reference_outputs/lvs_test_py.json)."""

import math

import numpy as np
import pytest
import torch

import reference_outputs
from evaluation.metrics import (
    AUC_THRESHOLDS,
    area_under_curve,
    binarise_at_median,
    centre_baseline_map,
    ciou,
    median_threshold,
    resize_and_normalise,
    score_map,
    success_curve,
    success_rate,
    summarise,
)

SIZE = 224


def box_map(top, left, bottom, right, value=1.0, size=SIZE):
    """size x size zeros with `value` on rows top:bottom, columns left:right."""
    heatmap = np.zeros((size, size))
    heatmap[top:bottom, left:right] = value
    return heatmap


# --- resize and normalise ---------------------------------------------------------------------------------


def test_resize_matches_torch_bilinear():
    # cv2 INTER_LINEAR and torch bilinear (align_corners=False) both sample at half-pixel centres and clamp at
    # the border, so upsampling 14 -> 224 must agree; then min-max normalise the torch result independently.
    raw = np.random.default_rng(0).normal(size=(14, 14)).astype(np.float32)
    reference = torch.nn.functional.interpolate(
        torch.from_numpy(raw)[None, None], size=(SIZE, SIZE), mode="bilinear", align_corners=False
    )[0, 0].numpy()
    reference = (reference - reference.min()) / (reference.max() - reference.min())
    result = resize_and_normalise(raw)
    assert result.shape == (SIZE, SIZE) and result.dtype == np.float32
    np.testing.assert_allclose(result, reference, atol=2e-6)
    assert result.min() == 0.0 and result.max() == 1.0


def test_resize_orientation_and_higher_is_source():
    # a 2 x 2 map whose bottom-right value is the largest: the normalised map is 1 at the bottom-right
    # corner and 0 at the top-left one (the official 1 - minmax(-map) keeps "high similarity = 1").
    raw = np.array([[-1.0, 0.0], [0.0, 3.0]])
    result = resize_and_normalise(raw, size=8)
    assert result[-1, -1] == 1.0 and result[0, 0] == 0.0
    # the border rows/columns are clamped copies: with 2 -> 8 the first two output rows sample source row 0
    np.testing.assert_array_equal(result[0], result[1])


def test_flat_map_gives_zeros_without_nan():
    result = resize_and_normalise(np.full((14, 14), 0.7))
    assert result.shape == (SIZE, SIZE)
    assert not np.isnan(result).any() and not result.any()


def test_resize_rejects_bad_input():
    with pytest.raises(ValueError):
        resize_and_normalise(np.zeros((2, 14, 14)))
    with pytest.raises(ValueError):
        resize_and_normalise(np.array([[0.0, np.nan], [1.0, 2.0]]))


# --- median binarisation ----------------------------------------------------------------------------------


def test_median_threshold_keeps_strictly_above():
    # all-distinct values in raster order: pixel (r, c) has rank r * 224 + c. The official threshold is the
    # value of rank 224 * 224 // 2 = 25088 = pixel (112, 0); strictly above it are the 223 pixels (112, 1..223)
    # and the 111 full rows 113..223: 223 + 111 * 224 = 25087 pixels.
    ranks = np.arange(SIZE * SIZE, dtype=np.float64).reshape(SIZE, SIZE) / (SIZE * SIZE - 1)
    binary = binarise_at_median(ranks)
    assert median_threshold(ranks) == ranks[112, 0]
    assert binary.sum() == 25087
    assert binary[112, 0] == 0 and binary[112, 1] == 1 and not binary[:112].any() and binary[113:].all()


def test_ties_at_the_maximum_stay_predicted():
    # 30000 pixels at 1 and 20176 at 0: sorted, rank 25088 falls among the ones, so the threshold is 1 and
    # nothing is strictly above it; the official pred[pred < 1] = 0 still keeps the 30000 maxima.
    many = np.zeros(SIZE * SIZE)
    many[:30000] = 1
    many = many.reshape(SIZE, SIZE)
    assert median_threshold(many) == 1.0
    np.testing.assert_array_equal(binarise_at_median(many), many)
    # 20000 ones: 30176 zeros cover rank 25088, threshold 0, the ones are strictly above it
    few = np.zeros(SIZE * SIZE)
    few[:20000] = 1
    few = few.reshape(SIZE, SIZE)
    assert median_threshold(few) == 0.0
    np.testing.assert_array_equal(binarise_at_median(few), few)


# --- cIoU -------------------------------------------------------------------------------------------------


def test_prediction_equal_to_box_scores_one():
    ground_truth = box_map(50, 60, 150, 200)
    assert ciou(ground_truth, ground_truth) == 1.0
    # a one-annotator Flickr map is 0.5 inside the box: 0.5 * A / (0.5 * A + 0) is still 1
    assert ciou(ground_truth, ground_truth * 0.5) == 1.0


def test_prediction_outside_box_scores_zero():
    ground_truth = box_map(0, 0, 100, 100)
    prediction = box_map(120, 120, 224, 224)
    assert ciou(prediction, ground_truth) == 0.0


def test_consensus_map_by_hand():
    # ground truth: rows 0..9 x cols 0..9 = 1 (100 px, two annotators agree), rows 0..9 x cols 10..29 = 0.5
    # (200 px, one annotator). Prediction: rows 0..9 x cols 0..19 (100 px at 1, 100 px at 0.5) plus rows
    # 10..14 x cols 0..9 (50 px of background).
    # intersection = 100 * 1 + 100 * 0.5 = 150; sum(gt) = 100 + 200 * 0.5 = 200; predicted background = 50
    # cIoU = 150 / (200 + 50) = 0.6  (predicted 0.5-pixels count in the numerator only, at half weight)
    ground_truth = box_map(0, 0, 10, 10) + box_map(0, 10, 10, 30, value=0.5)
    prediction = box_map(0, 0, 10, 20) + box_map(10, 0, 15, 10)
    assert ciou(prediction, ground_truth) == pytest.approx(0.6, abs=1e-12)


def test_empty_ground_truth_scores_zero_or_nan_like_official():
    empty = np.zeros((SIZE, SIZE))
    # 0 / (0 + number of predicted pixels) = 0
    assert ciou(box_map(0, 0, 10, 10), empty) == 0.0
    # empty prediction and empty ground truth: 0 / 0, NaN in the official code too
    assert math.isnan(ciou(empty, empty))


def test_ciou_rejects_shape_mismatch():
    with pytest.raises(ValueError):
        ciou(np.zeros((SIZE, SIZE)), np.zeros((SIZE, SIZE - 1)))


# --- score_map: resize + median + cIoU --------------------------------------------------------------------


def test_score_map_median_decides():
    # raw map = column index (a 224 x 224 raw map is not resized). Each column holds 224 equal values, so
    # rank 25088 = 112 * 224 is column 112's value: predicted = columns 113..223 = 111 columns = 24864 px.
    raw = np.tile(np.arange(SIZE, dtype=np.float32), (SIZE, 1))
    # box = right half, columns 112..223 (25088 px): cIoU = 24864 / (25088 + 0) = 111 / 112
    assert score_map(raw, box_map(0, 112, 224, 224)) == pytest.approx(111 / 112, abs=1e-12)
    # box = left half: the map is high outside the box -> 0 / (25088 + 24864) = 0
    assert score_map(raw, box_map(0, 0, 224, 112)) == 0.0
    # a 56 x 56 box inside the predicted half: 3136 / (3136 + 24864 - 3136) = 3136 / 24864; the cap
    # cIoU <= box area / half frame in action
    assert score_map(raw, box_map(0, 168, 56, 224)) == pytest.approx(3136 / 24864, abs=1e-12)


def test_score_map_on_small_raw_map():
    # a 14 x 14 raw map peaking in its right half: after the bilinear resize the top half of the map is the
    # right half of the frame (the map only depends on the column, rising left to right)
    raw = np.tile(np.linspace(-1, 1, 14, dtype=np.float32), (14, 1))
    value = score_map(raw, box_map(0, 112, 224, 224))
    assert 0.95 < value <= 1.0
    assert score_map(raw, box_map(0, 0, 224, 112)) == 0.0


# --- success rate and AUC ---------------------------------------------------------------------------------


def test_thresholds_are_the_official_ones():
    assert len(AUC_THRESHOLDS) == 21
    np.testing.assert_array_equal(AUC_THRESHOLDS, [0.05 * index for index in range(21)])
    np.testing.assert_allclose(AUC_THRESHOLDS, np.linspace(0, 1, 21), atol=0)


def test_success_rate_counts_nan_as_failure():
    assert success_rate([0.49, 0.5, 0.51, math.nan]) == 0.5
    assert success_rate([0.2, 0.4], threshold=0.3) == 0.5
    with pytest.raises(ValueError):
        success_rate([])


def test_auc_all_half():
    # every cIoU = 0.5: success 1 at thresholds 0..0.5 (11 points, 0.05 * 10 == 0.5 exactly), 0 from 0.55
    # area = 10 * 0.05 * 1 + 0.5 * (1 + 0) * 0.05 = 0.525
    assert area_under_curve([0.5] * 7) == pytest.approx(0.525, abs=1e-12)


def test_auc_all_point_three_uses_float_thresholds():
    # 0.05 * 6 = 0.30000000000000004 > 0.3, so (as in the official code) 0.3 succeeds only at 0..0.25:
    # area = 5 * 0.05 * 1 + 0.5 * (1 + 0) * 0.05 = 0.275  (it would be 0.325 with an exact 0.3 threshold)
    thresholds, rates = success_curve([0.3, 0.3])
    np.testing.assert_array_equal(rates, [1.0] * 6 + [0.0] * 15)
    assert area_under_curve([0.3, 0.3]) == pytest.approx(0.275, abs=1e-12)


def test_auc_mixed_by_hand():
    # cIoUs 0, 0.52, 1: success 1 at t = 0; 2/3 at 0.05..0.5; 1/3 at 0.55..1.0 (1.0 >= 1.0)
    # area = 0.5 * (1 + 2/3) * 0.05 + 9 * 0.05 * 2/3 + 0.5 * (2/3 + 1/3) * 0.05 + 9 * 0.05 * 1/3
    #      = 0.041666... + 0.3 + 0.025 + 0.15 = 0.516666...
    expected = 0.5 * (1 + 2 / 3) * 0.05 + 9 * 0.05 * 2 / 3 + 0.5 * 1 * 0.05 + 9 * 0.05 / 3
    assert area_under_curve([0.0, 0.52, 1.0]) == pytest.approx(expected, abs=1e-12)
    assert expected == pytest.approx(0.5166666666666667, abs=1e-12)


def test_perfect_and_null_curves():
    assert area_under_curve([1.0, 1.0]) == pytest.approx(1.0, abs=1e-12)
    # all zeros: success 1 only at t = 0 -> one triangle 0.5 * 1 * 0.05
    assert area_under_curve([0.0]) == pytest.approx(0.025, abs=1e-12)


def test_summarise():
    summary = summarise([0.6, 0.2, math.nan, 0.5])
    assert summary["ciou"] == 0.5  # 0.6 and 0.5 of 4
    assert summary["mean_ciou"] == pytest.approx((0.6 + 0.2 + 0 + 0.5) / 4, abs=1e-12)
    assert summary["items"] == 4 and summary["undefined"] == 1
    assert summary["auc"] == pytest.approx(area_under_curve([0.6, 0.2, math.nan, 0.5]), abs=0)


# --- centred baseline -------------------------------------------------------------------------------------


def test_centre_box_baseline_predicts_its_box():
    # extent 0.5: a 112 x 112 box from row/column 56 to 167 (12544 px, a quarter of the frame). Inside and
    # outside are ties, the threshold is the outside value 0, so the prediction is exactly the box.
    baseline = centre_baseline_map(shape="box", extent=0.5)
    assert baseline.sum() == 112 * 112 and baseline[56, 56] == 1 and baseline[55, 56] == 0
    assert baseline[167, 167] == 1 and baseline[168, 167] == 0
    assert score_map(baseline, box_map(56, 56, 168, 168)) == 1.0
    # a box covering more than half the frame: threshold = 1 and the tie rule still predicts the box
    large = centre_baseline_map(shape="box", extent=0.8)  # side round(179.2) = 179
    assert score_map(large, large.astype(np.float64)) == 1.0


def test_centre_gaussian_baseline():
    baseline = centre_baseline_map(shape="gaussian", extent=0.25)
    assert baseline.shape == (SIZE, SIZE)
    np.testing.assert_allclose(baseline, baseline[::-1], atol=0)
    np.testing.assert_allclose(baseline, baseline.T, atol=0)
    assert baseline.argmax() in {111 * SIZE + 111, 111 * SIZE + 112, 112 * SIZE + 111, 112 * SIZE + 112}
    # the median keeps a centred disc of half the frame: area pi r^2 = 25088 -> r ~ 89.4 px
    predicted = binarise_at_median(resize_and_normalise(baseline))
    assert abs(predicted.sum() - 25087) <= 224  # ties along the ring move a few pixels at most
    assert predicted[112, 112] == 1 and predicted[112, 112 + 95] == 0 and predicted[112, 112 + 85] == 1


def test_centre_baseline_rejects_bad_arguments():
    with pytest.raises(ValueError):
        centre_baseline_map(shape="triangle")
    with pytest.raises(ValueError):
        centre_baseline_map(shape="box", extent=1.0)
    with pytest.raises(ValueError):
        centre_baseline_map(shape="gaussian", extent=0)


# --- the official test.py's outputs, recorded -------------------------------------------------------------


def test_matches_the_recorded_outputs_of_the_official_test_py():
    # tests/fixtures/reference_outputs/lvs_test_py.json: hche11/Localizing-Visual-Sounds-the-Hard-Way test.py's
    # per-item lines and AUC lines, run once on 20 seeded 14 x 14 float32 maps (plain, rounded for ties, with a
    # plateau at the minimum) and two-box consensus ground truths.
    reference = reference_outputs.load("lvs_test_py.json")
    items, recorded = reference["inputs"]["items"], reference["outputs"]["items"]
    assert len(items) == len(recorded) == 20
    cious = []
    for item, expected in zip(items, recorded):
        raw = np.array(item["raw_map"], dtype=np.float32)  # the recorded values are float32 ones
        ground_truth = reference_outputs.ground_truth(item["rectangles"], reference["inputs"]["clip_at"])
        normalised = resize_and_normalise(raw)
        # the same float32 cv2 resize and normalisation: the threshold value is identical, not merely close
        assert median_threshold(normalised) == expected["threshold"]
        prediction = binarise_at_median(normalised)
        assert prediction.sum() == expected["n_predicted"]
        assert reference_outputs.digest(prediction) == expected["prediction_sha256"]
        # the same float64 sums of the same binary map: the cIoU is equal to the last bit
        assert score_map(raw, ground_truth) == expected["ciou"]
        assert np.sum(prediction * ground_truth) == expected["intersection"]
        assert np.sum(ground_truth) + np.sum(prediction * (ground_truth == 0)) == expected["union"]
        cious.append(score_map(raw, ground_truth))
    assert len(set(cious)) > 15 and min(cious) < 0.5 < max(cious)  # the items spread over the curve
    outputs = reference["outputs"]
    np.testing.assert_array_equal(success_curve(cious)[1], outputs["success_rates"])
    assert success_rate(cious) == outputs["ciou_at_0.5"]
    # sklearn.metrics.auc and np.trapezoid add the same 20 trapezoids, possibly in another order: an ulp or two
    assert area_under_curve(cious) == pytest.approx(outputs["auc"], abs=1e-15)
