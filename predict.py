"""Draw where the sound comes from: a four-panel figure for every frame/wav pair.

Panels: the frame (as the model sees it), the full heatmap S_ii (cosine similarity of every location with the
sound), the strongly positive heatmap m_ip = sigmoid((S_ii - eps_pos) / tau), and the frame clipped by the
positive region. The preprocessing settings come from the checkpoint, so no flags are needed to match them.

Usage:
    python predict.py --checkpoint runs/demo/model.keras --data_dir data/demo/test --out_dir runs/demo/predictions
    python predict.py --checkpoint lvs_vggss.pth.tar --image frame.jpg --audio sound.wav --out_dir out
    (--save_heatmaps also writes NAME.npy, the raw h x w S_ii map, float32, before any upsampling)
"""

import argparse
import os
import sys

import cv2
import matplotlib

matplotlib.use("Agg")
import matplotlib.patches  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from tqdm import tqdm  # noqa: E402

import preprocessing  # noqa: E402
from arguments import positive_int  # noqa: E402
from model import load_checkpoint  # noqa: E402
from atomic import atomic_path  # noqa: E402


def frame_pixels(frame):
    """Undo the ImageNet normalisation: S x S x 3 model input -> S x S x 3 RGB in [0, 1]."""
    return np.clip(frame * preprocessing.IMAGENET_STD + preprocessing.IMAGENET_MEAN, 0.0, 1.0)


def upsample(heatmap, size):
    """Bilinear resize (cv2 INTER_LINEAR, as the official evaluation) of an h x w map to size x size."""
    return cv2.resize(np.asarray(heatmap, np.float32), (size, size), interpolation=cv2.INTER_LINEAR)


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
    shown = axes[1].imshow(similarity_large, cmap="jet", alpha=0.5, vmin=float(similarity.min()),
                           vmax=float(similarity.max()) + 1e-6)
    axes[1].set_title(f"heatmap S_ii ({similarity.min():.2f} to {similarity.max():.2f})")
    figure.colorbar(shown, ax=axes[1], fraction=0.046, pad=0.02)
    axes[2].imshow(frame)
    shown = axes[2].imshow(mask_large, cmap="jet", alpha=0.5, vmin=0, vmax=1)
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


def predict_maps(model, pairs, batch_size=16, description="predicting"):
    """Run the model over pairs in batches.

    Args:
        model: an LVSModel.
        pairs: list of preprocessing.Pair.
        batch_size: pairs per forward pass.
        description: progress bar label.

    Yields:
        (name, frame S x S x 3 in [0, 1], similarity h x w, positive mask h x w) for every pair that decoded.
    """
    dataset = preprocessing.make_dataset(pairs, model.settings, training=False, batch_size=batch_size, with_names=True)
    forward = tf.function(lambda inputs: model(inputs, training=False), reduce_retracing=True)  # bench.py: 1.3-2x eager
    with tqdm(total=len(pairs), desc=description, unit="pair") as progress:
        for inputs, names in dataset:
            outputs = forward(inputs)
            similarity = outputs["similarity"].numpy()
            mask = outputs["positive_mask"].numpy()
            frames = inputs["frame"].numpy()
            for index, name in enumerate(names.numpy()):
                yield name.decode(), frame_pixels(frames[index]), similarity[index], mask[index]
            progress.update(len(names))


def parse_arguments(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="model.keras from train.py, or an official LVS .pth.tar")
    parser.add_argument("--data_dir", help="folder of NAME.jpg|.png + NAME.wav pairs")
    parser.add_argument("--image", help="one frame (with --audio) instead of --data_dir")
    parser.add_argument("--audio", help="the wav that goes with --image")
    parser.add_argument("--out_dir", default="predictions", help="where NAME.png (and NAME.npy) go (default: predictions)")
    parser.add_argument("--batch_size", type=positive_int, default=16, help="pairs per forward pass (default: 16)")
    parser.add_argument("--limit", type=positive_int, default=None, help="only the first N pairs, by name")
    parser.add_argument("--save_heatmaps", action="store_true", help="also write NAME.npy: the raw h x w S_ii map, float32")
    arguments = parser.parse_args(argv)
    if bool(arguments.image) != bool(arguments.audio):
        parser.error("--image and --audio go together")
    if bool(arguments.data_dir) == bool(arguments.image):
        parser.error("give either --data_dir or --image with --audio")
    return arguments


def single_pair(image_path, audio_path):
    """A one-item pair list for --image/--audio, checked like find_pairs does."""
    for path in (image_path, audio_path):
        if not os.path.isfile(path):
            raise SystemExit(f"error: file not found: {path}")
    problem = preprocessing.check_pair(image_path, audio_path)
    if problem:
        raise SystemExit(f"error: {problem}")
    name = os.path.splitext(os.path.basename(image_path))[0]
    return [preprocessing.Pair(name, image_path, audio_path)]


def main(argv=None):
    arguments = parse_arguments(argv)
    if arguments.data_dir:
        pairs = preprocessing.require_pairs(arguments.data_dir)
    else:
        pairs = single_pair(arguments.image, arguments.audio)
    pairs = pairs[: arguments.limit] if arguments.limit else pairs
    try:
        model = load_checkpoint(arguments.checkpoint)
    except ValueError as error:
        raise SystemExit(f"error: {error}")
    os.makedirs(arguments.out_dir, exist_ok=True)
    written = 0
    for name, frame, similarity, mask in predict_maps(model, pairs, arguments.batch_size):
        figure = draw_panels(frame, similarity, mask, title=name)
        save_figure(figure, os.path.join(arguments.out_dir, f"{name}.png"))
        if arguments.save_heatmaps:
            with atomic_path(os.path.join(arguments.out_dir, f"{name}.npy")) as temporary:
                np.save(temporary, similarity.astype(np.float32))
        written += 1
    failed = len(pairs) - written
    print(f"wrote {written} figure(s) to {arguments.out_dir}" + (f"; {failed} pair(s) failed to decode" if failed else ""))
    if written == 0:
        raise SystemExit("error: no pair could be decoded")


if __name__ == "__main__":
    main()
