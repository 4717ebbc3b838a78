"""The model's heatmaps and how they are drawn: the forward pass, frames as seen, the four-panel figure, overlays.

Shared by predict.py (frame/wav pairs), video_prediction.py (videos) and evaluate.py.

Usage:
    from visualization.heatmaps import make_forward, draw_panels, save_figure
    forward = make_forward(model)
    outputs = forward({"frame": frames, "spectrogram": spectrograms})   # similarity, positive_mask
"""

import cv2
import matplotlib

matplotlib.use("Agg")
import matplotlib.patches  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from pipeline import preprocessing  # noqa: E402
from safeguards.atomic import atomic_path  # noqa: E402

COLOUR_MAP = "jet"


def make_forward(model):
    """The model's inference forward in tf.function (bench.py: 1.1x to 1.9x faster than eager calls).

    Args:
        model: an LVSModel.

    Returns:
        forward(inputs) -> {"similarity": B x h x w, "positive_mask": B x h x w} tensors.
    """
    return tf.function(lambda inputs: model(inputs, training=False), reduce_retracing=True)


def frame_pixels(frame):
    """Undo the ImageNet normalisation: S x S x 3 model input -> S x S x 3 RGB in [0, 1]."""
    return np.clip(frame * preprocessing.IMAGENET_STD + preprocessing.IMAGENET_MEAN, 0.0, 1.0)


def upsample(heatmap, size):
    """Bilinear resize (cv2 INTER_LINEAR, as the official evaluation) of an h x w map.

    Args:
        heatmap: h x w map.
        size: an int (square output) or (width, height).

    Returns:
        the resized float32 map.
    """
    size = (size, size) if np.isscalar(size) else tuple(int(value) for value in size)
    return cv2.resize(np.asarray(heatmap, np.float32), size, interpolation=cv2.INTER_LINEAR)


def colour_overlay(pixels, heatmap, low, high, alpha=0.5):
    """Blend a heatmap (jet colours, fixed scale low..high) over RGB pixels of the same size.

    Args:
        pixels: H x W x 3 uint8.
        heatmap: H x W float map.
        low, high: the values drawn as the two ends of the colour scale (values outside are clipped).
        alpha: opacity of the colours.

    Returns:
        H x W x 3 uint8.
    """
    table = (plt.get_cmap(COLOUR_MAP)(np.linspace(0.0, 1.0, 256))[:, :3] * 255).astype(np.float32)  # 256 x 3
    levels = np.clip((heatmap - low) / max(high - low, 1e-6), 0.0, 1.0)
    colours = table[np.round(levels * 255).astype(np.int64)]  # H x W -> H x W x 3
    blended = (1.0 - alpha) * pixels.astype(np.float32) + alpha * colours
    return np.clip(np.round(blended), 0, 255).astype(np.uint8)


def draw_panels(frame, similarity, positive_mask, title, boxes=None, caption=None):
    """The four-panel figure of one prediction.

    Args:
        frame: S x S x 3 RGB in [0, 1].
        similarity: h x w raw S_ii map.
        positive_mask: h x w m_ip map.
        title: figure title (the pair's name).
        boxes: optional ground-truth boxes [xmin, ymin, xmax, ymax] normalised to 0..1, drawn on every panel.
        caption: optional text under the title (a score, say).

    Returns:
        The matplotlib figure (the caller saves and closes it).
    """
    size = frame.shape[0]
    similarity_large = upsample(similarity, size)
    mask_large = np.clip(upsample(positive_mask, size), 0.0, 1.0)
    figure, axes = plt.subplots(1, 4, figsize=(13, 3.8), dpi=100)
    axes[0].imshow(frame)
    axes[0].set_title("frame")
    axes[1].imshow(frame)
    # the map's own range: cosine values of one frame sit in a narrow band of [-1, 1]
    shown = axes[1].imshow(similarity_large, cmap=COLOUR_MAP, alpha=0.5, vmin=float(similarity.min()),
                           vmax=float(similarity.max()) + 1e-6)
    axes[1].set_title(f"heatmap S_ii ({similarity.min():.2f} to {similarity.max():.2f})")
    figure.colorbar(shown, ax=axes[1], fraction=0.046, pad=0.02)
    axes[2].imshow(frame)
    shown = axes[2].imshow(mask_large, cmap=COLOUR_MAP, alpha=0.5, vmin=0, vmax=1)
    axes[2].set_title(f"positive m_ip ({(positive_mask > 0.5).mean():.0%} > 0.5)")
    figure.colorbar(shown, ax=axes[2], fraction=0.046, pad=0.02)
    axes[3].imshow(frame * mask_large[..., None])
    axes[3].set_title("frame x positive region")
    for axis in axes:
        axis.set_xticks([])
        axis.set_yticks([])
        for box in boxes or []:
            xmin, ymin, xmax, ymax = [value * size for value in box]
            axis.add_patch(matplotlib.patches.Rectangle((xmin, ymin), xmax - xmin, ymax - ymin, fill=False,
                                                        edgecolor="white", linewidth=2, linestyle="--"))
    figure.suptitle(title if caption is None else f"{title}\n{caption}", fontsize=11)
    figure.tight_layout()
    return figure


def save_figure(figure, path):
    """Save a figure as PNG atomically and close it."""
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png")
    plt.close(figure)
