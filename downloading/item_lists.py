"""The item lists of VGGSound and VGG-SS: names, the VGG-SS json, training lists, id files, selection, test items.

An item is a 10 s section of a YouTube video, named YOUTUBEID_START (11-character id, '_', start second; written
with 6 digits in the published lists). The lists read here:
- vggss.json (the VGG-SS test set, shipped in data/metadata): {"file": NAME, "class": CLASS, "bbox": [...]} items;
- training lists: ID_START names one a line (data/metadata/vggss_144k.txt, vggss_10k.txt, vggss_heard.txt,
  vggss_144k_fnac.txt) or VGGSound's own vggsound.csv (ID,start,label,split rows, no header);
- id files (--ids): names or bare YouTube ids, one a line or as the first csv column.
leave_out_test_items drops the items of a training list that are on the shipped test lists (held_out.py).
vggss_dl.py downloads what these lists name.

Usage:
    from downloading.item_lists import load_train_list, leave_out_test_items
    kept, left_out = leave_out_test_items(load_train_list("data/metadata/vggss_144k.txt"))   # 3,709 left out
"""

import csv
import difflib
import os
import re
from collections import namedtuple

from downloading import held_out
from evaluation.annotations import read_json, read_text

DEFAULT_JSON = os.path.join(held_out.METADATA_DIR, "vggss.json")  # hche11/Localizing-Visual-Sounds-the-Hard-Way
YOUTUBE_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{11}")
NAME_PATTERN = re.compile(r"([A-Za-z0-9_-]{11})_(\d{1,9})")

Item = namedtuple("Item", ["name", "video_id", "start_seconds", "class_name"])


def parse_item_name(name):
    """Split a VGG-SS item name into its YouTube id and start second.

    Args:
        name: "YOUTUBEID_START", e.g. "zpWuikVorYg_000032" (the id is 11 characters of [A-Za-z0-9_-] and may itself
            contain '_'; START is the start second, zero-padded to 6 digits in vggss.json, any padding accepted).

    Returns:
        (video_id, start_seconds) as (str, int).

    Raises:
        ValueError: the name is not of that form.
    """
    match = NAME_PATTERN.fullmatch(name) if isinstance(name, str) else None
    if match is None:
        raise ValueError(f"{name!r} is not a VGG-SS name (11-character YouTube id + '_' + start second)")
    return match.group(1), int(match.group(2))


def canonical_name(video_id, start_seconds):
    """The vggss.json spelling of an item name: id + '_' + start second on 6 digits."""
    return f"{video_id}_{start_seconds:06d}"


def load_items(json_path):
    """Read a vggss.json list and validate every item name before anything uses it.

    Args:
        json_path: a JSON list of {"file": NAME, "class": CLASS, "bbox": [...]} items.

    Returns:
        A list of Item(name, video_id, start_seconds, class_name) in file order, duplicates dropped.

    Raises:
        ValueError: the file cannot be read or is not such a list (the message names the file).
    """
    entries = read_json(json_path)
    if not isinstance(entries, list):
        raise ValueError(f"{json_path} is not a VGG-SS list (expected a JSON list of items)")
    items, seen = [], set()
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("file"), str):
            raise ValueError(f"{json_path}: item {index} has no \"file\" name")
        try:
            video_id, start_seconds = parse_item_name(entry["file"])
        except ValueError as error:
            raise ValueError(f"{json_path}: item {index}: {error}") from None
        if entry["file"] in seen:
            continue
        seen.add(entry["file"])
        items.append(Item(entry["file"], video_id, start_seconds, str(entry.get("class", ""))))
    return items


def read_id_file(path):
    """Read the names or bare YouTube ids listed in a text/CSV file (first comma-separated field of each line).

    Blank lines and lines starting with '#' are ignored, and so is a first line that is neither (a header).

    Args:
        path: the file.

    Returns:
        A list of (video_id, start_seconds or None) keys; None selects every item of that video.

    Raises:
        ValueError: unreadable file or an entry that is neither a name nor an id.
    """
    lines = read_text(path).splitlines()
    keys = []
    for number, line in enumerate(lines, start=1):
        entry = line.split(",")[0].strip().strip('"')
        if not entry or entry.startswith("#"):
            continue
        if YOUTUBE_ID_PATTERN.fullmatch(entry):
            keys.append((entry, None))
            continue
        try:
            keys.append(parse_item_name(entry))
        except ValueError:
            if number == 1:
                continue
            raise ValueError(f"{path} line {number}: {entry!r} is neither a VGG-SS name nor a YouTube id") from None
    return keys


def load_train_list(path, split="train"):
    """Read a training list: ID_START names, one a line, or VGGSound's own csv (ID,start,label,split rows).

    Args:
        path: a .txt list such as data/metadata/vggss_144k.txt (a first line that is not a name is taken as a
            header), or vggsound.csv (no header in the official file; labels with commas are quoted).
        split: the rows of the csv to keep ("train" or "test"); ignored for a list of names.

    Returns:
        A list of Item in file order, duplicates dropped (the class is the csv's label, empty for a list of names).

    Raises:
        ValueError: unreadable or non-UTF-8 file, a Flickr-SoundNet list, or a malformed entry (the message names
            the file and the line).
    """
    lines = read_text(path).splitlines()
    numbered = [(number, line.strip()) for number, line in enumerate(lines, start=1)
                if line.strip() and not line.lstrip().startswith("#")]
    is_vggsound_csv = any(len(row) >= 4 and row[1].strip().isdigit()
                          for row in csv.reader(line for _, line in numbered[:2]))
    items, seen = [], set()
    for index, (number, line) in enumerate(numbered):
        try:
            if is_vggsound_csv:
                row = [field.strip() for field in next(csv.reader([line]))]
                if len(row) < 4 or not row[1].isdigit() or not YOUTUBE_ID_PATTERN.fullmatch(row[0]):
                    raise ValueError(f"{line!r} is not an ID,start,label,split row")
                if row[3] != split:
                    continue
                video_id, start_seconds, class_name = row[0], int(row[1]), row[2]
            else:
                entry = line.split(",")[0].strip()
                if entry.isdigit():
                    raise ValueError(f"{path}: {entry!r} is a Flickr-SoundNet id, not a VGGSound name: vggss_dl.py "
                                     "builds VGGSound sets (python -m downloading.held_out FILE counts a Flickr list's test items)")
                video_id, start_seconds = parse_item_name(entry)
                class_name = ""
        except (ValueError, csv.Error) as error:
            if str(error).startswith(f"{path}: "):
                raise
            if index == 0 and not is_vggsound_csv and NAME_PATTERN.search(line) is None:
                continue  # a header line
            raise ValueError(f"{path} line {number}: {error}") from None
        name = canonical_name(video_id, start_seconds)
        if name not in seen:
            seen.add(name)
            items.append(Item(name, video_id, start_seconds, class_name))
    if not items:
        raise ValueError(f"{path} holds no items" + (f" of split {split!r}" if is_vggsound_csv else ""))
    return items


def leave_out_test_items(items):
    """Split a training list into the items on no shipped test list and those on one (held_out.test_names).

    Args:
        items: list of Item of a VGGSound training list.

    Returns:
        (kept items, names of the left-out items), both in list order.
    """
    held = held_out.test_names("vggss")  # VGG-SS and the heard / unheard test lists
    kept = [item for item in items if item.name not in held]
    left_out = [item.name for item in items if item.name in held]
    return kept, left_out


def select_items(items, keys=None, classes=None, limit=None):
    """Keep the items that match the id list and the classes, then the first `limit` of them.

    The limit applies before finished or failed items are skipped, so rerunning with the same --limit finishes
    the same items instead of starting new ones.

    Args:
        items: list of Item.
        keys: optional (video_id, start_seconds or None) keys from read_id_file.
        classes: optional class names (case-insensitive, exact).
        limit: optional maximum number of items.

    Returns:
        The selected items, in list order.

    Raises:
        ValueError: a class that no item has (with the closest known names).
    """
    selected = list(items)
    if keys is not None:
        exact = {key for key in keys if key[1] is not None}
        whole_videos = {key[0] for key in keys if key[1] is None}
        selected = [item for item in selected
                    if (item.video_id, item.start_seconds) in exact or item.video_id in whole_videos]
    if classes:
        known = sorted({item.class_name.lower() for item in items})
        wanted = {name.strip().lower() for name in classes}
        for name in sorted(wanted - set(known)):
            close = difflib.get_close_matches(name, known, n=3)
            hint = f" (did you mean: {'; '.join(close)})" if close else ""
            raise ValueError(f"unknown class {name!r}{hint}")
        selected = [item for item in selected if item.class_name.lower() in wanted]
    if limit is not None:
        selected = selected[:limit]
    return selected
