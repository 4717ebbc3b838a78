"""loss.py against hand-computed values and a plain NumPy transcription of the paper's equations."""

import math

import numpy as np
import pytest
import tensorflow as tf

from loss import lvs_logits, lvs_loss


def sigmoid(values):
    return 1.0 / (1.0 + np.exp(-values))


def numpy_lvs_loss(frames, audios, eps_pos=0.65, eps_neg=0.4, tau=0.03, temperature=0.07, hard=True, trimap=True):
    """The paper's equations, literally, in float64, one image at a time."""
    frames, audios = frames.astype(np.float64), audios.astype(np.float64)
    maps = np.einsum("ihwc,jc->ijhw", frames, audios)  # k x k x h x w
    losses, all_logits = [], []
    for i in range(len(frames)):
        own = maps[i, i]
        positive_mask = sigmoid((own - eps_pos) / tau)
        logits = [np.sum(positive_mask * own) / np.sum(positive_mask)]
        for j in range(len(audios)):
            if j != i:
                mask = sigmoid((maps[i, j] - eps_pos) / tau)
                logits.append(np.sum(mask * maps[i, j]) / np.sum(mask))
        if hard:
            hard_region = 1 - sigmoid((own - (eps_neg if trimap else eps_pos)) / tau)
            logits.append(np.sum(hard_region * own) / np.sum(hard_region))
        logits = np.array(logits) / temperature
        all_logits.append(logits)
        losses.append(np.log(np.sum(np.exp(logits))) - logits[0])
    return float(np.mean(losses)), np.array(all_logits)


def random_features(batch, height=3, width=4, channels=8, seed=0):
    rng = np.random.default_rng(seed)
    frames = rng.normal(size=(batch, height, width, channels))
    audios = rng.normal(size=(batch, channels))
    # pull each image towards its own audio so that the masks are neither empty nor full
    frames[:, :2] += 2 * audios[:, None, None, :]
    frames /= np.linalg.norm(frames, axis=-1, keepdims=True)
    audios /= np.linalg.norm(audios, axis=-1, keepdims=True)
    return frames.astype(np.float32), audios.astype(np.float32)


def test_one_pixel_maps_by_hand():
    # 1 x 1 maps: every mask-weighted mean is the similarity itself.
    frames = np.array([[[[1.0, 0.0]]], [[[0.0, 1.0]]]], np.float32)
    audios = np.array([[1.0, 0.0], [0.6, 0.8]], np.float32)
    # image 0: P = S00 = 1, E01 = S01 = 0.6, H = 1 -> loss = log(e^(1/T) + e^(0.6/T) + e^(1/T)) - 1/T
    # image 1: P = S11 = 0.8, E10 = S10 = 0, H = 0.8
    t = 0.07
    expected = (math.log(2 + math.exp(-0.4 / t)) + math.log(2 + math.exp(-0.8 / t))) / 2
    assert float(lvs_loss(frames, audios)) == pytest.approx(expected, rel=1e-6)
    np.testing.assert_allclose(lvs_logits(frames, audios), [[1 / t, 0.6 / t, 1 / t], [0.8 / t, 0.0, 0.8 / t]], rtol=1e-6)
    # without hard negatives: image 0 -> log(1 + e^(-0.4/T)), image 1 -> log(1 + e^(-0.8/T))
    expected = (math.log(1 + math.exp(-0.4 / t)) + math.log(1 + math.exp(-0.8 / t))) / 2
    assert float(lvs_loss(frames, audios, hard_negatives=False)) == pytest.approx(expected, abs=1e-6)


def test_trimap_weights_by_hand():
    # One pair, a 1 x 2 map with S = [0.9, 0.1] against audio [1, 0].
    frames = np.array([[[[0.9, math.sqrt(1 - 0.81)], [0.1, math.sqrt(1 - 0.01)]]]], np.float32)
    audios = np.array([[1.0, 0.0]], np.float32)
    s = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    m1, m2 = s((0.9 - 0.65) / 0.03), s((0.1 - 0.65) / 0.03)
    positive = (m1 * 0.9 + m2 * 0.1) / (m1 + m2)
    n1, n2 = 1 - s((0.9 - 0.4) / 0.03), 1 - s((0.1 - 0.4) / 0.03)
    hard = (n1 * 0.9 + n2 * 0.1) / (n1 + n2)
    np.testing.assert_allclose(lvs_logits(frames, audios), [[positive / 0.07, hard / 0.07]], rtol=1e-5)
    # no trimap: hard region is 1 - m_ip
    hard = ((1 - m1) * 0.9 + (1 - m2) * 0.1) / ((1 - m1) + (1 - m2))
    np.testing.assert_allclose(lvs_logits(frames, audios, trimap=False), [[positive / 0.07, hard / 0.07]], rtol=1e-5)


@pytest.mark.parametrize("batch", [1, 2, 5])
@pytest.mark.parametrize("hard,trimap", [(True, True), (False, True), (True, False)])
def test_matches_numpy_transcription(batch, hard, trimap):
    frames, audios = random_features(batch, seed=batch)
    expected_loss, expected_logits = numpy_lvs_loss(frames, audios, hard=hard, trimap=trimap)
    logits = lvs_logits(frames, audios, hard_negatives=hard, trimap=trimap).numpy()
    assert logits.shape == (batch, batch + (1 if hard else 0))
    np.testing.assert_allclose(logits, expected_logits, rtol=1e-4, atol=1e-4)
    assert float(lvs_loss(frames, audios, hard_negatives=hard, trimap=trimap)) == pytest.approx(expected_loss, rel=1e-4, abs=1e-5)


def test_other_thresholds_match_numpy():
    frames, audios = random_features(4, seed=7)
    settings = dict(eps_pos=0.5, eps_neg=0.2, tau=0.05, temperature=0.1)
    expected, _ = numpy_lvs_loss(frames, audios, eps_pos=0.5, eps_neg=0.2, tau=0.05, temperature=0.1)
    assert float(lvs_loss(frames, audios, **settings)) == pytest.approx(expected, rel=1e-4)


def test_pair_offset_selects_rows_of_the_global_batch():
    frames, audios = random_features(6, seed=3)
    full = lvs_logits(frames, audios).numpy()
    part = lvs_logits(frames[2:4], audios, pair_offset=2).numpy()
    np.testing.assert_allclose(part, full[2:4], rtol=1e-6)
    per_image = lvs_loss(frames, audios, reduction="none").numpy()
    np.testing.assert_allclose(lvs_loss(frames[2:4], audios, pair_offset=2, reduction="sum"), per_image[2:4].sum(), rtol=1e-6)


def test_safe_when_every_mask_underflows():
    # S = -0.5 everywhere and tau = 1e-3: sigmoid((S - 0.65) / tau) = sigmoid(-1150) is 0 in float32, so the
    # literal sum(m * S) / sum(m) is 0 / 0; the true weighted mean of a constant map is -0.5.
    frames = np.zeros((2, 2, 2, 2), np.float32)
    frames[..., 0] = -0.5
    frames[..., 1] = math.sqrt(0.75)
    audios = np.array([[1.0, 0.0], [1.0, 0.0]], np.float32)
    weights = tf.sigmoid((tf.constant(-0.5) - 0.65) / 1e-3)
    assert float(weights) == 0.0  # the literal formula would divide by zero here
    frames_tensor = tf.constant(frames)
    with tf.GradientTape() as tape:
        tape.watch(frames_tensor)
        logits = lvs_logits(frames_tensor, audios, tau=1e-3)
        value = lvs_loss(frames_tensor, audios, tau=1e-3)
    gradient = tape.gradient(value, frames_tensor)
    np.testing.assert_allclose(logits.numpy() * 0.07, -0.5, rtol=1e-5)
    assert np.isfinite(float(value))
    assert np.all(np.isfinite(gradient.numpy()))


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_mixed_precision_inputs_give_a_float32_finite_loss(dtype):
    frames, audios = random_features(4, seed=11)
    reference = float(lvs_loss(frames, audios))
    low = lvs_loss(tf.cast(frames, dtype), tf.cast(audios, dtype))
    assert low.dtype == tf.float32
    assert float(low) == pytest.approx(reference, rel=0.05, abs=0.05)


def test_gradients_match_numpy_finite_differences():
    frames, audios = random_features(3, height=2, width=2, channels=4, seed=5)
    frames_tensor = tf.constant(frames, tf.float64)
    with tf.GradientTape() as tape:
        tape.watch(frames_tensor)
        value = lvs_loss(frames_tensor, tf.constant(audios, tf.float64))
    gradient = tape.gradient(value, frames_tensor).numpy()
    step = 1e-5
    index = (1, 0, 1, 2)
    shifted_up, shifted_down = frames.astype(np.float64), frames.astype(np.float64)
    shifted_up[index] += step
    shifted_down[index] -= step
    numeric = (numpy_lvs_loss(shifted_up, audios)[0] - numpy_lvs_loss(shifted_down, audios)[0]) / (2 * step)
    assert gradient[index] == pytest.approx(numeric, rel=1e-3, abs=1e-6)


def test_bad_reduction_is_a_value_error():
    frames, audios = random_features(2)
    with pytest.raises(ValueError, match="reduction"):
        lvs_loss(frames, audios, reduction="max")
