"""The extended test lists of SLAVC (vggss_test_plus_silent.csv, flickr_test_plus_silent.csv) and their pairs.

Each row `video,audio,label` with label "non-sounding" is a negative: the frame of `video` with the audio of
`audio`, nothing in the frame makes that sound (SLAVC datasets.py appends exactly these rows, with no box).
The published VGG-SS list has rows whose video equals their audio (379 of 5,158): a frame with its own clip's
sound, labelled non-sounding. They are exactly the 379 rows whose clip is not a VGG-SS test item (not in
vggss_test.csv nor vggss.json): it looks as if their audio was meant to come from another clip. They are reported
and kept, as SLAVC keeps them (inconsistent_rows names them). In flickr_test_plus_silent.csv one video
(3908875350) is on the 250-id list but not on LVS's 249-id flickr_test.csv.

Usage:
    from evaluation.extended_sets import read_extended_list, negative_pairs
    rows = read_extended_list("data/metadata/vggss_test_plus_silent.csv")
    pairs, missing = negative_pairs(rows, "data/vggss")
"""

from pipeline import preprocessing
from evaluation.annotations import read_csv_rows

NEGATIVE_LABEL = "non-sounding"
HEADER = ["video", "audio", "label"]
MISSING_FRAME_OR_AUDIO = "the frame of its video or the audio of its audio clip is not in the folder"


def negative_name(video, audio):
    """The id of a negative pair in per_item.csv: VIDEO+AUDIO."""
    return f"{video}+{audio}"


def read_extended_list(path):
    """The (video, audio) rows labelled non-sounding of an extended list.

    Args:
        path: a csv with rows video,audio,label (the header row is optional).

    Returns:
        list of (video, audio) tuples in file order, repeats dropped.

    Raises:
        ValueError: one line naming the file, if it cannot be read, is not UTF-8, or has no non-sounding row.
    """
    rows = read_csv_rows(path)
    negatives = []
    for row in rows:
        cells = [cell.strip().lstrip("\ufeff") for cell in row]
        if len(cells) >= 3 and cells[2] == NEGATIVE_LABEL and cells[0] and cells[1]:
            negatives.append((cells[0], cells[1]))
    if not negatives:
        raise ValueError(f"{path} has no row `video,audio,{NEGATIVE_LABEL}` (expected SLAVC's extended list)")
    return list(dict.fromkeys(negatives))


def inconsistent_rows(rows):
    """The non-sounding rows whose video is their audio: a frame with its own sound, labelled as not sounding."""
    return [(video, audio) for video, audio in rows if video == audio]


def negative_pairs(rows, folder):
    """The frame/audio pairs of the negatives found in a folder (any layout preprocessing.find_pairs reads).

    Args:
        rows: (video, audio) tuples from read_extended_list.
        folder: where the clips are (--data_dir, or --extended_dir).

    Returns:
        (pairs, missing): pairs is a list of preprocessing.Pair named negative_name(video, audio) whose
        image is video's frame and audio is audio's sound; missing is a dict name -> reason.
    """
    wanted = list(dict.fromkeys([name for row in rows for name in row]))
    found, _ = preprocessing.find_pairs(folder, names=wanted)
    by_name = {pair.name: pair for pair in found}
    pairs, missing = [], {}
    for video, audio in rows:
        name = negative_name(video, audio)
        if video in by_name and audio in by_name:
            pairs.append(preprocessing.Pair(name, by_name[video].image_path, by_name[audio].audio_path))
        else:
            missing[name] = MISSING_FRAME_OR_AUDIO
    return pairs, missing
