r"""Score sound-source localisation on VGG-SS or Flickr SoundNet with the official LVS protocol (cIoU@0.5, AUC).

Every test item that has a frame/wav pair in --data_dir and a ground truth in --annotations is scored as the
official test.py scores it (metrics.py, annotations.py): the raw map S_ii is resized to 224 x 224, its top half
is the prediction, cIoU_i is measured against the ground-truth map. Items of --test_list without a pair (or
without an annotation) are counted as missing and listed; they are not an error.

--baseline centre scores a fixed centred box (half the frame's side, metrics.centre_baseline_map) instead of a
model, on the same items, so its numbers sit beside a model's.

Written to --out_dir (atomically):
    per_item.csv          id, ciou, degenerate (1: the item has no usable box; it scores 0 like officially), class
    metrics.json          ciou, auc, mean_ciou, n_scored, n_missing, n_degenerate, degenerate_ids, ...
    missing_ids.txt       test-list ids that could not be scored, one a line (usable as a --test_list)
    ciou_histogram.png    the per-item cIoU distribution with the 0.5 success line
    figures/RANK_ID.png   with --figures N: N items spread from the best to the worst, boxes drawn
The last line printed is the summary, e.g.
    cIoU@0.5 0.412  AUC 0.398  mean cIoU 0.401  (scored 110, missing 0)

Usage:
    python evaluate.py --checkpoint runs/demo/model.keras --data_dir data/demo/test \
        --annotations data/demo/test_annotations.json --out_dir runs/demo/evaluation --figures 6
    python evaluate.py --baseline centre --data_dir data/demo/test \
        --annotations data/demo/test_annotations.json --out_dir runs/demo/evaluation_centre
    python evaluate.py --checkpoint lvs_vggss.pth.tar --data_dir data/vggss --annotations data/metadata/vggss.json
    python evaluate.py --checkpoint lvs_flickr.pth.tar --data_dir data/flickr --annotations data/flickr/Annotations \
        --test_list data/metadata/flickr_test.csv
"""

import argparse
import csv
import io
import json
import os
import re
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import metrics  # noqa: E402
from arguments import non_negative_int, positive_int  # noqa: E402
import preprocessing  # noqa: E402
from annotations import FLICKR, FLICKR_ANNOTATION_SIZE, degenerate_items, ground_truth_map  # noqa: E402
from annotations import load_annotations, read_test_list  # noqa: E402
from atomic import write_text  # noqa: E402
from model import load_checkpoint  # noqa: E402
from predict import draw_panels, frame_pixels, predict_maps, save_figure  # noqa: E402

BASELINES = ("centre",)
PER_ITEM_FILE = "per_item.csv"
METRICS_FILE = "metrics.json"
MISSING_FILE = "missing_ids.txt"
HISTOGRAM_FILE = "ciou_histogram.png"
FIGURES_FOLDER = "figures"
FIGURE_PATTERN = re.compile(r"^\d+_.+\.png$")  # RANK_ID.png, the files a previous --figures run left
NO_PAIR = "no usable frame/wav pair in --data_dir"
NO_ANNOTATION = "no annotation"
NOT_DECODED = "failed to decode"
LISTED_DEGENERATE = 10  # how many degenerate ids the printout names


def parse_arguments(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="model.keras from train.py, or an official LVS .pth.tar")
    source.add_argument("--baseline", choices=BASELINES,
                        help="score a fixed map instead of a model: 'centre' = a centred box of half the frame's side")
    parser.add_argument("--data_dir", required=True, help="folder of NAME.jpg|.png + NAME.wav pairs (as train.py reads them)")
    parser.add_argument("--annotations", required=True,
                        help="a vggss.json-style file, or a folder of Flickr SoundNet NAME.xml files")
    parser.add_argument("--test_list", default=None,
                        help="csv whose first column is the test ids (vggss_test.csv, flickr_test.csv); "
                             "default: every annotated item present in --data_dir")
    parser.add_argument("--out_dir", default="evaluation",
                        help="where per_item.csv, metrics.json, missing_ids.txt and the plots go (default: evaluation)")
    parser.add_argument("--batch_size", type=positive_int, default=16, help="pairs per forward pass (default: 16)")
    parser.add_argument("--figures", type=non_negative_int, default=0, metavar="N",
                        help="save N overlays with the ground-truth boxes, spread from the best to the worst item (default: 0)")
    return parser.parse_args(argv)


def unique(names):
    """names without repeats, in first-seen order."""
    return list(dict.fromkeys(names))


def select_items(annotations, data_dir, names=None):
    """The pairs to score and the test ids that cannot be scored.

    Args:
        annotations: dict name -> Annotation (annotations.load_annotations).
        data_dir: folder of frame/wav pairs.
        names: test ids (a --test_list), or None for every annotated item.

    Returns:
        (pairs, missing, skipped): pairs is the list of preprocessing.Pair that have an annotation, in test
        order; missing is a dict id -> reason for the ids that have no usable pair or no annotation (without
        a test list: only annotated ids with some unusable file in data_dir); skipped is find_pairs' list of
        "path: reason" for unusable files of wanted ids.

    Raises:
        ValueError: if data_dir is not a folder.
    """
    wanted = unique(names) if names is not None else list(annotations)
    found, skipped = preprocessing.find_pairs(data_dir, names=wanted)
    by_name = {pair.name: pair for pair in found}
    # without a test list, an annotated item is only missed if some file of it is there but unusable
    present = {os.path.splitext(file_name)[0] for file_name in os.listdir(data_dir)} if names is None else None
    pairs, missing = [], {}
    for name in wanted:
        if name not in by_name:
            if present is None or name in present:
                missing[name] = NO_PAIR
        elif name not in annotations:
            missing[name] = NO_ANNOTATION
        else:
            pairs.append(by_name[name])
    return pairs, missing, skipped


def no_items_message(data_dir, annotations_path, test_list, missing):
    """The one error line when nothing can be scored."""
    if not os.listdir(data_dir):
        return f"{data_dir} is empty"
    if test_list:
        without_annotation = sum(reason == NO_ANNOTATION for reason in missing.values())
        detail = f" ({without_annotation} have a pair but no annotation)" if without_annotation else ""
        return (f"none of the {len(missing)} ids of {test_list} has both a frame/wav pair in {data_dir} and an "
                f"annotation in {annotations_path}{detail}")
    return (f"no frame/wav pair in {data_dir} is named like an annotated item of {annotations_path} "
            "(expected NAME.jpg|.jpeg|.png + NAME.wav)")


def score_model(model, pairs, annotations, batch_size):
    """cIoU_i of every pair that decodes, with the model's maps.

    Args:
        model: an LVSModel (model.load_checkpoint).
        pairs: list of preprocessing.Pair, all annotated.
        annotations: dict name -> Annotation.
        batch_size: pairs per forward pass.

    Returns:
        (cious, maps): dict name -> cIoU_i; dict name -> (similarity h x w, positive mask h x w).
    """
    cious, maps = {}, {}
    for name, _, similarity, mask in predict_maps(model, pairs, batch_size, description="scoring"):
        cious[name] = metrics.score_map(similarity, ground_truth_map(annotations[name]))
        maps[name] = (similarity, mask)
    return cious, maps


def score_baseline(pairs, annotations, baseline="centre"):
    """cIoU_i of every pair under a fixed map (the frames are not decoded).

    Args:
        pairs: list of preprocessing.Pair, all annotated.
        annotations: dict name -> Annotation.
        baseline: "centre" (metrics.centre_baseline_map: a centred box of half the frame's side).

    Returns:
        (cious, maps) as score_model; the map and the "mask" of every item are the fixed map.
    """
    if baseline != "centre":
        raise ValueError(f"unknown baseline {baseline!r} (expected one of {BASELINES})")
    heatmap = metrics.centre_baseline_map()  # 224 x 224, 1 inside the centred box
    cious = {pair.name: metrics.score_map(heatmap, ground_truth_map(annotations[pair.name])) for pair in pairs}
    return cious, {name: (heatmap, heatmap) for name in cious}


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


def summary_line(summary, n_missing):
    """The one-line result, e.g. 'cIoU@0.5 0.412  AUC 0.398  mean cIoU 0.401  (scored 110, missing 0)'."""
    return (f"cIoU@0.5 {summary['ciou']:.3f}  AUC {summary['auc']:.3f}  mean cIoU {summary['mean_ciou']:.3f}  "
            f"(scored {summary['items']}, missing {n_missing})")


def per_item_csv(names, cious, degenerate, annotations):
    """The text of per_item.csv: id, ciou (full precision, 'nan' if undefined), degenerate (1/0), class."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["id", "ciou", "degenerate", "class"])
    for name in names:
        class_name = annotations[name].class_name
        writer.writerow([name, repr(float(cious[name])), int(name in degenerate), "" if class_name is None else class_name])
    return buffer.getvalue()


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


def save_overlays(chosen, pairs_by_name, maps, cious, annotations, degenerate, image_size, folder, label):
    """Draw the chosen items with their ground-truth boxes and their cIoU in the caption.

    Args:
        chosen: list of (rank, name) from spread_over_scores.
        pairs_by_name: dict name -> preprocessing.Pair.
        maps: dict name -> (similarity, mask).
        cious: dict name -> cIoU_i.
        annotations: dict name -> Annotation.
        degenerate: set of names without a usable box.
        image_size: side of the frame crop (the model's, or 224 for a baseline).
        folder: where RANK_ID.png go (earlier RANK_ID.png files there are removed first).
        label: what was scored, for the caption.

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
        try:
            frame = frame_pixels(preprocessing.load_frame(pairs_by_name[name].image_path, image_size))
        except Exception as error:  # a baseline never decoded the frames; a corrupt one only loses its figure
            print(f"warning: no figure for {name}: {type(error).__name__}: {error}", file=sys.stderr)
            continue
        similarity, mask = maps[name]
        caption = f"cIoU {cious[name]:.3f}, rank {rank} of {len(cious)} ({label})"
        if name in degenerate:
            caption += "; no usable ground-truth box"
        figure = draw_panels(frame, similarity, mask, title=name, boxes=normalised_boxes(annotations[name]),
                             caption=caption)
        path = os.path.join(folder, f"{rank:0{width}d}_{name}.png")
        save_figure(figure, path)
        written.append(path)
    return written


def main(argv=None):
    arguments = parse_arguments(argv)
    if arguments.checkpoint and not os.path.isfile(arguments.checkpoint):
        sys.exit(f"error: checkpoint not found: {arguments.checkpoint}")
    if not os.path.exists(arguments.annotations):
        sys.exit(f"error: annotations not found: {arguments.annotations}")
    if not os.path.isdir(arguments.data_dir):
        sys.exit(f"error: data folder not found: {arguments.data_dir}")
    try:
        annotations = load_annotations(arguments.annotations)
        names = read_test_list(arguments.test_list) if arguments.test_list else None
    except ValueError as error:
        sys.exit(f"error: {error}")
    pairs, missing, skipped = select_items(annotations, arguments.data_dir, names)
    for line in skipped:
        print(f"skipped {line}", file=sys.stderr)
    if not pairs:
        sys.exit(f"error: {no_items_message(arguments.data_dir, arguments.annotations, arguments.test_list, missing)}")

    if arguments.checkpoint:
        try:
            model = load_checkpoint(arguments.checkpoint)
        except ValueError as error:
            sys.exit(f"error: {error}")
        label = f"checkpoint {arguments.checkpoint}"
        print(f"scoring {len(pairs)} item(s) of {arguments.data_dir} with {label}")
        cious, maps = score_model(model, pairs, annotations, arguments.batch_size)
        image_size = model.settings["image_size"]
    else:
        label = f"{arguments.baseline} baseline"
        print(f"scoring {len(pairs)} item(s) of {arguments.data_dir} with the {label}")
        cious, maps = score_baseline(pairs, annotations, arguments.baseline)
        image_size = preprocessing.DEFAULT_SETTINGS["image_size"]
    for pair in pairs:
        if pair.name not in cious:
            missing[pair.name] = NOT_DECODED
    if not cious:
        sys.exit("error: no pair could be decoded")

    scored = [pair.name for pair in pairs if pair.name in cious]
    summary = metrics.summarise([cious[name] for name in scored])
    degenerate = degenerate_items({name: annotations[name] for name in scored})
    thresholds, rates = metrics.success_curve([cious[name] for name in scored])
    reasons = {reason: sum(value == reason for value in missing.values()) for reason in unique(missing.values())}

    out_dir = arguments.out_dir
    write_text(os.path.join(out_dir, PER_ITEM_FILE), per_item_csv(scored, cious, set(degenerate), annotations))
    write_text(os.path.join(out_dir, MISSING_FILE), "".join(f"{name}\n" for name in missing))
    report = {
        "ciou": summary["ciou"],
        "auc": summary["auc"],
        "mean_ciou": summary["mean_ciou"],
        "n_scored": summary["items"],
        "n_missing": len(missing),
        "missing_reasons": reasons,
        "n_degenerate": len(degenerate),
        "degenerate_ids": degenerate,
        "n_undefined": summary["undefined"],
        "success_curve": {"thresholds": thresholds.tolist(), "success_rates": rates.tolist()},
        "checkpoint": arguments.checkpoint,
        "baseline": arguments.baseline,
        "data_dir": arguments.data_dir,
        "annotations": arguments.annotations,
        "test_list": arguments.test_list,
    }
    write_text(os.path.join(out_dir, METRICS_FILE), json.dumps(report, indent=1) + "\n")
    draw_histogram([cious[name] for name in scored], summary, os.path.join(out_dir, HISTOGRAM_FILE), label)
    figures = []
    if arguments.figures:
        chosen = spread_over_scores(cious, arguments.figures)
        figures = save_overlays(chosen, {pair.name: pair for pair in pairs}, maps, cious, annotations,
                                set(degenerate), image_size, os.path.join(out_dir, FIGURES_FOLDER), label)

    if preprocessing.SKIPPED_WHILE_LOADING:
        for line in sorted(set(preprocessing.SKIPPED_WHILE_LOADING)):
            print(f"failed to decode {line}", file=sys.stderr)
    if missing:
        details = ", ".join(f"{count} {reason}" for reason, count in reasons.items())
        print(f"missing {len(missing)} item(s) ({details}); ids in {os.path.join(out_dir, MISSING_FILE)}")
    if degenerate:
        listed = ", ".join(degenerate[:LISTED_DEGENERATE]) + (", ..." if len(degenerate) > LISTED_DEGENERATE else "")
        print(f"{len(degenerate)} scored item(s) have no usable ground-truth box and score 0 as in the official "
              f"code (degenerate = 1 in {PER_ITEM_FILE}): {listed}")
    if summary["undefined"]:
        print(f"{summary['undefined']} item(s) have an undefined cIoU (empty box and empty prediction); counted as failures")
    outputs = [PER_ITEM_FILE, METRICS_FILE, HISTOGRAM_FILE] + ([f"{len(figures)} figure(s) in {FIGURES_FOLDER}/"] if figures else [])
    print(f"wrote {', '.join(outputs)} to {out_dir}")
    print(summary_line(summary, len(missing)))


if __name__ == "__main__":
    main()
