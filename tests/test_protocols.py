"""protocols.py against PyTorch's F.interpolate and a transcription of EZ-VSL test.py's thresholding.

Reference: stoneMo/EZ-VSL test.py (validate: F.interpolate(..., mode='bilinear', align_corners=True),
utils.normalize_img, thr = np.sort(pred.flatten())[int(h * w * 0.5)]) and utils.py (Evaluator.cal_CIOU:
infer_map[infer >= thres] = 1); stoneMo/SLAVC test.py uses mode='bicubic'.
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from evaluation import metrics
from evaluation import object_guidance
from evaluation import protocols


# ---- EZ-VSL, utils.py and test.py, transcribed ----------------------------------------------------------------
def ezvsl_normalize_img(value, vmax=None, vmin=None):
    vmin = value.min() if vmin is None else vmin
    vmax = value.max() if vmax is None else vmax
    if not (vmax - vmin) == 0:
        value = (value - vmin) / (vmax - vmin)
    return value


def ezvsl_cal_ciou(infer, gtmap, thres=0.01):
    infer_map = np.zeros((224, 224))
    infer_map[infer >= thres] = 1
    return np.sum(infer_map*gtmap) / (np.sum(gtmap) + np.sum(infer_map * (gtmap == 0)))


def ezvsl_item_ciou(heatmap_small, gt_map, mode="bilinear"):
    heatmap = F.interpolate(torch.from_numpy(heatmap_small)[None, None], size=(224, 224), mode=mode,
                            align_corners=True).numpy()
    pred_av = ezvsl_normalize_img(heatmap[0, 0])
    thr_av = np.sort(pred_av.flatten())[int(pred_av.shape[0] * pred_av.shape[1] * 0.5)]
    return ezvsl_cal_ciou(pred_av, gt_map, thr_av)
# ---- end of the transcription ---------------------------------------------------------------------------------


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
def test_ezvsl_prediction_and_ciou_equal_the_transcription(mode):
    rng = np.random.default_rng(5)
    for trial in range(6):
        raw = rng.normal(size=(7, 7)) if trial else np.round(rng.normal(size=(7, 7)))  # rounded: ties at the median
        gt = np.zeros((224, 224))
        x0, y0 = rng.integers(0, 150, size=2)
        gt[y0:y0 + 60, x0:x0 + 70] = 1
        if trial % 2:
            gt[:40, :40] += 0.5  # Flickr-like consensus values
        mine = protocols.score(protocols.upsample(raw, 224, mode), gt, "ezvsl_median")
        assert mine == pytest.approx(ezvsl_item_ciou(raw, gt, mode), abs=1e-12)


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


def test_ogl_mix_is_slavcs_fixed_range_mix_or_ezvsls_min_max_mix():
    rng = np.random.default_rng(9)
    heatmap_av, heatmap_obj = rng.uniform(-0.3, 0.8, size=(224, 224)), rng.uniform(0, 3, size=(224, 224))
    min_max_norm = lambda x, xmin, xmax: (x - xmin) / (xmax - xmin)  # noqa: E731  (SLAVC test.py)
    slavc = min_max_norm(heatmap_av, -1.0, 1.0) * 0.4 + min_max_norm(heatmap_obj, 0.0, 2.5) * (1 - 0.4)
    np.testing.assert_allclose(object_guidance.mix(heatmap_av, heatmap_obj, 0.4, "slavc"), slavc, atol=1e-12)
    pred_av, pred_obj = ezvsl_normalize_img(heatmap_av), ezvsl_normalize_img(heatmap_obj)  # EZ-VSL test.py
    ezvsl = ezvsl_normalize_img(pred_av * 0.4 + pred_obj * (1 - 0.4))
    np.testing.assert_allclose(object_guidance.mix(heatmap_av, heatmap_obj, 0.4, "ezvsl"), ezvsl, atol=1e-12)
    assert object_guidance.mix(heatmap_av, heatmap_obj, 1.0, "lvs", (-0.5, 1.5)) == pytest.approx((heatmap_av + 0.5) / 2)
    with pytest.raises(ValueError, match="weights not found"):
        object_guidance.ObjectMapper("/nowhere/resnet18.weights.h5")
