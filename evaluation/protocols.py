"""The three test protocols of the field, LVS, EZ-VSL and SLAVC, each one object that owns every rule of its test.

                LVS (Chen et al., test.py)           EZVSL (stoneMo/EZ-VSL test.py)          SLAVC (stoneMo/SLAVC)
    frame       shorter side to 224 + centre crop    Resize((224, 224)): the frame squashed  as EZVSL
    audio       the checkpoint's seconds, from 0 s   the middle 3 s (tiled if shorter)       as EZVSL
    upsampling  cv2.resize INTER_LINEAR              F.interpolate(bilinear, align_corners)  bicubic, align_corners
    prediction  1 - minmax(-map) > median (or == 1)  minmax(map) >= sorted(map)[n // 2]      as EZVSL
    confidence  SLAVC's, in all three: the mean of the top quarter of the map scaled from a fixed range to [0, 1]
    OGL mix     as SLAVC                             both min-max normalised, mixed, min-max  fixed ranges, mixed
SLAVC's prediction is its test.py with --relative_prediction and pred_size 0.5, the thresholding its numbers use
with OGL. `--resize` swaps a protocol's frame transform (Protocol.with_resize) and keeps every other rule.

Scoring an item is one call, Protocol.score_item: upsample the raw map, binarise it, cIoU against the ground truth
(metrics.ciou), and the confidence; with an object map, the same for the object map (OBJ) and for the OGL mix
(AV+OGL). Everything it runs is in this file but two leaves of metrics.py: the LVS normalisation and median
(metrics.normalise, metrics.binarise_at_median, the official float32 arithmetic) and metrics.ciou.

The ground truth is the same in all three: SLAVC's datasets.py builds VGG-SS maps from
(clip(box, 0, 1) * 224).astype(int), which equals LVS's int(224 * max(v, 0)) capped at 224 (annotations.py);
Flickr consensus maps are identical.

F.interpolate(..., align_corners=True) is written here as two 1-D interpolation matrices (out x in), applied to
rows and columns: output pixel i samples input coordinate i * (in - 1) / (out - 1); bicubic uses PyTorch's cubic
convolution kernel (A = -0.75) with the indices clamped at the border.

The confidence (SLAVC test.py) scales a map from a fixed range [low, high] to [0, 1] (not min-max) and takes the
mean of its largest n // 4 values: the audio-visual map from --confidence_range (LVS's cosine: -1, 1), the object
map from SLAVC's [0, 2.5] (obj_min, obj_max), the OGL mix as it is (already on [0, 1]).

Usage:
    from evaluation.protocols import PROTOCOLS
    protocol = PROTOCOLS["ezvsl"].with_resize(None)        # or .with_resize("crop")
    scores = protocol.score_item(similarity_map, ground_truth, (-1.0, 1.0))
    ciou, confidence = scores["av"]
    scores = protocol.score_item(similarity_map, ground_truth, (-1.0, 1.0), object_map, alpha=0.4)
    # scores["obj"], scores["av_ogl"]: (cIoU, confidence) of the object map and of the OGL mix
    large = protocol.upsample(raw_map)                     # 224 x 224
    prediction = protocol.binarise(large)                  # 0 / 1
The module-level functions (upsample, binarise, score, audio_window, min_max, ...) are the rules the objects apply,
taking the rule's name as an argument.
"""

import dataclasses

import cv2
import numpy as np

from evaluation import metrics

MAP_SIZE = 224
CUBIC_A = -0.75  # PyTorch's bicubic kernel parameter
RESIZES = ("crop", "squash")
AUDIO_WINDOWS = ("start", "centre")
UPSAMPLING_MODES = ("cv2_bilinear", "bilinear", "bicubic")
PREDICTION_RULES = ("lvs_median", "ezvsl_median")
MIXING_RULES = ("ranges", "min_max")
AUDIO_VISUAL_RANGE = (-1.0, 1.0)  # LVS's S_ii is a cosine
OBJECT_RANGE = (0.0, 2.5)  # SLAVC test.py: obj_min, obj_max
MIXED_RANGE = (0.0, 1.0)  # the OGL mix is already on [0, 1]: its confidence scales nothing


@dataclasses.dataclass(frozen=True)
class Protocol:
    """One test protocol: how a pair is read and how its map is scored.

    Attributes:
        name: "lvs", "ezvsl" or "slavc" (what --protocol and metrics.json call it).
        resize: the frame transform, "crop" (shorter side + centre crop) or "squash" (the whole frame to a square).
        audio_window: "start" (from 0 s) or "centre" (the middle audio_seconds).
        audio_seconds: the length of audio the model hears, or None for the checkpoint's.
        upsampling: "cv2_bilinear", "bilinear" or "bicubic" (see upsample).
        prediction: the binarisation rule, "lvs_median" or "ezvsl_median" (see binarise).
        mixing: the OGL mixing rule, "ranges" (SLAVC) or "min_max" (EZ-VSL) (see mix_object).
    """

    name: str
    resize: str
    audio_window: str
    audio_seconds: float | None
    upsampling: str
    prediction: str
    mixing: str

    def __post_init__(self):
        for field, choices in (("resize", RESIZES), ("audio_window", AUDIO_WINDOWS),
                               ("upsampling", UPSAMPLING_MODES), ("prediction", PREDICTION_RULES),
                               ("mixing", MIXING_RULES)):
            if getattr(self, field) not in choices:
                raise ValueError(f"unknown {field} {getattr(self, field)!r} (expected one of {choices})")

    def with_resize(self, resize):
        """This protocol with another frame transform ("crop" or "squash"); itself when resize is None."""
        return self if resize is None else dataclasses.replace(self, resize=resize)

    def describe(self):
        """What metrics.json records under "protocol" before the run's own settings (sample rate, ...)."""
        return {"resize": self.resize, "audio_window": self.audio_window, "audio_seconds": self.audio_seconds,
                "upsampling": self.upsampling, "prediction": self.prediction, "name": self.name}

    def window(self, samples, sample_rate, seconds):
        """The part of a recording this protocol feeds, before tiling (audio_window with this protocol's window)."""
        return audio_window(samples, sample_rate, seconds, self.audio_window)

    def score_item(self, similarity_map, ground_truth, value_range, object_map=None, alpha=None):
        """Every row's (cIoU, confidence) of one item from its raw maps.

        Args:
            similarity_map: the raw h x w audio-visual map (S_ii).
            ground_truth: the 224 x 224 ground truth (zeros for a negative).
            value_range: (low, high), the fixed range of the audio-visual map (--confidence_range).
            object_map: the raw h' x w' object map (object_guidance.ObjectMapper), or None for the AV row only.
            alpha: the OGL weight of the audio-visual map; required with object_map.

        Returns:
            dict row -> (cIoU, confidence): "av", and with object_map also "obj" and "av_ogl".

        Raises:
            ValueError: if object_map is given without alpha, or a map or value_range is malformed.
        """
        av_large = self.upsample(similarity_map)
        scores = {"av": self._scores(av_large, ground_truth, value_range)}
        if object_map is None:
            return scores
        if alpha is None:
            raise ValueError("an object map is scored with its OGL weight: pass alpha")
        object_large = self.upsample(object_map)
        scores["obj"] = self._scores(object_large, ground_truth, OBJECT_RANGE)
        mixed = self.mix_object(av_large, object_large, alpha, value_range)
        scores["av_ogl"] = self._scores(mixed, ground_truth, MIXED_RANGE)
        return scores

    def _scores(self, upsampled_map, ground_truth, value_range):
        """(cIoU, confidence) of one upsampled map."""
        return metrics.ciou(self.binarise(upsampled_map), ground_truth), self.confidence(upsampled_map, value_range)

    def upsample(self, raw_map):
        """The raw map at 224 x 224, upsampled as this protocol does (float32 for cv2_bilinear, else float64)."""
        return upsample(raw_map, MAP_SIZE, self.upsampling)

    def binarise(self, upsampled_map):
        """This protocol's prediction from an upsampled map: a map of 0 and 1 (binarise)."""
        return binarise(upsampled_map, self.prediction)

    def confidence(self, upsampled_map, value_range):
        """SLAVC's confidence of an upsampled map: the top-quarter mean of it scaled from value_range to [0, 1].

        Args:
            upsampled_map: the 224 x 224 map.
            value_range: (low, high) that map to 0 and 1.

        Returns:
            A float (in [0, 1] when the map stays in value_range).
        """
        return top_quarter_mean(fixed_range_scale(upsampled_map, *value_range))

    def mix_object(self, av_large, object_large, alpha, av_range=AUDIO_VISUAL_RANGE):
        """The AV + OGL map of one item (both maps already upsampled to 224 x 224).

        Args:
            av_large: the upsampled audio-visual map.
            object_large: the upsampled object map.
            alpha: the weight of the audio-visual map (0.4 in EZ-VSL and SLAVC).
            av_range: the fixed range of the audio-visual map (LVS's cosine: -1, 1); unused by "min_max".

        Returns:
            224 x 224 float64 map: "min_max" (EZ-VSL test.py) min-max normalises both maps, mixes them and
            normalises the mix; "ranges" (SLAVC test.py) scales both from fixed ranges (av_range, OBJECT_RANGE)
            and mixes them.
        """
        if self.mixing == "min_max":
            return min_max(alpha * min_max(av_large) + (1 - alpha) * min_max(object_large))
        scaled = fixed_range_scale(av_large, *av_range)
        return alpha * scaled + (1 - alpha) * scale_object(object_large)


LVS = Protocol("lvs", resize="crop", audio_window="start", audio_seconds=None, upsampling="cv2_bilinear",
               prediction="lvs_median", mixing="ranges")
EZVSL = Protocol("ezvsl", resize="squash", audio_window="centre", audio_seconds=3.0, upsampling="bilinear",
                 prediction="ezvsl_median", mixing="min_max")
SLAVC = Protocol("slavc", resize="squash", audio_window="centre", audio_seconds=3.0, upsampling="bicubic",
                 prediction="ezvsl_median", mixing="ranges")
PROTOCOLS = {protocol.name: protocol for protocol in (LVS, EZVSL, SLAVC)}


# ---- the rules the protocols apply -------------------------------------------------------------------------------
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


def fixed_range_scale(values, low, high):
    """(values - low) / (high - low): SLAVC's min_max_norm with fixed bounds (not the map's own min and max).

    Args:
        values: array of any shape.
        low, high: the range that maps to 0 and 1 (LVS's cosine map: -1 and 1; SLAVC's S / tau: -1/tau, 1/tau).

    Returns:
        float64 array of the same shape.

    Raises:
        ValueError: if high <= low or either is not finite.
    """
    if not (np.isfinite(low) and np.isfinite(high) and high > low):
        raise ValueError(f"the confidence range must be two finite numbers low < high, got {low}, {high}")
    return (np.asarray(values, dtype=np.float64) - low) / (high - low)


def top_quarter_mean(scaled_map):
    """SLAVC's confidence of an already scaled map: np.sort(map.flatten())[-n // 4:].mean().

    Note -n // 4 is (-n) // 4 in Python, so for n not divisible by 4 it keeps ceil(n / 4) values, as SLAVC does.
    """
    values = np.asarray(scaled_map, dtype=np.float64).ravel()
    if values.size == 0:
        raise ValueError("an empty map has no confidence")
    return float(np.sort(values)[-values.size // 4:].mean())


def scale_object(upsampled_map):
    """The object map from SLAVC's fixed range [0, 2.5] (OBJECT_RANGE) to [0, 1]."""
    return fixed_range_scale(upsampled_map, *OBJECT_RANGE)
