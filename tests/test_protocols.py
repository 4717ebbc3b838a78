"""protocols.py (and object_guidance.py's errors) against PyTorch's F.interpolate and the recorded outputs of EZ-VSL's and
SLAVC's test code (tests/fixtures/reference_outputs/ezvsl_test_py.json and slavc_test_py.json).

The references: stoneMo/EZ-VSL test.py (validate: bilinear F.interpolate with align_corners, min-max normalisation,
a threshold at the sorted map's middle value kept with >=, the OGL mix of min-max maps) and utils.py (Evaluator's
cIoU); stoneMo/SLAVC test.py (bicubic upsampling, fixed-range scaling, the OGL mix of scaled maps, relative
prediction) and utils.py (EvaluatorFull.update). Their code is not here: the fixtures hold its outputs on seeded
inputs, and the tests run our functions on the same inputs.
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import reference_outputs
from evaluation import metrics
from evaluation import object_guidance
from evaluation import protocols

EZVSL = reference_outputs.load("ezvsl_test_py.json")
SLAVC = reference_outputs.load("slavc_test_py.json")
# Our F.interpolate is two interpolation matrices in float64, PyTorch's a loop over output pixels: the same
# weights summed in another order, so values agree to a few ulps (the maps are of order 1). The binary maps must
# agree exactly: the ordering of the pixels, hence the median and the selection, is the same.
ULPS = 1e-12


def check_prediction(binary, ground_truth, expected):
    """A binary map and its cIoU against one recorded item (count and digest exact, cIoU to the last bits)."""
    assert binary.sum() == expected["n_predicted"]
    assert reference_outputs.digest(binary) == expected["prediction_sha256"]
    assert metrics.ciou(binary, ground_truth) == pytest.approx(expected["ciou"], abs=1e-15)


@pytest.mark.parametrize("mode", ["bilinear", "bicubic"])
@pytest.mark.parametrize("shape", [(7, 7), (14, 14), (5, 9), (1, 4)])
def test_upsample_equals_torch_interpolate_with_align_corners(mode, shape):
    raw = np.random.default_rng(sum(shape)).normal(size=shape)
    reference = F.interpolate(torch.from_numpy(raw)[None, None], size=(224, 224), mode=mode, align_corners=True)
    np.testing.assert_allclose(protocols.upsample(raw, 224, mode), reference[0, 0].numpy(), atol=1e-10)


def test_cv2_mode_is_the_lvs_resize_and_modes_differ():
    raw = np.random.default_rng(3).normal(size=(14, 14)).astype(np.float32)
    lvs = protocols.upsample(raw, 224, "cv2_bilinear")
    assert np.array_equal(metrics.normalise(lvs), metrics.resize_and_normalise(raw))
    assert np.abs(lvs - protocols.upsample(raw, 224, "bilinear")).max() > 1e-3  # half-pixel vs corner alignment
    with pytest.raises(ValueError, match="unknown interpolation mode"):
        protocols.upsample(raw, 224, "nearest")


@pytest.mark.parametrize("mode", ["bilinear", "bicubic"])
def test_ezvsl_upsampling_prediction_ciou_and_ogl_equal_the_recorded_outputs(mode):
    # EZ-VSL's validate() lines, recorded with its bilinear upsampling and again with SLAVC's bicubic one, on 8
    # seeded 7 x 7 audio-visual maps (two rounded: ties at the median) and object maps, alpha 0.4
    inputs, run = EZVSL["inputs"], EZVSL["outputs"]["runs"][mode]
    points, alpha = inputs["grid"], inputs["alpha"]
    assert len(inputs["items"]) == len(run["items"]) == 8
    cious = []
    for item, expected in zip(inputs["items"], run["items"]):
        ground_truth = reference_outputs.ground_truth(item["rectangles"])
        av = protocols.upsample(np.array(item["raw_av"]), 224, mode)
        obj = protocols.upsample(np.array(item["raw_obj"]), 224, mode)
        mixed = protocols.EZVSL.mix_object(av, obj, alpha)
        for kind, large in (("av", av), ("obj", obj), ("av_obj", mixed)):
            reference = expected[kind]
            if kind != "av_obj":
                np.testing.assert_allclose(reference_outputs.at_grid(large, points), reference["upsampled_grid"],
                                           rtol=0, atol=ULPS)
            normalised = protocols.min_max(large)
            np.testing.assert_allclose(reference_outputs.at_grid(normalised, points), reference["normalised_grid"],
                                       rtol=0, atol=ULPS)
            assert np.sort(normalised.ravel())[224 * 224 // 2] == pytest.approx(reference["threshold"], abs=ULPS)
            check_prediction(protocols.ezvsl_binarise(large), ground_truth, reference)
        cious.append(metrics.ciou(protocols.ezvsl_binarise(av), ground_truth))
    summary, recorded = metrics.summarise(cious), run["summary"]["av"]
    assert summary["ciou"] == recorded["ap50"]
    assert summary["mean_ciou"] == pytest.approx(recorded["mean_ciou"], abs=1e-15)
    assert summary["auc"] == pytest.approx(recorded["auc"], abs=1e-15)  # sklearn's trapezoids vs ours


def test_slavc_bicubic_confidence_prediction_and_ogl_equal_the_recorded_outputs():
    # SLAVC's validate() lines with --relative_prediction (pred_size 0.5) and EvaluatorFull.update, recorded on 8
    # seeded items (two negatives without boxes), av range [-1, 1] (LVS's cosine), object range [0, 2.5]
    inputs, recorded = SLAVC["inputs"], SLAVC["outputs"]["items"]
    points, alpha = inputs["grid"], inputs["alpha"]
    assert len(inputs["items"]) == len(recorded) == 8
    assert tuple(inputs["obj_range"]) == protocols.OBJECT_RANGE
    assert tuple(inputs["av_range"]) == protocols.AUDIO_VISUAL_RANGE
    for item, expected in zip(inputs["items"], recorded):
        ground_truth = reference_outputs.ground_truth(item["rectangles"], inputs["clip_at"])
        av = protocols.upsample(np.array(item["raw_av"]), 224, "bicubic")
        obj = protocols.upsample(np.array(item["raw_obj"]), 224, "bicubic")
        scaled = {"av": protocols.fixed_range_scale(av, *inputs["av_range"]),
                  "obj": protocols.scale_object(obj),
                  "av_obj": protocols.SLAVC.mix_object(av, obj, alpha)}
        for kind, large in (("av", av), ("obj", obj), ("av_obj", scaled["av_obj"])):
            reference = expected[kind]
            if kind != "av_obj":
                np.testing.assert_allclose(reference_outputs.at_grid(large, points), reference["upsampled_grid"],
                                           rtol=0, atol=ULPS)
            np.testing.assert_allclose(reference_outputs.at_grid(scaled[kind], points), reference["scores_grid"],
                                       rtol=0, atol=ULPS)
            assert protocols.top_quarter_mean(scaled[kind]) == pytest.approx(reference["confidence"], abs=ULPS)
            # SLAVC min-max normalises the scaled map; the median rule on the map itself selects the same pixels
            check_prediction(protocols.ezvsl_binarise(large), ground_truth, reference)
            assert ground_truth.sum() == reference["area"] and len(item["rectangles"]) == reference["box_count"]
        assert protocols.SLAVC.confidence(av, inputs["av_range"]) == pytest.approx(expected["av"]["confidence"],
                                                                                     abs=ULPS)
        assert protocols.SLAVC.confidence(obj, protocols.OBJECT_RANGE) == pytest.approx(
            expected["obj"]["confidence"], abs=ULPS)


def test_ezvsl_keeps_at_least_half_the_map_and_lvs_rule_is_metrics_score_map():
    raw = np.random.default_rng(8).normal(size=(14, 14)).astype(np.float32)
    assert protocols.binarise(protocols.upsample(raw, 224, "bilinear"), "ezvsl_median").sum() >= 224 * 224 / 2
    gt = np.zeros((224, 224))
    gt[50:150, 20:120] = 1
    lvs = protocols.score(protocols.upsample(raw, 224, "cv2_bilinear"), gt, "lvs_median")
    assert lvs == metrics.score_map(raw, gt)
    with pytest.raises(ValueError, match="unknown prediction rule"):
        protocols.binarise(gt, "top_half")


def test_audio_window_start_and_centre():
    samples = np.arange(100, dtype=np.float32)  # 10 s at 10 Hz
    assert np.array_equal(protocols.audio_window(samples, 10, 3, "start"), samples[:30])
    assert np.array_equal(protocols.audio_window(samples, 10, 3, "centre"), samples[35:65])  # from 5 - 1.5 = 3.5 s
    assert np.array_equal(protocols.audio_window(samples[:20], 10, 3, "centre"), samples[:20])  # shorter: from 0
    with pytest.raises(ValueError, match="unknown audio window"):
        protocols.audio_window(samples, 10, 3, "end")


def test_ogl_mix_by_hand():
    # the EZ-VSL and SLAVC mixes against their recorded outputs are in the two tests above; here small hand cases
    heatmap_av = np.array([[-1.0, 0.0], [0.5, 1.0]])
    heatmap_obj = np.array([[0.0, 2.5], [1.25, 5.0]])
    # slavc: (av + 1) / 2 * 0.4 + obj / 2.5 * 0.6
    slavc = np.array([[0.0 + 0.0, 0.2 + 0.6], [0.3 + 0.3, 0.4 + 1.2]])
    np.testing.assert_allclose(protocols.SLAVC.mix_object(heatmap_av, heatmap_obj, 0.4), slavc, atol=1e-15)
    # ezvsl: min-max av = [[0, 0.5], [0.75, 1]], obj = [[0, 0.5], [0.25, 1]]; 0.4 av + 0.6 obj =
    # [[0, 0.5], [0.45, 1]], already spanning 0..1
    ezvsl = np.array([[0.0, 0.5], [0.45, 1.0]])
    np.testing.assert_allclose(protocols.EZVSL.mix_object(heatmap_av, heatmap_obj, 0.4), ezvsl, atol=1e-15)
    rng = np.random.default_rng(9)
    heatmap_av, heatmap_obj = rng.uniform(-0.3, 0.8, size=(224, 224)), rng.uniform(0, 3, size=(224, 224))
    assert protocols.LVS.mix_object(heatmap_av, heatmap_obj, 1.0, (-0.5, 1.5)) == pytest.approx((heatmap_av + 0.5) / 2)
    with pytest.raises(ValueError, match="weights not found"):
        object_guidance.ObjectMapper("/nowhere/resnet18.weights.h5")
