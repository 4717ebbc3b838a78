"""Ground truth of the two LVS test sets: VGG-SS (one JSON file) and Flickr SoundNet (one XML file per item).

Boxes are kept as read, [xmin, ymin, xmax, ymax]; they become 224 x 224 ground-truth maps the way the
official utils.testset_gt builds them:
- VGG-SS: boxes normalised to the frame; every coordinate becomes int(224 * max(v, 0)), the box fills
  gt[ymin:ymax, xmin:xmax] (numpy slicing also stops at 224), and the union of the boxes is 1.
  vggss.json has boxes with a huge negative coordinate (-2.88e16): they clip to nothing. Two items have no
  usable box at all (M1P1xla8rg0_000000: ymin = ymax = 1.0; MKC9LvRivTM_000030: its only box has xmax < 0).
  Their map is all zeros, and the official code then scores them 0 / (number of predicted pixels) = 0: they
  stay in the test set as failures. degenerate_items() names them so a report can flag them.
- Flickr SoundNet: one box per annotator in 256 x 256 pixel coordinates; every coordinate becomes
  int(224 * v / 256); the annotators' box maps are summed, divided by 2 and clipped at 1, which gives a
  consensus map of 0, 0.5 and 1 (one annotator alone counts 0.5).
  The official parser reads, for every child of the XML root, the children tagged "bbox", skips their first
  child and takes the next four as xmin, ymin, xmax, ymax. This loader reads "bbox" or "bndbox" elements at
  that depth, takes xmin/ymin/xmax/ymax by name when all four are present, and otherwise by position like
  the official code. Coordinates are also clipped to [0, 224] (the official code never needs to).

Usage:
    from evaluation.annotations import load_annotations, ground_truth_map, read_test_list
    annotations = load_annotations("data/metadata/vggss.json")     # or a folder of Flickr XML files
    names = read_test_list("data/metadata/vggss_test.csv")
    ground_truth = ground_truth_map(annotations[names[0]])             # 224 x 224 float64
"""

import csv
import io
import json
import math
import os
import xml.etree.ElementTree as ElementTree
from typing import NamedTuple

import numpy as np

MAP_SIZE = 224
FLICKR_ANNOTATION_SIZE = 256
VGGSS = "vggss"
FLICKR = "flickr"
COORDINATE_TAGS = ("xmin", "ymin", "xmax", "ymax")
# Coordinates beyond this are clipped to it on reading: far outside any frame (VGG-SS fractions, Flickr 256-px),
# and small enough that 224 * value / 256 stays a float (1e308 or a 400-digit integer would overflow).
COORDINATE_LIMIT = 1e9


class Annotation(NamedTuple):
    """The ground truth of one test item.

    boxes: list of (xmin, ymin, xmax, ymax) tuples, as stored (VGG-SS: fractions of the frame, possibly
        out of range; Flickr: pixels of the 256 x 256 frame).
    class_name: the VGG-SS class, or None for Flickr.
    dataset: "vggss" or "flickr", which says how boxes become a map.
    """

    boxes: list
    class_name: object
    dataset: str


def _check_size(size):
    if int(size) != size or size < 1:
        raise ValueError(f"size must be a positive integer, got {size}")
    return int(size)


def _clip_coordinate(value):
    """A coordinate clipped to +-COORDINATE_LIMIT, as a float (a 400-digit integer or 1e308 never overflows later)."""
    return float(min(max(value, -COORDINATE_LIMIT), COORDINATE_LIMIT))


def _check_box(box, where):
    """A box as a tuple of four finite floats (clipped to +-COORDINATE_LIMIT), or ValueError naming `where`."""
    if not isinstance(box, (list, tuple)) or len(box) != 4:
        raise ValueError(f"{where}: a box must be [xmin, ymin, xmax, ymax], got {str(box)[:80]}")
    for value in box:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (
                isinstance(value, float) and not math.isfinite(value)):
            raise ValueError(f"{where}: box coordinates must be finite numbers, got {str(box)[:80]}")
    return tuple(_clip_coordinate(value) for value in box)


def vggss_ground_truth_map(boxes, size=MAP_SIZE):
    """The VGG-SS ground-truth map: the union of the boxes on a size x size frame.

    Args:
        boxes: iterable of [xmin, ymin, xmax, ymax] fractions of the frame (any real values).
        size: side of the map, 224 in the protocol.

    Returns:
        size x size float64 map of 0 and 1 (all zeros when no box has a positive area after clipping).
    """
    size = _check_size(size)
    ground_truth = np.zeros((size, size))
    for index, box in enumerate(boxes):
        box = _check_box(box, f"box {index}")
        # official: int(224 * max(x, 0)); slicing stops at size, min() only makes it explicit
        xmin, ymin, xmax, ymax = (min(int(size * max(value, 0)), size) for value in box)
        ground_truth[ymin:ymax, xmin:xmax] = 1
    return ground_truth


def flickr_ground_truth_map(boxes, size=MAP_SIZE, annotation_size=FLICKR_ANNOTATION_SIZE):
    """The Flickr SoundNet consensus map: annotators' box maps summed, divided by 2, clipped at 1.

    Args:
        boxes: iterable of (xmin, ymin, xmax, ymax) in pixels of the annotation_size frame, one per annotator.
        size: side of the map, 224 in the protocol.
        annotation_size: side of the frame the boxes were drawn on, 256 for Flickr SoundNet.

    Returns:
        size x size float64 map with values 0, 0.5 and 1.
    """
    size = _check_size(size)
    ground_truth = np.zeros((size, size))
    for index, box in enumerate(boxes):
        box = _check_box(box, f"box {index}")
        # official: int(224 * int(text) / 256); clipping to [0, size] only matters for out-of-frame boxes
        xmin, ymin, xmax, ymax = (min(max(int(size * value / annotation_size), 0), size) for value in box)
        annotator_map = np.zeros((size, size))
        annotator_map[ymin:ymax, xmin:xmax] = 1
        ground_truth += annotator_map
    ground_truth /= 2
    ground_truth[ground_truth > 1] = 1
    return ground_truth


def ground_truth_map(annotation, size=MAP_SIZE):
    """The ground-truth map of one Annotation, by its dataset's rule.

    Args:
        annotation: an Annotation from load_vggss_annotations or load_flickr_annotations.
        size: side of the map, 224 in the protocol.

    Returns:
        size x size float64 map (values 0/1 for VGG-SS, 0/0.5/1 for Flickr).
    """
    if annotation.dataset == VGGSS:
        return vggss_ground_truth_map(annotation.boxes, size)
    if annotation.dataset == FLICKR:
        return flickr_ground_truth_map(annotation.boxes, size)
    raise ValueError(f"unknown dataset {annotation.dataset!r} (expected {VGGSS!r} or {FLICKR!r})")


def degenerate_items(annotations, size=MAP_SIZE):
    """Names of the items whose ground-truth map is empty (no box, or only boxes of zero area after clipping).

    The official protocol keeps them: their cIoU is 0 whatever the (non-empty) prediction.

    Args:
        annotations: dict name -> Annotation.
        size: side of the map, 224 in the protocol.

    Returns:
        Sorted list of names.
    """
    return sorted(name for name, annotation in annotations.items() if not ground_truth_map(annotation, size).any())


def read_text(path):
    """The content of a UTF-8 text file, or ValueError naming it (unreadable, or not UTF-8 such as latin-1).

    Args:
        path: the file.

    Returns:
        The text (line ends kept as they are).
    """
    try:
        with open(path, encoding="utf-8", newline="") as file:
            return file.read()
    except UnicodeDecodeError as error:
        raise ValueError(f"{path} is not UTF-8 text (byte {error.start}): save it as UTF-8") from error
    except OSError as error:
        raise ValueError(f"cannot read {path}: {error.strerror}") from error


def read_json(path):
    """A JSON file's value, or ValueError naming it (unreadable, not UTF-8, invalid, nested too deeply)."""
    text = read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from error
    except RecursionError:
        raise ValueError(f"{path} is nested too deeply to be a metadata file") from None
    except ValueError as error:  # e.g. an integer of more than 4300 digits
        raise ValueError(f"{path} is not valid JSON: {str(error)[:200]}") from None


def read_csv_rows(path):
    """The non-empty rows of a UTF-8 csv file, or ValueError naming it."""
    try:
        return [row for row in csv.reader(io.StringIO(read_text(path))) if row]
    except csv.Error as error:
        raise ValueError(f"{path} is not a readable csv: {error}") from error


def load_vggss_annotations(json_path):
    """Read vggss.json: a list of {"file": name, "class": class, "bbox": [[xmin, ymin, xmax, ymax], ...]}.

    Args:
        json_path: path to vggss.json.

    Returns:
        dict name -> Annotation(boxes as stored, class_name, "vggss"), in file order.

    Raises:
        ValueError: if the file is missing, not JSON, or an entry is malformed or repeated.
    """
    entries = read_json(json_path)
    if not isinstance(entries, list):
        raise ValueError(f"{json_path}: expected a list of items, got {type(entries).__name__}")
    annotations = {}
    for index, entry in enumerate(entries):
        where = f"{json_path} item {index}"
        if not isinstance(entry, dict) or not isinstance(entry.get("file"), str) or "bbox" not in entry:
            raise ValueError(f"{where}: expected an object with 'file' and 'bbox'")
        name = entry["file"]
        if name in annotations:
            raise ValueError(f"{where}: {name} appears twice")
        if not isinstance(entry["bbox"], list):
            raise ValueError(f"{where}: 'bbox' must be a list of boxes")
        boxes = [_check_box(box, f"{where} ({name})") for box in entry["bbox"]]
        annotations[name] = Annotation(boxes, entry.get("class"), VGGSS)
    return annotations


def _parse_coordinate(element, where):
    """An XML coordinate as an int (the official int(text)), or a float if it is written as one."""
    text = (element.text or "").strip()
    try:
        return _clip_coordinate(int(text))
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{where}: coordinate <{element.tag}> is not a number: {text[:80]!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"{where}: coordinate <{element.tag}> is not finite: {text[:80]!r}")
    return _clip_coordinate(value)


def read_flickr_boxes(xml_path):
    """The annotators' boxes of one Flickr SoundNet XML file.

    Args:
        xml_path: path to NAME.xml.

    Returns:
        list of (xmin, ymin, xmax, ymax) in pixels of the 256 x 256 frame, one per box element.

    Raises:
        ValueError: if the file cannot be parsed or a box has no four coordinates.
    """
    try:
        root = ElementTree.parse(xml_path).getroot()
    except (OSError, ElementTree.ParseError) as error:
        raise ValueError(f"cannot parse {xml_path}: {error}") from error
    boxes = []
    for child in root:
        for element in child:
            if element.tag not in ("bbox", "bndbox"):
                continue
            where = f"{xml_path} box {len(boxes)}"
            named = {coordinate.tag: coordinate for coordinate in element if coordinate.tag in COORDINATE_TAGS}
            if len(named) == 4:
                coordinates = [named[tag] for tag in COORDINATE_TAGS]
            else:
                coordinates = list(element)[1:5]  # official: skip the first child, then xmin, ymin, xmax, ymax
                if len(coordinates) != 4:
                    raise ValueError(f"{where}: expected <xmin>, <ymin>, <xmax>, <ymax>")
            boxes.append(tuple(_parse_coordinate(coordinate, where) for coordinate in coordinates))
    return boxes


def load_flickr_annotations(xml_dir):
    """Read every NAME.xml of a Flickr SoundNet annotation folder.

    Args:
        xml_dir: folder of XML files, one per test item, named like the frame (10000130166.xml).

    Returns:
        dict name -> Annotation(boxes in 256-px coordinates, None, "flickr"), sorted by name.

    Raises:
        ValueError: if the folder is missing, holds no XML file, or a file is malformed.
    """
    if not os.path.isdir(xml_dir):
        raise ValueError(f"{xml_dir} is not a folder")
    file_names = sorted(name for name in os.listdir(xml_dir) if name.lower().endswith(".xml"))
    if not file_names:
        raise ValueError(f"no .xml annotation files in {xml_dir}")
    return {
        os.path.splitext(file_name)[0]: Annotation(read_flickr_boxes(os.path.join(xml_dir, file_name)), None, FLICKR)
        for file_name in file_names
    }


def load_annotations(path):
    """Load VGG-SS annotations from a .json file or Flickr SoundNet annotations from a folder of XML files.

    Args:
        path: vggss.json, or the Flickr Annotations folder.

    Returns:
        dict name -> Annotation.

    Raises:
        ValueError: if the path is neither a .json file nor a folder, or its content is malformed.
    """
    if os.path.isdir(path):
        return load_flickr_annotations(path)
    if os.path.isfile(path) and str(path).lower().endswith(".json"):
        return load_vggss_annotations(path)
    raise ValueError(f"{path} is neither a VGG-SS .json file nor a folder of Flickr .xml files")


def read_test_list(csv_path):
    """Test item names: the first column of every non-empty row (like the official csv.reader loop).

    Handles vggss_test.csv (one name a line) and the Flickr lists ("10000130166,202"), with or without CRLF
    line ends and a final newline.

    Args:
        csv_path: path to the list.

    Returns:
        list of names in file order.

    Raises:
        ValueError: if the file is missing or holds no name.
    """
    names = [row[0].strip().lstrip("\ufeff") for row in read_csv_rows(csv_path) if row[0].strip()]
    if not names:
        raise ValueError(f"{csv_path} lists no test item")
    return names
