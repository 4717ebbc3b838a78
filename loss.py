"""The hard-negative trimap contrastive loss of LVS (Chen et al., CVPR 2021), as pure functions.

For a batch of k frame/audio pairs, image i's own sound gives a cosine map S_ii (h x w). A soft trimap on
it splits the map into a positive region m_ip = sigmoid((S_ii - eps_pos) / tau) and a hard-negative region
1 - m_in with m_in = sigmoid((S_ii - eps_neg) / tau). The logits of image i are

    [P_i, E_i1 .. E_ik (j != i), H_i] / temperature

with P_i and H_i the mask-weighted means of S_ii over those regions and E_ij the positive-mask-weighted mean
of S_ij (image i with audio j). The loss is the cross-entropy with the positive (index 0) as the target.

Mask-weighted means are computed from log-masks shifted by their maximum, which is the same number as
sum(m * S) / sum(m) but never 0 / 0 when every mask value underflows. float16 / bfloat16 features are cast
to float32 first, so the loss is safe under mixed precision.

Usage:
    from loss import lvs_loss
    loss = lvs_loss(frame_features, audio_features)   # batch x h x w x c and batch x c, L2-normalised
"""

from keras import ops

EPS_POS = 0.65
EPS_NEG = 0.4
TAU = 0.03
TEMPERATURE = 0.07


def similarity_map(frame_features, audio_features):
    """Cosine map of every image with its own audio, S_ii.

    Args:
        frame_features: batch x h x w x c, L2-normalised along c.
        audio_features: batch x c, L2-normalised.

    Returns:
        batch x h x w similarities.
    """
    return ops.einsum("bhwc,bc->bhw", frame_features, audio_features)


def cross_similarity_maps(frame_features, audio_features):
    """Cosine maps of every image with every audio, S_ij.

    Args:
        frame_features: batch x h x w x c, L2-normalised along c.
        audio_features: k x c, L2-normalised (k may exceed batch when audio comes from other replicas).

    Returns:
        batch x k x h x w similarities.
    """
    return ops.einsum("bhwc,kc->bkhw", frame_features, audio_features)


def positive_mask(similarity, eps_pos=EPS_POS, tau=TAU):
    """The trimap's positive mask m_ip = sigmoid((S - eps_pos) / tau), same shape as `similarity`."""
    return ops.sigmoid((similarity - eps_pos) / tau)


def at_least_float32(values):
    """float16 / bfloat16 values cast to float32; float32 and float64 values unchanged."""
    if ops.dtype(values) in ("float16", "bfloat16"):
        return ops.cast(values, "float32")
    return values


def _masked_mean(similarity, log_weights):
    """sum(w * S) / sum(w) over the last two axes, given log(w); safe when every w underflows.

    Args:
        similarity: ... x h x w.
        log_weights: ... x h x w, the log of the (sigmoid) mask.

    Returns:
        ... (the two spatial axes reduced).
    """
    shift = ops.stop_gradient(ops.max(log_weights, axis=(-2, -1), keepdims=True))
    weights = ops.exp(log_weights - shift)  # the largest weight is exactly 1, so the sum is >= 1
    return ops.sum(weights * similarity, axis=(-2, -1)) / ops.sum(weights, axis=(-2, -1))


def lvs_logits(
    frame_features,
    audio_features,
    eps_pos=EPS_POS,
    eps_neg=EPS_NEG,
    tau=TAU,
    temperature=TEMPERATURE,
    hard_negatives=True,
    trimap=True,
    pair_offset=0,
):
    """Logits [P_i, E_ij (j != i), H_i] / temperature for every image of the batch.

    Args:
        frame_features: batch x h x w x c, L2-normalised.
        audio_features: k x c, L2-normalised; image i's own audio is row pair_offset + i.
        eps_pos: threshold of the positive mask.
        eps_neg: threshold of the negative mask (the trimap's outer edge).
        tau: temperature of the masks' sigmoid.
        temperature: the logits are divided by it.
        hard_negatives: append H_i, the same image's background (ablation: False).
        trimap: the hard region is 1 - m_in; without it 1 - m_ip (ablation: False).
        pair_offset: index of image 0's audio in audio_features (a replica's place in a global batch).

    Returns:
        batch x (k + 1) logits with hard negatives, batch x k without; the positive is column 0.
    """
    frame_features = at_least_float32(frame_features)
    audio_features = at_least_float32(audio_features)
    batch = ops.shape(frame_features)[0]
    count = ops.shape(audio_features)[0]
    own_index = ops.arange(batch, dtype="int32") + ops.cast(pair_offset, "int32")  # batch

    all_maps = cross_similarity_maps(frame_features, audio_features)  # batch x k x h x w
    own_maps = similarity_map(frame_features, audio_features[pair_offset : pair_offset + batch])  # batch x h x w

    positive_log_mask = ops.log_sigmoid((own_maps - eps_pos) / tau)
    positive = _masked_mean(own_maps, positive_log_mask)  # batch

    easy = _masked_mean(all_maps, ops.log_sigmoid((all_maps - eps_pos) / tau))  # batch x k
    # Drop column j == own index outright: row i keeps columns 0..k-1 except pair_offset + i.
    columns = ops.arange(count - 1, dtype="int32")[None, :]  # 1 x (k - 1)
    keep = columns + ops.cast(columns >= own_index[:, None], columns.dtype)  # batch x (k - 1)
    easy = ops.take_along_axis(easy, keep, axis=1)  # batch x (k - 1)

    parts = [positive[:, None], easy]
    if hard_negatives:
        edge = eps_neg if trimap else eps_pos
        hard_log_mask = ops.log_sigmoid(-(own_maps - edge) / tau)  # log(1 - sigmoid(z)) = log sigmoid(-z)
        parts.append(_masked_mean(own_maps, hard_log_mask)[:, None])
    return ops.concatenate(parts, axis=1) / temperature


def lvs_loss(
    frame_features,
    audio_features,
    eps_pos=EPS_POS,
    eps_neg=EPS_NEG,
    tau=TAU,
    temperature=TEMPERATURE,
    hard_negatives=True,
    trimap=True,
    pair_offset=0,
    reduction="mean",
):
    """The LVS loss: cross-entropy of lvs_logits with the positive (column 0) as the target.

    Args:
        frame_features: batch x h x w x c, L2-normalised.
        audio_features: k x c, L2-normalised (k = batch on one device).
        eps_pos, eps_neg, tau, temperature, hard_negatives, trimap, pair_offset: as in lvs_logits.
        reduction: "mean" for the scalar loss, "sum" for the sum over the batch, "none" for one per image.

    Returns:
        A float32 scalar (or a batch vector with reduction="none").
    """
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"reduction must be mean, sum or none, got {reduction!r}")
    logits = lvs_logits(
        frame_features,
        audio_features,
        eps_pos=eps_pos,
        eps_neg=eps_neg,
        tau=tau,
        temperature=temperature,
        hard_negatives=hard_negatives,
        trimap=trimap,
        pair_offset=pair_offset,
    )
    per_image = ops.logsumexp(logits, axis=1) - logits[:, 0]  # batch
    if reduction == "mean":
        return ops.mean(per_image)
    if reduction == "sum":
        return ops.sum(per_image)
    return per_image
