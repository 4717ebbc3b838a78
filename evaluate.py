r"""Score sound-source localisation on VGG-SS or Flickr SoundNet: cIoU@0.5 and AUC under the LVS or the EZ-VSL
protocol, and AP / max-F1 / LocAcc on SLAVC's extended test sets; optional object-guided localisation (OGL).

Every test item that has a frame/audio pair in --data_dir and a ground truth in --annotations is scored; items
of --test_list without a pair (or without an annotation) are counted as missing and listed, not an error.

--protocol (each is one object of evaluation/protocols.py that owns all of these rules and the confidence and
OGL mixing; every choice it implies is written to metrics.json under "protocol"):
    lvs    (default) the official LVS test.py: shorter side to 224 + centre crop, the checkpoint's audio_seconds
           from 0 s, cv2 bilinear upsampling, pixels above the median of the min-max map (evaluation/metrics.py)
    ezvsl  EZ-VSL / FNAC test.py: Resize((224, 224)) (the whole frame squashed), the middle 3 s of audio,
           F.interpolate(bilinear, align_corners=True), pixels >= sorted(map)[n // 2] of the min-max map
    slavc  as ezvsl with F.interpolate(bicubic, align_corners=True) (SLAVC test.py --relative_prediction)
--resize crop|squash overrides the protocol's frame transform. VGG-SS and Flickr boxes are fractions of the
whole frame: with crop, a non-square frame loses its sides, and evaluate.py says so once.
--extended LIST.csv adds SLAVC's negatives (video's frame with audio's sound, no box) and reports AP, max-F1 and
LocAcc (evaluation/extended_metrics.py), overall and per box size. The confidence of an item is SLAVC's: the mean of the top
quarter of the upsampled map scaled from --confidence_range (LVS's S_ii is a cosine: -1 1) to [0, 1].
--ogl ALPHA also scores the object map of an ImageNet ResNet-18 (OBJ) and the mix AV + OGL (evaluation/object_guidance.py).

Written to --out_dir (atomically):
    per_item.csv          id, ciou, degenerate, class, kind (positive/negative), video, audio, boxes, area,
                          confidence (+ obj_/av_ogl_ columns with --ogl)
    metrics.json          ciou, auc, mean_ciou, n_scored, n_missing, protocol, ... (+ ap, max_f1, loc_acc, buckets)
    missing_ids.txt       test-list ids that could not be scored, one a line (usable as a --test_list)
    ciou_histogram.png    the per-item cIoU distribution with the 0.5 success line
    precision_recall.png  with --extended: SLAVC's precision-recall points, one line per row (AV, OBJ, AV+OGL)
    figures/RANK_ID.png   with --figures N: N items spread from the best to the worst, boxes drawn
The last line printed is the summary, e.g.
    cIoU@0.5 0.412  AUC 0.398  mean cIoU 0.401  (scored 110, missing 0)

Usage:
    python evaluate.py --checkpoint runs/demo/model.keras --data_dir data/demo/test \
        --annotations data/demo/test_annotations.json --out_dir runs/demo/evaluation --figures 6
    python evaluate.py --baseline centre --data_dir data/demo/test \
        --annotations data/demo/test_annotations.json --out_dir runs/demo/evaluation_centre
    python evaluate.py --checkpoint lvs_vggss.pth.tar --data_dir data/vggss --annotations data/metadata/vggss.json
    python evaluate.py --checkpoint lvs_vggss.pth.tar --data_dir data/vggss --annotations data/metadata/vggss.json \
        --protocol ezvsl --extended data/metadata/vggss_test_plus_silent.csv --ogl 0.4 --out_dir eval_extended
    python evaluate.py --checkpoint lvs_flickr.pth.tar --data_dir data/flickr --annotations data/flickr/Annotations \
        --test_list data/metadata/flickr_test.csv --sample_rate native
"""

import safeguards.quiet_tensorflow  # noqa: F401  (first: imports TensorFlow with its C++ start-up lines off the terminal)

import argparse
import csv
import io
import json
import math
import os
import sys

import numpy as np

from evaluation import metrics
from evaluation import object_guidance
from pipeline import preprocessing
from evaluation import protocols
from evaluation.annotations import degenerate_items, ground_truth_map, load_annotations, read_test_list
from safeguards.arguments import non_negative_float, non_negative_int, positive_int, sample_rate
from safeguards.atomic import write_text
from evaluation.figures import draw_histogram, draw_precision_recall, save_overlays, spread_over_scores
from evaluation.figures import normalised_boxes  # noqa: F401  (the tests reach it through evaluate)
from evaluation.checks import find_test_overlap, frame_shape_warning, tiling_warning, training_set
from evaluation.maps import model_maps
from evaluation.scores import ROWS, baseline_scores, row_report, score_items
from evaluation.extended_sets import inconsistent_rows, negative_pairs, read_extended_list
from model import LVSModel, load_checkpoint
from safeguards.watchdog import DEFAULT_TIMEOUT_SECONDS, SLOW_WORK_ALLOWANCE_SECONDS, Watchdog

BASELINES = ("centre",)
PER_ITEM_FILE = "per_item.csv"
METRICS_FILE = "metrics.json"
MISSING_FILE = "missing_ids.txt"
MISSING_NEGATIVES_FILE = "missing_negatives.txt"
INCONSISTENT_FILE = "inconsistent_negatives.txt"
HISTOGRAM_FILE = "ciou_histogram.png"
PRECISION_RECALL_FILE = "precision_recall.png"
FIGURES_FOLDER = "figures"
NO_PAIR = "no usable frame/wav pair in --data_dir"
NO_ANNOTATION = "no annotation"
NOT_DECODED = "failed to decode"
LISTED = 10  # how many ids a printed list names


def alpha_argument(text):
    """--ogl: a weight in [0, 1]."""
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def parse_arguments(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="model.keras from train.py, or an official LVS .pth.tar")
    source.add_argument("--baseline", choices=BASELINES,
                        help="score a fixed map instead of a model: 'centre' = a centred box of half the frame's side")
    parser.add_argument("--data_dir", required=True,
                        help="the test clips: NAME.jpg|.png + NAME.wav pairs, frames/ + audio/ folders, or Flickr's Data/")
    parser.add_argument("--annotations", required=True,
                        help="a vggss.json-style file, or a folder of Flickr SoundNet NAME.xml files")
    parser.add_argument("--test_list", default=None,
                        help="csv whose first column is the test ids (vggss_test.csv, flickr_test.csv, "
                             "vggss_heard_test.csv, ...); default: every annotated item present in --data_dir")
    parser.add_argument("--out_dir", default="evaluation",
                        help="where per_item.csv, metrics.json, missing_ids.txt and the plots go (default: evaluation)")
    parser.add_argument("--batch_size", type=positive_int, default=16, help="pairs per forward pass (default: 16)")
    parser.add_argument("--stall_timeout", type=non_negative_float, default=DEFAULT_TIMEOUT_SECONDS,
                        help="seconds without a finished batch after which every thread's stack is written to "
                             "OUT_DIR/stall.log and the run exits with code 3 (the limit grows to 20 x the slowest "
                             f"batch seen; 0 disables; default: {DEFAULT_TIMEOUT_SECONDS:g})")
    parser.add_argument("--figures", type=non_negative_int, default=0, metavar="N",
                        help="save N overlays with the ground-truth boxes, spread from the best to the worst item (default: 0)")
    parser.add_argument("--protocol", choices=tuple(protocols.PROTOCOLS), default="lvs",
                        help="lvs (default: crop, the checkpoint's audio from 0 s, cv2 upsampling, LVS median), ezvsl "
                             "(squash, middle 3 s, bilinear F.interpolate, EZ-VSL median) or slavc (ezvsl with bicubic)")
    parser.add_argument("--resize", choices=protocols.RESIZES, default=None,
                        help="override the protocol's frame transform: crop (shorter side + centre crop, LVS) or squash "
                             "(the whole frame to a square, EZ-VSL)")
    parser.add_argument("--sample_rate", type=sample_rate, default=None,
                        help="read the audio at this rate (Hz) or 'native' (each file at its own rate); default: the "
                             "checkpoint's (an official .pth.tar assumes 16000)")
    parser.add_argument("--extended", default=None, metavar="LIST.csv",
                        help="SLAVC's extended list (video,audio,label): add its non-sounding pairs and report AP, "
                             "max-F1 and LocAcc")
    parser.add_argument("--extended_dir", default=None,
                        help="where the clips of the --extended negatives are (default: --data_dir)")
    parser.add_argument("--confidence_range", type=float, nargs=2, default=(-1.0, 1.0), metavar=("LOW", "HIGH"),
                        help="the fixed range scaled to [0, 1] before the confidence is taken (default: -1 1, the "
                             "range of LVS's cosine map; SLAVC's S / tau would be -1/tau 1/tau)")
    parser.add_argument("--ogl", type=alpha_argument, default=None, metavar="ALPHA",
                        help="also score object-guided localisation: alpha * AV + (1 - alpha) * OBJ (0.4 in EZ-VSL "
                             "and SLAVC); rows AV, OBJ and AV+OGL")
    parser.add_argument("--image_weights", default=object_guidance.DEFAULT_WEIGHTS,
                        help="the ImageNet ResNet-18 of --ogl, converted by resnet18.py (default: "
                             "weights/resnet18_imagenet.weights.h5)")
    arguments = parser.parse_args(argv)
    low, high = arguments.confidence_range
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        parser.error(f"--confidence_range must be two finite numbers LOW < HIGH, got {low} {high}")
    if arguments.extended_dir and not arguments.extended:
        parser.error("--extended_dir goes with --extended")
    if arguments.ogl is not None and arguments.baseline:
        parser.error("--ogl needs a --checkpoint (a baseline has no audio-visual map to mix)")
    return arguments


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


def summary_line(summary, n_missing):
    """The one-line result, e.g. 'cIoU@0.5 0.412  AUC 0.398  mean cIoU 0.401  (scored 110, missing 0)'."""
    return (f"cIoU@0.5 {summary['ciou']:.3f}  AUC {summary['auc']:.3f}  mean cIoU {summary['mean_ciou']:.3f}  "
            f"(scored {summary['items']}, missing {n_missing})")


def per_item_csv(names, rows, degenerate, annotations, kinds, box_counts, areas):
    """The text of per_item.csv, one line per scored item (positives first, then negatives)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    extra = [f"{row}_{column}" for row in rows if row != "av" for column in ("ciou", "confidence")]
    writer.writerow(["id", "ciou", "degenerate", "class", "kind", "video", "audio", "boxes", "area", "confidence"] + extra)
    for name in names:
        annotation = annotations.get(name)
        class_name = "" if annotation is None or annotation.class_name is None else annotation.class_name
        video, audio = name.split("+", 1) if kinds[name] == "negative" else (name, name)
        ciou, confidence = rows["av"][name]
        values = [value for row in rows if row != "av" for value in map(repr, map(float, rows[row][name]))]
        writer.writerow([name, repr(float(ciou)), int(name in degenerate), class_name, kinds[name], video, audio,
                         box_counts[name], repr(float(areas[name])), repr(float(confidence))] + values)
    return buffer.getvalue()


def json_safe(value):
    """value with every NaN / infinite float replaced by None, so metrics.json is strict JSON (empty buckets)."""
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def fail(message):
    """End the run with one error line."""
    raise SystemExit(f"error: {message}")


def load_model(path):
    """The LVSModel of a checkpoint, or one error line (unreadable, foreign, truncated or non-finite: load_checkpoint)."""
    try:
        model = load_checkpoint(path)
    except ValueError as error:
        fail(error)
    if not isinstance(model, LVSModel):
        fail(f"{path} holds a {type(model).__name__}, not an LVS model of this project")
    return model  # load_checkpoint has refused non-finite weights


def print_lines(title, names):
    """Print a title and the first LISTED names."""
    listed = ", ".join(names[:LISTED]) + (", ..." if len(names) > LISTED else "")
    print(f"{title}: {listed}")


def check_paths(arguments):
    """One error line for a checkpoint, annotation file or folder that is not there, before any work."""
    if arguments.checkpoint and not os.path.isfile(arguments.checkpoint):
        fail(f"checkpoint not found: {arguments.checkpoint}")
    if not os.path.exists(arguments.annotations):
        fail(f"annotations not found: {arguments.annotations}")
    if not os.path.isdir(arguments.data_dir):
        fail(f"data folder not found: {arguments.data_dir}")
    if arguments.extended_dir is not None and not os.path.isdir(arguments.extended_dir):
        fail(f"--extended_dir folder not found: {arguments.extended_dir}")


def read_items(arguments):
    """The annotations, the positive pairs and the negative pairs to score, with what is missing.

    Returns:
        (annotations, pairs, missing, negative_rows, negatives, missing_negatives).
    """
    try:
        annotations = load_annotations(arguments.annotations)
        names = read_test_list(arguments.test_list) if arguments.test_list else None
        negative_rows = read_extended_list(arguments.extended) if arguments.extended else []
        pairs, missing, skipped = select_items(annotations, arguments.data_dir, names)
        negatives, missing_negatives = (negative_pairs(negative_rows, arguments.extended_dir or arguments.data_dir)
                                        if negative_rows else ([], {}))
    except (ValueError, OSError) as error:
        fail(error)
    for line in skipped:
        print(f"skipped {line}", file=sys.stderr)
    if not pairs:
        fail(no_items_message(arguments.data_dir, arguments.annotations, arguments.test_list, missing))
    if negative_rows and not negatives:
        fail(f"none of the {len(negative_rows)} non-sounding pairs of {arguments.extended} has its frame and audio in "
             f"{arguments.extended_dir or arguments.data_dir}")
    return annotations, pairs, missing, negative_rows, negatives, missing_negatives


def count_text(total, negatives):
    """'110 item(s)', or '110 item(s) + 40 negative pair(s)'."""
    return f"{total - negatives} item(s)" + (f" + {negatives} negative pair(s)" if negatives else "")


def compute_maps(arguments, protocol, pairs, negatives=0):
    """The raw maps of every pair (the model's, or the baseline's fixed map) and how they were read.

    Args:
        arguments: the parsed flags.
        protocol: the protocols.Protocol of --protocol, with --resize applied.
        pairs: positives then negatives (preprocessing.Pair).
        negatives: how many of pairs are negatives (for the printout).

    Returns:
        (maps, failures, settings, label, warnings): maps and failures as evaluation.maps.model_maps; settings the
        preprocessing that ran (None for a baseline); label what was scored; warnings about the audio.
    """
    if not arguments.checkpoint:
        label = f"{arguments.baseline} baseline"
        print(f"scoring {count_text(len(pairs), negatives)} of {arguments.data_dir} with the {label}")
        baseline = metrics.centre_baseline_map()  # 224 x 224
        return {pair.name: {"similarity": baseline, "positive_mask": baseline} for pair in pairs}, {}, None, label, []
    model = load_model(arguments.checkpoint)
    settings = dict(model.settings)
    if arguments.sample_rate is not None:
        settings["sample_rate"] = arguments.sample_rate
    if protocol.audio_seconds is not None:
        settings["audio_seconds"] = protocol.audio_seconds
    try:
        settings = preprocessing.check_settings(settings)
        mapper = object_guidance.ObjectMapper(arguments.image_weights) if arguments.ogl is not None else None
    except ValueError as error:
        fail(error)
    label = f"checkpoint {arguments.checkpoint}"
    print(f"scoring {count_text(len(pairs), negatives)} of {arguments.data_dir} with {label}, protocol {protocol.name}, "
          f"--resize {protocol.resize}")
    with Watchdog(arguments.stall_timeout, log_path=os.path.join(arguments.out_dir, "stall.log"),
                  what="evaluation") as stall_watchdog:
        stall_watchdog.allow(SLOW_WORK_ALLOWANCE_SECONDS)  # the first batch traces the forward
        maps, failures, durations = model_maps(model, pairs, settings, protocol, arguments.batch_size,
                                               object_mapper=mapper, on_progress=stall_watchdog.tick)
    tiled = tiling_warning(durations, settings["audio_seconds"])
    return maps, failures, settings, label, [tiled] if tiled else []


def main(argv=None):
    arguments = parse_arguments(argv)
    check_paths(arguments)
    protocol = protocols.PROTOCOLS[arguments.protocol].with_resize(arguments.resize)
    annotations, pairs, missing, negative_rows, negatives, missing_negatives = read_items(arguments)
    inconsistent = inconsistent_rows(negative_rows)
    warnings = [message for message in [frame_shape_warning(pairs, protocol.resize, annotations)] if message]
    maps, failures, settings, label, audio_warnings = compute_maps(arguments, protocol, pairs + negatives, len(negatives))
    warnings += audio_warnings
    for message in warnings:
        print(f"warning: {message}", file=sys.stderr)
    negative_names = {pair.name for pair in negatives}
    for name in failures:
        (missing_negatives if name in negative_names else missing)[name] = NOT_DECODED
    positives = [pair.name for pair in pairs if pair.name in maps]
    scored_negatives = [pair.name for pair in negatives if pair.name in maps]
    if not positives:
        fail("no pair could be decoded")

    ground_truths = {name: ground_truth_map(annotations[name]) for name in positives}
    ground_truths.update({name: np.zeros((metrics.MAP_SIZE, metrics.MAP_SIZE)) for name in scored_negatives})
    box_counts = {name: len(annotations[name].boxes) for name in positives}
    box_counts.update({name: 0 for name in scored_negatives})
    areas = {name: float(ground_truths[name].sum()) for name in positives + scored_negatives}
    kinds = {name: "positive" for name in positives}
    kinds.update({name: "negative" for name in scored_negatives})
    if arguments.checkpoint:
        rows = score_items(maps, positives + scored_negatives, ground_truths, protocol, arguments.confidence_range,
                           arguments.ogl)
    else:
        rows = baseline_scores(positives + scored_negatives, ground_truths)
    row_reports = {row: row_report(scores, positives, scored_negatives, bool(negative_rows), box_counts, areas)
                   for row, scores in rows.items()}
    summary = metrics.summarise([rows["av"][name][0] for name in positives])
    degenerate = degenerate_items({name: annotations[name] for name in positives})
    cious = {name: rows["av"][name][0] for name in positives}
    thresholds, rates = metrics.success_curve([cious[name] for name in positives])
    reasons = {reason: sum(value == reason for value in missing.values()) for reason in unique(missing.values())}
    try:
        overlap_file, overlap = find_test_overlap(arguments.checkpoint, positives + scored_negatives)
    except ValueError as error:
        fail(error)

    out_dir = arguments.out_dir
    write_text(os.path.join(out_dir, PER_ITEM_FILE),
               per_item_csv(positives + scored_negatives, rows, set(degenerate), annotations, kinds, box_counts, areas))
    write_text(os.path.join(out_dir, MISSING_FILE), "".join(f"{name}\n" for name in missing))
    report = dict(row_reports["av"])
    report.pop("precision_recall", None)
    report.update({
        "n_missing": len(missing),
        "missing_reasons": reasons,
        "n_degenerate": len(degenerate),
        "degenerate_ids": degenerate,
        "success_curve": {"thresholds": thresholds.tolist(), "success_rates": rates.tolist()},
        "checkpoint": arguments.checkpoint,
        "baseline": arguments.baseline,
        "train_set": training_set(arguments.checkpoint),
        "data_dir": arguments.data_dir,
        "annotations": arguments.annotations,
        "test_list": arguments.test_list,
        "protocol": dict(protocol.describe(), audio_seconds=settings["audio_seconds"] if settings else None,
                         sample_rate=settings["sample_rate"] if settings else None,
                         confidence_range=list(arguments.confidence_range)),
        "warnings": warnings,
        "test_overlap": {"file": overlap_file, "n_overlapping": len(overlap), "names": overlap},
    })
    if negative_rows:
        report["extended"] = {"list": arguments.extended, "folder": arguments.extended_dir or arguments.data_dir,
                              "n_negative_rows": len(negative_rows), "n_negative_scored": len(scored_negatives),
                              "n_negative_missing": len(missing_negatives),
                              "n_inconsistent_rows": len(inconsistent),
                              "n_inconsistent_not_annotated": sum(video not in annotations for video, _ in inconsistent),
                              "inconsistent_rows_note": "non-sounding rows whose video is their audio (a frame with "
                                                        "its own sound); kept as negatives, as SLAVC keeps them"}
        write_text(os.path.join(out_dir, MISSING_NEGATIVES_FILE), "".join(f"{name}\n" for name in missing_negatives))
        write_text(os.path.join(out_dir, INCONSISTENT_FILE), "".join(f"{video},{audio}\n" for video, audio in inconsistent))
    if arguments.ogl is not None:
        report["ogl"] = {"alpha": arguments.ogl, "image_weights": arguments.image_weights,
                         "rows": {ROWS[row]: {key: value for key, value in numbers.items() if key != "precision_recall"}
                                  for row, numbers in row_reports.items()}}
    write_text(os.path.join(out_dir, METRICS_FILE), json.dumps(json_safe(report), indent=1, allow_nan=False) + "\n")
    draw_histogram([cious[name] for name in positives], summary, os.path.join(out_dir, HISTOGRAM_FILE), label)
    outputs = [PER_ITEM_FILE, METRICS_FILE, HISTOGRAM_FILE]
    if negative_rows:
        curves = {ROWS[row]: (numbers["precision_recall"]["recall"], numbers["precision_recall"]["precision"],
                              numbers["ap"]) for row, numbers in row_reports.items()}
        draw_precision_recall(curves, os.path.join(out_dir, PRECISION_RECALL_FILE),
                              f"{label}\n{arguments.extended}, protocol {protocol.name}")
        outputs.append(PRECISION_RECALL_FILE)
    if arguments.figures:
        chosen = spread_over_scores(cious, arguments.figures)
        figure_maps = {name: (maps[name]["similarity"], maps[name]["positive_mask"]) for name in positives}
        image_size = settings["image_size"] if settings else metrics.MAP_SIZE
        figures = save_overlays(chosen, {pair.name: pair for pair in pairs}, figure_maps, cious, annotations,
                                set(degenerate), image_size, os.path.join(out_dir, FIGURES_FOLDER), label, protocol.resize)
        outputs.append(f"{len(figures)} figure(s) in {FIGURES_FOLDER}/")

    print_results(report, row_reports, summary, outputs, inconsistent, out_dir)


def print_results(report, row_reports, summary, outputs, inconsistent, out_dir):
    """Say what metrics.json holds besides the numbers (missing, degenerate, overlap, negatives), then the numbers;
    the last line is summary_line."""
    if report["n_missing"]:
        details = ", ".join(f"{count} {reason}" for reason, count in report["missing_reasons"].items())
        print(f"missing {report['n_missing']} item(s) ({details}); ids in {os.path.join(out_dir, MISSING_FILE)}")
    degenerate = report["degenerate_ids"]
    if degenerate:
        print_lines(f"{len(degenerate)} scored item(s) have no usable ground-truth box and score 0 as in the official "
                    f"code (degenerate = 1 in {PER_ITEM_FILE})", degenerate)
    if summary["undefined"]:
        print(f"{summary['undefined']} item(s) have an undefined cIoU (empty box and empty prediction); counted as failures")
    overlap = report["test_overlap"]
    if overlap["names"]:
        print_lines(f"warning: {overlap['n_overlapping']} scored item(s) were training pairs of this checkpoint "
                    f"({overlap['file']}); its numbers on them are not test numbers", overlap["names"])
    extended = report.get("extended")
    if extended:
        missing_negatives = extended["n_negative_missing"]
        print(f"extended: {extended['n_negative_scored']} of {extended['n_negative_rows']} non-sounding pairs scored"
              + (f", {missing_negatives} missing (in {MISSING_NEGATIVES_FILE})" if missing_negatives else ""))
        if inconsistent:
            print_lines(f"{len(inconsistent)} non-sounding row(s) of {extended['list']} pair a frame with its own "
                        f"clip's audio (video == audio; {extended['n_inconsistent_not_annotated']} of them are clips "
                        f"without an annotation in {report['annotations']}); kept as negatives as SLAVC keeps them, "
                        f"listed in {INCONSISTENT_FILE}", [video for video, _ in inconsistent])
    print(f"wrote {', '.join(outputs)} to {out_dir}")
    if len(row_reports) > 1 or extended:
        for row, numbers in row_reports.items():
            print(row_line(ROWS[row], numbers))
    print(summary_line(summary, report["n_missing"]))


def row_line(label, numbers):
    """One row of the printed table: cIoU, AUC and (extended) AP, max-F1, LocAcc."""
    line = f"{label:7s} cIoU@0.5 {numbers['ciou']:.3f}  AUC {numbers['auc']:.3f}"
    if "ap" in numbers:
        line += f"  AP {numbers['ap']:.3f}  max-F1 {numbers['max_f1']:.3f}  LocAcc {numbers['loc_acc']:.3f}"
    return line


if __name__ == "__main__":
    main()
