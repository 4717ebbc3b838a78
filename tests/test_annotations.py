"""annotations.py on the real VGG-SS / Flickr metadata and on generated Flickr XML files, against hand-computed maps."""

import json

import numpy as np
import pytest

from evaluation.annotations import (
    Annotation,
    degenerate_items,
    flickr_ground_truth_map,
    ground_truth_map,
    load_annotations,
    load_flickr_annotations,
    load_vggss_annotations,
    read_flickr_boxes,
    read_test_list,
    vggss_ground_truth_map,
)
from evaluation.metrics import score_map

SIZE = 224


# --- VGG-SS -----------------------------------------------------------------------------------------------


def test_real_vggss_json_parses_completely(metadata_dir):
    annotations = load_vggss_annotations(metadata_dir / "vggss.json")
    assert len(annotations) == 5158
    assert list(annotations) == read_test_list(metadata_dir / "vggss_test.csv")
    first = annotations["zpWuikVorYg_000032"]
    assert first.class_name == "elk bugling" and first.dataset == "vggss"
    assert first.boxes == [(0.403125, 0.253125, 0.6, 0.75)]
    # by hand: int(224 * 0.403125) = int(90.3) = 90, int(56.7) = 56, int(134.4) = 134, int(168.0) = 168
    expected = np.zeros((SIZE, SIZE))
    expected[56:168, 90:134] = 1
    np.testing.assert_array_equal(ground_truth_map(first), expected)


def test_real_vggss_degenerate_items(metadata_dir):
    annotations = load_vggss_annotations(metadata_dir / "vggss.json")
    # M1P1xla8rg0_000000: its box has ymin = ymax = 1.0; MKC9LvRivTM_000030: its only box has xmax = -2.9e16
    degenerate = degenerate_items(annotations)
    assert degenerate == ["M1P1xla8rg0_000000", "MKC9LvRivTM_000030"]
    # the official protocol scores them 0 / (0 + predicted pixels) = 0 for any non-flat map
    raw = np.random.default_rng(1).normal(size=(14, 14))
    for name in degenerate:
        assert score_map(raw, ground_truth_map(annotations[name])) == 0.0


def test_real_vggss_huge_negative_coordinate_is_clipped(metadata_dir):
    annotations = load_vggss_annotations(metadata_dir / "vggss.json")
    # box 1 = [0.384375, 0.859375, 0.696875, -2.88e16] -> rows 192:0, empty;
    # box 2 = [0.05, 0.35625, 0.753125, 0.98125] -> int(11.2) = 11, int(79.8) = 79, int(168.7) = 168,
    # int(219.8) = 219: rows 79:219 x columns 11:168 = 140 * 157 = 21980 px
    ground_truth = ground_truth_map(annotations["Db6Hjt0x28k_000056"])
    assert ground_truth.sum() == 140 * 157
    assert ground_truth[79, 11] == 1 and ground_truth[78, 11] == 0 and ground_truth[218, 167] == 1
    assert ground_truth[219, 167] == 0 and ground_truth[218, 168] == 0


def test_vggss_map_clips_and_unites():
    # [-0.5, -0.2, 1.5, 0.5]: max(v, 0) -> 0, 0; int(336) -> stops at 224; int(112) -> rows 0:112, all columns
    assert vggss_ground_truth_map([[-0.5, -0.2, 1.5, 0.5]]).sum() == 112 * 224
    # two overlapping boxes: the union is 1, never 2; [0, 0, 0.5, 0.5] -> 112 x 112, [0.25, 0.25, 0.75, 0.75]
    # -> rows/columns 56:168; union = 12544 + 12544 - 56 * 56 = 21952
    union = vggss_ground_truth_map([[0, 0, 0.5, 0.5], [0.25, 0.25, 0.75, 0.75]])
    assert set(np.unique(union)) == {0.0, 1.0} and union.sum() == 21952
    assert not vggss_ground_truth_map([]).any()


def test_vggss_rejects_malformed_items(tmp_path):
    bad_box = tmp_path / "bad.json"
    bad_box.write_text(json.dumps([{"file": "a", "class": "c", "bbox": [[0.1, 0.2, 0.3]]}]))
    with pytest.raises(ValueError, match="xmin"):
        load_vggss_annotations(bad_box)
    repeated = tmp_path / "repeated.json"
    repeated.write_text(json.dumps([{"file": "a", "bbox": []}, {"file": "a", "bbox": []}]))
    with pytest.raises(ValueError, match="twice"):
        load_vggss_annotations(repeated)
    with pytest.raises(ValueError):
        load_vggss_annotations(tmp_path / "missing.json")


# --- Flickr SoundNet --------------------------------------------------------------------------------------


def official_style_xml(boxes):
    """The layout the official parser reads: root > child > <bbox> whose first child is skipped."""
    objects = "".join(
        "<object><bbox><annotator>{}</annotator><xmin>{}</xmin><ymin>{}</ymin><xmax>{}</xmax><ymax>{}</ymax>"
        "</bbox></object>".format(index, *box)
        for index, box in enumerate(boxes)
    )
    return f"<annotation><filename>x.jpg</filename>{objects}</annotation>"


def test_flickr_one_annotator_truncation(tmp_path):
    (tmp_path / "100.xml").write_text(official_style_xml([(10, 20, 100, 255)]))
    annotations = load_flickr_annotations(tmp_path)
    assert annotations == {"100": Annotation([(10, 20, 100, 255)], None, "flickr")}
    # int(224 * 10 / 256) = int(8.75) = 8, int(17.5) = 17, int(87.5) = 87, int(223.125) = 223;
    # one annotator counts 1 / 2 = 0.5 on rows 17:223 x columns 8:87
    expected = np.zeros((SIZE, SIZE))
    expected[17:223, 8:87] = 0.5
    np.testing.assert_array_equal(ground_truth_map(annotations["100"]), expected)


def test_flickr_three_annotators_consensus(tmp_path):
    # A = (0, 0, 128, 128) -> 0:112; B = (64, 64, 192, 192) -> 56:168; C = the whole 256 frame -> 0:224.
    # Every pixel of A or B is also in C: count >= 2 -> 1; C alone -> 1 / 2 = 0.5; A and B and C -> 3/2 -> 1.
    (tmp_path / "200.xml").write_text(official_style_xml([(0, 0, 128, 128), (64, 64, 192, 192), (0, 0, 256, 256)]))
    ground_truth = ground_truth_map(load_annotations(tmp_path)["200"])
    expected = np.full((SIZE, SIZE), 0.5)
    expected[0:112, 0:112] = 1
    expected[56:168, 56:168] = 1
    np.testing.assert_array_equal(ground_truth, expected)
    # union of A and B = 12544 + 12544 - 3136 = 21952 px at 1, the other 28224 px at 0.5
    assert ground_truth.sum() == 21952 + 28224 * 0.5


def test_flickr_two_disjoint_annotators_stay_half():
    ground_truth = flickr_ground_truth_map([(0, 0, 64, 64), (128, 128, 192, 192)])
    # 64 px -> 56 px: two 56 x 56 squares at 0.5 each, no overlap
    assert set(np.unique(ground_truth)) == {0.0, 0.5} and ground_truth.sum() == 2 * 56 * 56 * 0.5


def test_flickr_named_bndbox_layout_reads_by_tag(tmp_path):
    # a PASCAL-style file with the coordinates in another order gives the same box as the official layout
    path = tmp_path / "300.xml"
    path.write_text(
        "<annotation><object><name>dog</name><bndbox><ymax>255</ymax><xmax>100</xmax><ymin>20</ymin>"
        "<xmin>10</xmin></bndbox></object></annotation>"
    )
    assert read_flickr_boxes(path) == [(10, 20, 100, 255)]


def test_flickr_malformed_files(tmp_path):
    (tmp_path / "bad.xml").write_text("<annotation><object><bbox><a>1</a><b>2</b></bbox></object></annotation>")
    with pytest.raises(ValueError, match="xmin"):
        load_flickr_annotations(tmp_path)
    (tmp_path / "bad.xml").write_text("<annotation><object>")
    with pytest.raises(ValueError, match="parse"):
        load_flickr_annotations(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no .xml"):
        load_flickr_annotations(empty)


def test_flickr_item_without_box_is_degenerate(tmp_path):
    (tmp_path / "400.xml").write_text("<annotation><filename>400.jpg</filename></annotation>")
    (tmp_path / "401.xml").write_text(official_style_xml([(0, 0, 128, 128)]))
    assert degenerate_items(load_flickr_annotations(tmp_path)) == ["400"]


# --- lists and dispatch -----------------------------------------------------------------------------------


def test_real_test_lists(metadata_dir):
    flickr_249 = read_test_list(metadata_dir / "flickr_test.csv")
    flickr_250 = read_test_list(metadata_dir / "flickr_test_250.csv")
    vggss = read_test_list(metadata_dir / "vggss_test.csv")
    # both Flickr files have 249 newline characters; the 250 one has no final newline
    assert len(flickr_249) == 249 and len(flickr_250) == 250 and len(vggss) == 5158
    assert flickr_249[0] == "10000130166" and flickr_250[-1] == "9761803312"
    assert vggss[0] == "zpWuikVorYg_000032"
    assert all(name.isdigit() for name in flickr_249 + flickr_250)
    assert len(set(flickr_250)) == 250 and set(flickr_249) < set(flickr_250)
    assert all("\r" not in name and "," not in name for name in flickr_250 + vggss)


def test_read_test_list_skips_blank_rows(tmp_path):
    path = tmp_path / "list.csv"
    path.write_bytes(b"a_000001\r\n\r\n b_000002 ,7\r\nc_000003")
    assert read_test_list(path) == ["a_000001", "b_000002", "c_000003"]
    (tmp_path / "blank.csv").write_text("\n\n")
    with pytest.raises(ValueError):
        read_test_list(tmp_path / "blank.csv")


def test_load_annotations_dispatch(metadata_dir, tmp_path):
    assert load_annotations(metadata_dir / "vggss.json")["zpWuikVorYg_000032"].dataset == "vggss"
    (tmp_path / "500.xml").write_text(official_style_xml([(0, 0, 10, 10)]))
    assert load_annotations(tmp_path)["500"].dataset == "flickr"
    with pytest.raises(ValueError):
        load_annotations(metadata_dir / "vggss_test.csv")
    with pytest.raises(ValueError):
        ground_truth_map(Annotation([], None, "coco"))
