"""The published test lists shipped in data/metadata, and which names of a training set are on them.

A training list built from VGGSound or Flickr-SoundNet can hold test items: vggss_144k.txt holds 3,709 of the
5,158 VGG-SS test items, vggss_10k.txt 238, FNAC's 144k draw 3,715, flickr_144k.txt 20 of the 249 Flickr test
ids. vggss_dl.py leaves them out of a training set by default, train.py warns when a data folder holds them,
and evaluate.py says when a checkpoint's training run saw the items it scores.

Usage:
    from downloading.held_out import test_names, overlapping_names
    names = overlapping_names(["zpWuikVorYg_000032", "abc_000001"])     # -> ["zpWuikVorYg_000032"]
    python -m downloading.held_out data/metadata/vggss_144k.txt                     # counts, per test list
"""

import argparse
import functools
import os

from evaluation.annotations import read_text

METADATA_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "metadata")
# The test lists a training set must not draw from, by dataset. Every file's first csv column is an item name.
TEST_LISTS = {
    "vggss": ("vggss_test.csv", "vggss_heard_test.csv", "vggss_unheard_test.csv"),
    "flickr": ("flickr_test.csv", "flickr_test_250.csv", "flickr_test_slavc_250.csv"),
}


def read_names(path):
    """Item names of a list file: the first comma-separated field of each non-empty line (a header is dropped).

    Args:
        path: a .txt list of names or a .csv whose first column is the name (`video,audio,label` headers and
            Flickr's "ID,frame" rows included).

    Returns:
        list of names in file order.

    Raises:
        ValueError: the file cannot be read or is not UTF-8 (the message names the file).
    """
    lines = read_text(path).splitlines()
    names = [line.split(",")[0].strip().lstrip("\ufeff") for line in lines]
    names = [name for name in names if name]
    if names and names[0] in ("video", "name", "id", "ID", "YTID", "# YTID"):
        names = names[1:]
    return names


@functools.lru_cache(maxsize=None)
def test_names(dataset=None):
    """Every name on the shipped test lists.

    Args:
        dataset: "vggss", "flickr", or None for both.

    Returns:
        frozenset of names.
    """
    datasets = TEST_LISTS if dataset is None else {dataset: TEST_LISTS[dataset]}
    names = set()
    for files in datasets.values():
        for filename in files:
            names.update(read_names(os.path.join(METADATA_DIR, filename)))
    return frozenset(names)


def item_key(name):
    """The name a test list uses for an item: the stem of a file name (NAME.jpg -> NAME)."""
    return os.path.splitext(os.path.basename(str(name)))[0] if str(name).lower().endswith(
        (".jpg", ".jpeg", ".png", ".wav", ".flac", ".mp4")) else str(name)


def overlapping_names(names, dataset=None):
    """The names of a training set that are on a shipped test list.

    Args:
        names: iterable of item names (or file names; extensions are ignored).
        dataset: "vggss", "flickr", or None for both.

    Returns:
        sorted list of the names found on a test list.
    """
    held = test_names(dataset)
    return sorted({item_key(name) for name in names} & held)


def main(argv=None):
    parser = argparse.ArgumentParser(description="Count the items of a training list that are on the shipped test lists.")
    parser.add_argument("lists", nargs="+", help="training lists (.txt of names or .csv whose first column is the name)")
    arguments = parser.parse_args(argv)
    try:
        for path in arguments.lists:
            names = read_names(path)
            for dataset, files in TEST_LISTS.items():
                for filename in files:
                    test = set(read_names(os.path.join(METADATA_DIR, filename)))
                    print(f"{path}: {len(set(names) & test)} of the {len(test)} items of {filename}")
    except ValueError as error:
        raise SystemExit(f"error: {error}")


if __name__ == "__main__":
    main()
