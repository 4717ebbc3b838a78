"""The figures of evaluate.py: the per-item cIoU histogram, the precision-recall curve of an extended test set,
and overlays of chosen items with their ground-truth boxes drawn where they really are on the frame shown.

Boxes are fractions of the whole frame (VGG-SS) or 256-px coordinates of it (Flickr). The frame a figure shows is
the model's input: with --resize squash the whole frame, so a box keeps its fractions; with --resize crop (LVS)
only the centre square of the shorter-side resize, so a box is moved and cut through that crop
(boxes_on_shown_frame).

Usage (from evaluate.py):
    draw_histogram(cious, summary, "out/ciou_histogram.png", "checkpoint model.keras")
    draw_precision_recall(rows, "out/precision_recall.png", "checkpoint model.keras")
    save_overlays(chosen, pairs_by_name, maps, cious, annotations, degenerate, 224, "out/figures", label, "crop")
"""

import os
import re
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from evaluation import metrics  # noqa: E402
from pipeline import preprocessing  # noqa: E402
from evaluation.annotations import FLICKR, FLICKR_ANNOTATION_SIZE  # noqa: E402
from visualization.heatmaps import draw_panels, frame_pixels, save_figure  # noqa: E402

FIGURE_PATTERN = re.compile(r"^\d+_.+\.png$")  # RANK_ID.png, the files a previous --figures run left


def unique(names):
    """names without repeats, in first-seen order."""
    return list(dict.fromkeys(names))


def normalised_boxes(annotation):
    """An annotation's boxes as [xmin, ymin, xmax, ymax] fractions of the frame, clipped to 0..1 (for drawing).

    Args:
        annotation: an Annotation (VGG-SS boxes are fractions already; Flickr boxes are 256-px coordinates).

    Returns:
        list of 4-tuples in [0, 1]; boxes of zero area after clipping are left out.
    """
    scale = FLICKR_ANNOTATION_SIZE if annotation.dataset == FLICKR else 1.0
    boxes = []
    for box in annotation.boxes:
        xmin, ymin, xmax, ymax = (min(max(value / scale, 0.0), 1.0) for value in box)
        if xmax > xmin and ymax > ymin:
            boxes.append((xmin, ymin, xmax, ymax))
    return boxes


def crop_window(width, height, size):
    """Where preprocessing's crop (shorter side to size, centre crop) takes its square from a width x height frame.

    Returns:
        (left, top, right, bottom) as fractions of the whole frame.
    """
    if width <= height:
        new_width, new_height = size, int(size * height / width)
    else:
        new_width, new_height = int(size * width / height), size
    top = int(round((new_height - size) / 2.0))
    left = int(round((new_width - size) / 2.0))
    return left / new_width, top / new_height, (left + size) / new_width, (top + size) / new_height


def boxes_on_shown_frame(boxes, width, height, resize, size):
    """Boxes (fractions of the whole frame) as fractions of the frame the model sees.

    Args:
        boxes: list of (xmin, ymin, xmax, ymax) in [0, 1] of the whole frame.
        width, height: the frame file's size in pixels.
        resize: "squash" (the whole frame: boxes unchanged) or "crop" (the centre square of the shorter-side resize).
        size: the model's image side.

    Returns:
        list of boxes in [0, 1] of the shown frame; boxes wholly outside the crop are left out.
    """
    if resize == "squash":
        return list(boxes)
    left, top, right, bottom = crop_window(width, height, size)
    shown = []
    for xmin, ymin, xmax, ymax in boxes:
        moved = ((xmin - left) / (right - left), (ymin - top) / (bottom - top),
                 (xmax - left) / (right - left), (ymax - top) / (bottom - top))
        xmin, ymin, xmax, ymax = (min(max(value, 0.0), 1.0) for value in moved)
        if xmax > xmin and ymax > ymin:
            shown.append((xmin, ymin, xmax, ymax))
    return shown


def spread_over_scores(cious, count):
    """Up to `count` names spread evenly over the ranking, best first (NaN ranks last).

    Args:
        cious: dict name -> cIoU_i.
        count: how many names to pick.

    Returns:
        list of (rank, name), rank 1 being the best item.
    """
    ranking = sorted(cious, key=lambda name: (-np.nan_to_num(cious[name], nan=-1.0), name))
    if count <= 0 or not ranking:
        return []
    positions = unique(int(round(position)) for position in np.linspace(0, len(ranking) - 1, min(count, len(ranking))))
    return [(position + 1, ranking[position]) for position in positions]


def draw_histogram(cious, summary, path, title):
    """Save the histogram of the per-item cIoU (bins of 0.05) with the 0.5 success line.

    Args:
        cious: sequence of cIoU_i (NaN ones are left out of the bars and counted in the legend).
        summary: metrics.summarise of the same values.
        path: the PNG to write.
        title: what was scored.
    """
    values = np.asarray(cious, dtype=np.float64)
    finite = values[np.isfinite(values)]
    figure, axis = plt.subplots(figsize=(6, 3.6), dpi=100)
    axis.hist(finite, bins=np.linspace(0, 1, 21), color="tab:blue", edgecolor="white")
    label = f"0.5: {summary['ciou']:.1%} of items at or above"
    axis.axvline(metrics.SUCCESS_THRESHOLD, color="tab:red", linestyle="--", label=label)
    axis.axvline(summary["mean_ciou"], color="tab:gray", linestyle=":", label=f"mean {summary['mean_ciou']:.3f}")
    axis.set_xlim(0, 1)
    axis.set_xlabel("cIoU of one item")
    axis.set_ylabel("items")
    undefined = f", {summary['undefined']} undefined" if summary["undefined"] else ""
    axis.set_title(f"{title}: {summary['items']} items{undefined}", fontsize=10)
    axis.legend(fontsize=8, loc="upper right")
    figure.tight_layout()
    save_figure(figure, path)


def draw_precision_recall(curves, path, title):
    """Save the precision-recall curves of an extended test set (SLAVC's AP thresholds), one line per row.

    Args:
        curves: dict row label -> (recalls, precisions, ap).
        path: the PNG to write.
        title: what was scored.
    """
    figure, axis = plt.subplots(figsize=(5, 4.2), dpi=100)
    for label, (recalls, precisions, ap) in curves.items():
        axis.plot(recalls, precisions, marker=".", markersize=3, label=f"{label}: AP {ap:.3f}")
    axis.set_xlim(0, 1.02)
    axis.set_ylim(0, 1.02)
    axis.set_xlabel("recall (positives found in the right place)")
    axis.set_ylabel("precision")
    axis.set_title(title, fontsize=9)
    axis.legend(fontsize=8, loc="upper right")
    figure.tight_layout()
    save_figure(figure, path)


def save_overlays(chosen, pairs_by_name, maps, cious, annotations, degenerate, image_size, folder, label,
                  resize="crop"):
    """Draw the chosen items with their ground-truth boxes and their cIoU in the caption.

    Args:
        chosen: list of (rank, name) from spread_over_scores.
        pairs_by_name: dict name -> preprocessing.Pair.
        maps: dict name -> (similarity, mask).
        cious: dict name -> cIoU_i.
        annotations: dict name -> Annotation.
        degenerate: set of names without a usable box.
        image_size: side of the frame the model sees (the model's, or 224 for a baseline).
        folder: where RANK_ID.png go (earlier RANK_ID.png files there are removed first).
        label: what was scored, for the caption.
        resize: "crop" or "squash", how the frame was brought to image_size (said in the caption).

    Returns:
        The list of written paths.
    """
    if os.path.isdir(folder):
        for file_name in os.listdir(folder):
            if FIGURE_PATTERN.match(file_name):
                os.remove(os.path.join(folder, file_name))
    width = len(str(len(cious)))
    written = []
    for rank, name in chosen:
        path = pairs_by_name[name].image_path
        try:
            frame = frame_pixels(preprocessing.load_frame(path, image_size, resize=resize))
            with Image.open(path) as image:
                frame_width, frame_height = image.size
        except Exception as error:  # a baseline never decoded the frames; a corrupt one only loses its figure
            print(f"warning: no figure for {name}: {type(error).__name__}: {error}", file=sys.stderr)
            continue
        similarity, mask = maps[name]
        caption = f"cIoU {cious[name]:.3f}, rank {rank} of {len(cious)} ({label}; --resize {resize})"
        if name in degenerate:
            caption += "; no usable ground-truth box"
        boxes = boxes_on_shown_frame(normalised_boxes(annotations[name]), frame_width, frame_height, resize, image_size)
        figure = draw_panels(frame, similarity, mask, title=name, boxes=boxes, caption=caption)
        path = os.path.join(folder, f"{rank:0{width}d}_{name}.png")
        save_figure(figure, path)
        written.append(path)
    return written
