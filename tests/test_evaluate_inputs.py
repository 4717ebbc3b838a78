"""evaluate.py on what users hand it, without a model (the centre baseline): non-square frames and --resize
(geometry of the crop against full-frame boxes), the Flickr SoundNet layouts, the heard/unheard lists, paths with
glob characters, and hostile annotation / list files that must end in a result or one error line."""

import json

import numpy as np
import pytest
import scipy.io.wavfile
from PIL import Image

import evaluate
from evaluation import figures as evaluation_figures
from evaluation import metrics
from pipeline import preprocessing
from evaluation import protocols
from evaluation.annotations import Annotation, ground_truth_map, load_annotations, read_test_list
from evaluation.extended_sets import read_extended_list
from test_evaluate import run_evaluate, write_vggss_json

CENTRE = [0.25, 0.25, 0.75, 0.75]
RED_BOX = (0.1, 0.2, 0.4, 0.7)  # normalised xmin, ymin, xmax, ymax of the red rectangle on the 16:9 frame


def write_wav(path, rate=8000, seconds=0.5, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    samples = (np.random.default_rng(seed).uniform(-0.5, 0.5, size=int(rate * seconds)) * 32767).astype(np.int16)
    scipy.io.wavfile.write(path, rate, samples)


def write_frame(path, width=48, height=48, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


def write_red_box_frame(path, width=320, height=180, box=RED_BOX):
    """A grey 16:9 frame with a pure red rectangle at the normalised box."""
    pixels = np.full((height, width, 3), 128, np.uint8)
    xmin, ymin, xmax, ymax = box
    pixels[int(ymin * height):int(ymax * height), int(xmin * width):int(xmax * width)] = (255, 0, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


def red_map(frame):
    """1 where the model's input frame (ImageNet-normalised) is red, else 0: the 'map equal to the rectangle'."""
    rgb = frame * preprocessing.IMAGENET_STD + preprocessing.IMAGENET_MEAN
    return ((rgb[..., 0] > 0.75) & (rgb[..., 1] < 0.3) & (rgb[..., 2] < 0.3)).astype(np.float32)


def test_full_frame_box_scores_one_on_the_squashed_frame_less_on_the_crop(tmp_path):
    path = tmp_path / "clip.png"
    write_red_box_frame(path)
    ground_truth = ground_truth_map(Annotation([list(RED_BOX)], None, "vggss"))
    squashed = red_map(preprocessing.load_frame(str(path), 224, resize="squash"))
    cropped = red_map(preprocessing.load_frame(str(path), 224, resize="crop"))
    squash_ciou = protocols.score(squashed, ground_truth, "lvs_median")
    crop_ciou = protocols.score(cropped, ground_truth, "lvs_median")
    assert squash_ciou > 0.97  # 1 up to the resize's edge pixels
    # the crop keeps x in [0.219, 0.781] of the frame: the rectangle lands at x 0 .. 0.32 of the crop; against the
    # full-frame box x 0.1 .. 0.4 that is about (0.32 - 0.1) / 0.4 = 0.55
    assert crop_ciou < 0.65 and crop_ciou == pytest.approx(0.55, abs=0.05)
    # the figures draw the box where the rectangle really is on the cropped frame
    (xmin, ymin, xmax, ymax), = evaluation_figures.boxes_on_shown_frame([RED_BOX], 320, 180, "crop", 224)
    rows, columns = np.nonzero(cropped)
    assert (columns.min() / 224, rows.min() / 224) == pytest.approx((xmin, ymin), abs=2 / 224)
    assert ((columns.max() + 1) / 224, (rows.max() + 1) / 224) == pytest.approx((xmax, ymax), abs=2 / 224)
    assert evaluation_figures.boxes_on_shown_frame([RED_BOX], 320, 180, "squash", 224) == [RED_BOX]
    assert evaluation_figures.boxes_on_shown_frame([(0.85, 0.1, 0.95, 0.3)], 320, 180, "crop", 224) == []


def test_non_square_frames_warn_once_under_crop_and_resize_is_recorded(tmp_path, capsys):
    data = tmp_path / "data"
    for index in range(3):
        write_red_box_frame(data / f"wide_{index}.png")
        write_wav(data / f"wide_{index}.wav", seed=index)
    annotations = write_vggss_json(tmp_path / "vggss.json", {f"wide_{index}": [list(RED_BOX)] for index in range(3)})
    crop = run_evaluate("--baseline", "centre", "--data_dir", data, "--annotations", annotations,
                        "--out_dir", tmp_path / "crop", "--figures", 1)
    assert crop.returncode == 0, crop.stderr[-2000:]
    warnings = [line for line in crop.stderr.splitlines() if "not square" in line]
    assert len(warnings) == 1
    assert "3 of 3 frames" in warnings[0] and "320x180" in warnings[0] and "whole frame" in warnings[0]
    assert "--resize squash" in warnings[0]
    report = json.loads((tmp_path / "crop" / "metrics.json").read_text())
    assert report["protocol"]["resize"] == "crop" and report["warnings"] == [warnings[0][len("warning: "):]]
    assert len(list((tmp_path / "crop" / "figures").glob("*.png"))) == 1
    evaluate.main(["--baseline", "centre", "--data_dir", str(data), "--annotations", str(annotations),
                   "--out_dir", str(tmp_path / "squash"), "--resize", "squash"])
    assert "not square" not in capsys.readouterr().err
    report = json.loads((tmp_path / "squash" / "metrics.json").read_text())
    assert report["protocol"]["resize"] == "squash" and report["warnings"] == []


def write_flickr_xml(path, boxes):
    objects = "".join(
        f"<object><bbox><name>sound</name><xmin>{xmin}</xmin><ymin>{ymin}</ymin><xmax>{xmax}</xmax><ymax>{ymax}</ymax>"
        "</bbox></object>" for xmin, ymin, xmax, ymax in boxes
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"<annotation><filename>{path.stem}.jpg</filename>{objects}</annotation>")


FLICKR_BOXES = {"10000130166": [(64, 64, 192, 192), (64, 64, 192, 192)], "10007936344": [(0, 0, 40, 40)],
                "10008553263": [(64, 64, 192, 192), (0, 0, 40, 40)]}


@pytest.mark.parametrize("layout", ["flat", "frames_audio", "data", "data_nested"])
def test_flickr_layouts_with_an_annotations_folder(tmp_path, layout):
    root = tmp_path / "flickr [test]*"  # glob characters in the path are read literally
    for index, name in enumerate(FLICKR_BOXES):
        write_flickr_xml(root / "Annotations" / f"{name}.xml", FLICKR_BOXES[name])
        image, audio = {
            "flat": (root / f"{name}.jpg", root / f"{name}.wav"),
            "frames_audio": (root / "frames" / f"{name}.jpg", root / "audio" / f"{name}.wav"),
            "data": (root / "Data" / f"{name}.jpg", root / "Data" / f"{name}.wav"),
            "data_nested": (root / "Data" / str(index) / f"{name}.jpg", root / "Data" / str(index) / f"{name}.wav"),
        }[layout]
        write_frame(image, seed=index)
        write_wav(audio, seed=index)
    test_list = root / "flickr_test.csv"
    test_list.write_text("10000130166,202\n10007936344,0\n10008553263,309\n")
    out = root / "out?"
    evaluate.main(["--baseline", "centre", "--data_dir", str(root), "--annotations", str(root / "Annotations"),
                   "--test_list", str(test_list), "--out_dir", str(out)])
    rows = {line.split(",")[0]: float(line.split(",")[1]) for line in (out / "per_item.csv").read_text().splitlines()[1:]}
    assert rows == pytest.approx({"10000130166": 1.0, "10007936344": 0.0, "10008553263": 12544 / (12544 + 1225)})
    assert json.loads((out / "metrics.json").read_text())["n_missing"] == 0


@pytest.mark.parametrize("list_name", ["vggss_heard_test.csv", "vggss_unheard_test.csv"])
def test_heard_and_unheard_lists_are_scored(tmp_path, metadata_dir, list_name):
    names = read_test_list(metadata_dir / list_name)
    annotations = load_annotations(metadata_dir / "vggss.json")
    assert len(names) in (2564, 2575) and set(names) <= set(annotations)  # every listed item has a VGG-SS box
    data = tmp_path / "data"
    for index, name in enumerate(names[:3]):
        write_frame(data / f"{name}.jpg", seed=index)
        write_wav(data / f"{name}.wav", seed=index)
    out = tmp_path / "out"
    evaluate.main(["--baseline", "centre", "--data_dir", str(data), "--annotations", str(metadata_dir / "vggss.json"),
                   "--test_list", str(metadata_dir / list_name), "--out_dir", str(out)])
    report = json.loads((out / "metrics.json").read_text())
    assert (report["n_scored"], report["n_missing"]) == (3, len(names) - 3)
    expected = [metrics.score_map(metrics.centre_baseline_map(), ground_truth_map(annotations[name])) for name in names[:3]]
    assert report["mean_ciou"] == pytest.approx(np.mean(expected))


def hostile_files(folder):
    """name -> (path, flag it is given as, expected message part)."""
    folder.mkdir()
    nested = folder / "nested.json"
    nested.write_text("[" * 100000 + "]" * 100000)
    latin = folder / "latin.json"
    latin.write_bytes('[{"file": "item", "class": "caf\xe9", "bbox": [[0.25, 0.25, 0.75, 0.75]]}]'.encode("latin-1"))
    latin_list = folder / "latin_list.csv"
    latin_list.write_bytes("item\ncaf\xe9\n".encode("latin-1"))
    latin_extended = folder / "latin_extended.csv"
    latin_extended.write_bytes("video,audio,label\nitem,caf\xe9,non-sounding\n".encode("latin-1"))
    return {"nested": (nested, "--annotations", "nested too deeply"), "latin": (latin, "--annotations", "not UTF-8"),
            "latin_list": (latin_list, "--test_list", "not UTF-8"),
            "latin_extended": (latin_extended, "--extended", "not UTF-8")}


def test_hostile_annotation_and_list_files_end_in_one_line_naming_the_file(tmp_path):
    data = tmp_path / "data"
    write_frame(data / "item.jpg")
    write_wav(data / "item.wav")
    good = write_vggss_json(tmp_path / "vggss.json", {"item": [CENTRE]})
    for name, (path, flag, message) in hostile_files(tmp_path / "hostile").items():
        arguments = {"--annotations": str(good), flag: str(path)}
        with pytest.raises(SystemExit) as stop:  # any other exception (a traceback) fails the test
            evaluate.main(["--baseline", "centre", "--data_dir", str(data), "--out_dir", str(tmp_path / name)]
                          + [part for pair in arguments.items() for part in pair])
        line = str(stop.value.code)
        assert line.startswith("error: ") and "\n" not in line, (name, line)
        assert message in line and str(path) in line, (name, line)


def test_huge_coordinates_are_clipped_not_overflowing(tmp_path):
    data = tmp_path / "data"
    for name in ("huge_float", "huge_int", "flickr_huge"):
        write_frame(data / f"{name}.jpg")
        write_wav(data / f"{name}.wav")
    huge_int = "9" * 400
    (tmp_path / "vggss.json").write_text(
        '[{"file": "huge_float", "class": "c", "bbox": [[0.25, 0.25, 1e308, 0.75]]},'
        f' {{"file": "huge_int", "class": "c", "bbox": [[-{huge_int}, 0.25, {huge_int}, 0.75]]}}]')
    out = tmp_path / "out"
    evaluate.main(["--baseline", "centre", "--data_dir", str(data), "--annotations", str(tmp_path / "vggss.json"),
                   "--out_dir", str(out), "--figures", "2"])
    rows = {line.split(",")[0]: float(line.split(",")[1]) for line in (out / "per_item.csv").read_text().splitlines()[1:]}
    # clipped to the frame: x 56..224 (centre box 56..168 inside) and x 0..224, rows 56..168
    assert rows == pytest.approx({"huge_float": 12544 / (168 * 112), "huge_int": 12544 / (224 * 112)})
    write_flickr_xml(tmp_path / "Annotations" / "flickr_huge.xml", [(64, 64, huge_int, 192), (64, 64, "1e308", 192)])
    annotation = load_annotations(str(tmp_path / "Annotations"))["flickr_huge"]
    assert ground_truth_map(annotation)[56:168, 56:].min() == 1.0  # both annotators' boxes run to the right edge
    assert evaluation_figures.normalised_boxes(annotation) == [(0.25, 0.25, 1.0, 0.75)] * 2


def test_extended_list_reader_and_inconsistent_rows(tmp_path, metadata_dir):
    rows = read_extended_list(metadata_dir / "vggss_test_plus_silent.csv")
    inconsistent = {video for video, audio in rows if video == audio}
    assert len(rows) == 5158 and len(inconsistent) == 379
    # they are exactly the rows whose clip is not a VGG-SS test item
    assert inconsistent == {video for video, _ in rows} - set(read_test_list(metadata_dir / "vggss_test.csv"))
    assert len(read_extended_list(metadata_dir / "flickr_test_plus_silent.csv")) == 250
    empty = tmp_path / "empty.csv"
    empty.write_text("video,audio,label\na,b,sounding\n")
    with pytest.raises(ValueError, match="no row"):
        read_extended_list(empty)


def test_extended_negatives_from_their_own_folder(tmp_path):
    data, elsewhere = tmp_path / "data", tmp_path / "negatives"
    for index, name in enumerate(["a", "b"]):
        write_frame(data / f"{name}.jpg", seed=index)
        write_wav(data / f"{name}.wav", seed=index)
    for index, name in enumerate(["x", "y"]):
        write_frame(elsewhere / "frames" / f"{name}.jpg", seed=index + 5)
        write_wav(elsewhere / "audio" / f"{name}.wav", seed=index + 5)
    annotations = write_vggss_json(tmp_path / "vggss.json", {"a": [CENTRE], "b": [[0.0, 0.0, 0.2, 0.2]]})
    extended = tmp_path / "plus.csv"
    extended.write_text("x,y,non-sounding\ny,x,non-sounding\na,b,non-sounding\n")
    out = tmp_path / "out"
    evaluate.main(["--baseline", "centre", "--data_dir", str(data), "--annotations", str(annotations),
                   "--extended", str(extended), "--extended_dir", str(elsewhere), "--out_dir", str(out)])
    report = json.loads((out / "metrics.json").read_text())
    assert (report["extended"]["n_negative_scored"], report["extended"]["n_negative_missing"]) == (2, 1)
    assert (out / "missing_negatives.txt").read_text() == "a+b\n"  # a and b are not in --extended_dir
    # the fixed map gives every item one confidence c: at t = c all four are detected, a right (cIoU 1), b wrong
    # (cIoU 0) and both negatives false positives: p = 1/4, r = 1, F1 = 2/5; AP sums no recall step: 0
    rows = [line.split(",") for line in (out / "per_item.csv").read_text().splitlines()[1:]]
    assert [row[0] for row in rows] == ["a", "b", "x+y", "y+x"] and len({row[9] for row in rows}) == 1
    assert report["loc_acc"] == 0.5 and report["n_negative"] == 2
    assert report["max_f1"] == pytest.approx(0.4) and report["ap"] == 0.0
    with pytest.raises(SystemExit) as stop:
        evaluate.main(["--baseline", "centre", "--data_dir", str(data), "--annotations", str(annotations),
                       "--extended", str(extended), "--extended_dir", str(tmp_path / "nowhere")])
    assert str(stop.value.code) == f"error: --extended_dir folder not found: {tmp_path / 'nowhere'}"
