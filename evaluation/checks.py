"""What evaluate.py checks and says about a run besides its numbers: test items the checkpoint trained on, frames
whose crop drops part of the annotated frame, audio tiled because it is shorter than the model reads.

Usage (from evaluate.py):
    overlap_file, overlapping = find_test_overlap("runs/x/model.keras", scored_names)
    message = frame_shape_warning(pairs, "crop", annotations)     # None, or the warning's text
    message = tiling_warning({"item": 3.0}, 10.0)
"""

import os

from PIL import Image

from evaluation.annotations import FLICKR, read_json, read_text

TEST_OVERLAP_FILE = "test_overlap.txt"  # train.py writes the names of its training pairs found on test lists
EPSILON_SECONDS = 1e-3


def find_test_overlap(checkpoint, scored_names):
    """The scored items the checkpoint's training run saw: test_overlap.txt beside the checkpoint or one folder up.

    Args:
        checkpoint: the checkpoint path (None for a baseline).
        scored_names: the names being scored.

    Returns:
        (path, names): the file found (or None) and the sorted scored names it lists.

    Raises:
        ValueError: if the file exists but cannot be read as UTF-8 text.
    """
    if not checkpoint:
        return None, []
    folder = os.path.dirname(os.path.abspath(checkpoint))
    for candidate in (os.path.join(folder, TEST_OVERLAP_FILE), os.path.join(os.path.dirname(folder), TEST_OVERLAP_FILE)):
        if os.path.isfile(candidate):
            listed = {line.strip() for line in read_text(candidate).splitlines() if line.strip()}
            return candidate, sorted(listed.intersection(scored_names))
    return None, []


def training_set(checkpoint):
    """What the checkpoint was trained on, for the report: args.json's data_dir beside it, else what is known."""
    if not checkpoint:
        return None
    if checkpoint.endswith(".pth.tar") or checkpoint.endswith(".pth"):
        return "official checkpoint"
    path = os.path.join(os.path.dirname(os.path.abspath(checkpoint)), "args.json")
    try:
        saved = read_json(path)
        return str(saved.get("train_list") or saved.get("data_dir"))
    except (ValueError, AttributeError):  # no args.json, or not one of train.py's
        return None


def non_square_frames(pairs):
    """(count, example) of the frames that are not square, read from the image headers."""
    count, example = 0, None
    for pair in pairs:
        try:
            with Image.open(pair.image_path) as image:
                width, height = image.size
        except Exception:  # an unreadable frame is reported when it is decoded
            continue
        if width != height:
            count += 1
            example = example or f"{pair.name} {width}x{height}"
    return count, example


def frame_shape_warning(pairs, resize, annotations):
    """The once-only warning when a cropped frame is not square but the boxes are fractions of the whole frame."""
    if resize != "crop" or not pairs:
        return None
    count, example = non_square_frames(pairs)
    if not count:
        return None
    kind = "256-px Flickr boxes of the whole frame" if annotations[pairs[0].name].dataset == FLICKR else \
        "VGG-SS boxes normalised to the whole frame"
    return (f"{count} of {len(pairs)} frames are not square (e.g. {example}): --resize crop scores only the middle of "
            f"each such frame, while the annotations are {kind}, so boxes and maps are misaligned; use --resize "
            "squash (or square frames) to score the whole frame")


def tiling_warning(durations, audio_seconds):
    """The once-only warning when audio files are shorter than what the model reads and get tiled."""
    short = {name: seconds for name, seconds in durations.items() if seconds + EPSILON_SECONDS < audio_seconds}
    if not short:
        return None
    example = min(short, key=short.get)
    return (f"{len(short)} of {len(durations)} audio files are shorter than the {audio_seconds:g} s the model reads "
            f"and are tiled (repeated) to that length (e.g. {example}: {short[example]:.2f} s)")


