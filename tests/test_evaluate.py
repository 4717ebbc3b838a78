"""evaluate.py end to end: metrics.json vs the per-item CSV, known answers of the centred baseline (VGG-SS and
Flickr), the real vggss.json's degenerate items, an official .pth.tar against PyTorch, and one-line user errors."""

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.io.wavfile
import torch
from PIL import Image

import evaluate
from evaluation import metrics
from pipeline import preprocessing
from evaluation.annotations import Annotation, ground_truth_map
from model import build_model
from benchmarks.torch_reference import TorchLVS, random_official_state_dict

PROJECT = Path(__file__).resolve().parents[1]
SUMMARY = re.compile(r"^cIoU@0\.5 (\d\.\d{3})  AUC (\d\.\d{3})  mean cIoU (\d\.\d{3})  \(scored (\d+), missing (\d+)")
CENTRE = [0.25, 0.25, 0.75, 0.75]  # int(224 * 0.25) = 56, int(224 * 0.75) = 168: exactly the centred 112-px box


def write_pair(folder, name, size=64, rate=8000, seconds=0.5, seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)).save(folder / f"{name}.jpg")
    samples = (rng.uniform(-0.5, 0.5, size=int(rate * seconds)) * 32767).astype(np.int16)
    scipy.io.wavfile.write(folder / f"{name}.wav", rate, samples)


def write_vggss_json(path, boxes_by_name):
    entries = [{"file": name, "class": "test class", "bbox": boxes} for name, boxes in boxes_by_name.items()]
    path.write_text(json.dumps(entries))
    return path


def run_evaluate(*arguments):
    return subprocess.run([sys.executable, "evaluate.py", *map(str, arguments)], cwd=PROJECT, capture_output=True,
                          text=True, timeout=600)


def read_rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def hand_summary(cious):
    """Success rate at 0.5, trapezoid AUC over 0, 0.05, ..., 1 and the mean, written out without metrics.py."""
    cious = np.asarray(cious, dtype=np.float64)
    rates = [np.mean(cious >= 0.05 * index) for index in range(21)]
    auc = sum((rates[index] + rates[index + 1]) / 2 * 0.05 for index in range(20))
    return np.mean(cious >= 0.5), auc, np.mean(cious)


def check_summary_line(stdout, report):
    match = SUMMARY.match(stdout.strip().splitlines()[-1])
    assert match, stdout
    assert match.groups() == (f"{report['ciou']:.3f}", f"{report['auc']:.3f}", f"{report['mean_ciou']:.3f}",
                              str(report["n_scored"]), str(report["n_missing"]))


def test_model_run_writes_consistent_metrics_csv_missing_and_figures(tmp_path):
    data = tmp_path / "data"
    boxes = {
        "big": [[0.05, 0.05, 0.95, 0.95]],
        "centre": [CENTRE],
        "corner": [[0.5, 0.5, 1.0, 1.0]],
        "flat": [[0.2, 1.0, 0.6, 1.0]],  # ymin = ymax = 1.0, like M1P1xla8rg0_000000: no usable box
        "left": [[0.0, 0.0, 0.6, 0.6], [0.0, 0.6, 0.3, 1.0]],
        "not_listed": [CENTRE],
        "absent": [CENTRE],  # annotated and listed, but no pair on disk
    }
    for seed, name in enumerate(["big", "centre", "corner", "flat", "left", "not_listed", "unannotated"]):
        write_pair(data, name, seed=seed)
    annotations = write_vggss_json(tmp_path / "vggss.json", boxes)
    test_list = tmp_path / "test.csv"
    test_list.write_text("big\ncentre\nabsent\ncorner\nflat\nleft\nunannotated\n")
    build_model(image_weights="none", image_size=64, sample_rate=8000, audio_seconds=0.5).save(tmp_path / "model.keras")
    out = tmp_path / "out"

    result = run_evaluate("--checkpoint", tmp_path / "model.keras", "--data_dir", data, "--annotations", annotations,
                          "--test_list", test_list, "--out_dir", out, "--figures", 2, "--batch_size", 2)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((out / "metrics.json").read_text())
    rows = read_rows(out / "per_item.csv")
    assert [row["id"] for row in rows] == ["big", "centre", "corner", "flat", "left"]  # test order, scored only
    cious = [float(row["ciou"]) for row in rows]
    assert all(0 <= value <= 1 for value in cious)
    success, auc, mean = hand_summary(cious)
    assert report["ciou"] == pytest.approx(success) and report["auc"] == pytest.approx(auc)
    assert report["mean_ciou"] == pytest.approx(mean)
    assert (report["n_scored"], report["n_missing"]) == (5, 2)
    check_summary_line(result.stdout, report)
    assert (out / "missing_ids.txt").read_text().split() == ["absent", "unannotated"]
    assert report["missing_reasons"] == {evaluate.NO_PAIR: 1, evaluate.NO_ANNOTATION: 1}
    # the item without a usable box: flagged everywhere, scored 0 as the official code scores it
    flags = {row["id"]: row["degenerate"] for row in rows}
    assert flags == {"big": "0", "centre": "0", "corner": "0", "flat": "1", "left": "0"}
    assert cious[3] == 0.0
    assert report["n_degenerate"] == 1 and report["degenerate_ids"] == ["flat"]
    assert "flat" in result.stdout
    # two figures: the best and the worst item, ranked in the file name
    figures = sorted(path.name for path in (out / "figures").glob("*.png"))
    ranking = sorted(rows, key=lambda row: -float(row["ciou"]))
    assert len(figures) == 2 and figures[0].startswith("1_") and figures[1].startswith("5_")
    assert float({row["id"]: row["ciou"] for row in rows}[figures[0][2:-4]]) == max(cious)
    assert figures[1][2:-4] in [row["id"] for row in ranking if float(row["ciou"]) == min(cious)]
    assert (out / "ciou_histogram.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_centre_baseline_known_answer(tmp_path):
    data = tmp_path / "data"
    boxes = {"centre_1": [CENTRE], "centre_2": [CENTRE], "top_left": [[0.0, 0.0, 0.2, 0.2]],
             "bottom_right": [[0.8, 0.8, 1.0, 1.0]], "frame_only": [CENTRE], "elsewhere": [CENTRE]}
    for seed, name in enumerate(["centre_1", "centre_2", "top_left", "bottom_right"]):
        write_pair(data, name, size=32, seed=seed)
    Image.new("RGB", (32, 32)).save(data / "frame_only.jpg")  # present without its wav: missing, not scored
    annotations = write_vggss_json(tmp_path / "vggss.json", boxes)
    out = tmp_path / "out"
    result = run_evaluate("--baseline", "centre", "--data_dir", data, "--annotations", annotations, "--out_dir", out)
    assert result.returncode == 0, result.stderr[-3000:]
    cious = {row["id"]: float(row["ciou"]) for row in read_rows(out / "per_item.csv")}
    # the centred box predicts exactly rows/columns 56:168: identical boxes give 1, far corners share no pixel
    assert cious == {"centre_1": 1.0, "centre_2": 1.0, "top_left": 0.0, "bottom_right": 0.0}
    report = json.loads((out / "metrics.json").read_text())
    # success rate 2/4; the curve is 1 at t = 0 and 1/2 at every t > 0: AUC = 0.05 * (1 + 1/2) / 2 + 0.95 / 2
    assert report["ciou"] == 0.5 and report["mean_ciou"] == 0.5
    assert report["auc"] == pytest.approx(0.0375 + 0.475)
    assert (report["n_scored"], report["n_missing"]) == (4, 1)  # "elsewhere" has no file at all: not missing
    assert (out / "missing_ids.txt").read_text() == "frame_only\n"
    assert report["baseline"] == "centre" and report["checkpoint"] is None
    check_summary_line(result.stdout, report)


def write_flickr_xml(path, boxes):
    objects = "".join(
        f"<object><bbox><name>sound</name><xmin>{xmin}</xmin><ymin>{ymin}</ymin><xmax>{xmax}</xmax><ymax>{ymax}</ymax>"
        "</bbox></object>" for xmin, ymin, xmax, ymax in boxes
    )
    path.write_text(f"<annotation><filename>{path.stem}.jpg</filename>{objects}</annotation>")


def test_flickr_folder_and_list_with_the_centre_baseline(tmp_path, capsys):
    data, xml_dir = tmp_path / "frames", tmp_path / "Annotations"
    xml_dir.mkdir()
    # 256-px boxes: 64 -> int(224 * 64 / 256) = 56, 192 -> 168 (the centred box); 40 -> 35
    write_flickr_xml(xml_dir / "10000130166.xml", [(64, 64, 192, 192), (64, 64, 192, 192)])
    write_flickr_xml(xml_dir / "10007936344.xml", [(0, 0, 40, 40)])
    write_flickr_xml(xml_dir / "10008553263.xml", [(64, 64, 192, 192), (0, 0, 40, 40)])
    write_flickr_xml(xml_dir / "10013411946.xml", [(64, 64, 192, 192)])
    for seed, name in enumerate(["10000130166", "10007936344", "10008553263", "10013411946"]):
        write_pair(data, name, size=48, seed=seed)
    test_list = tmp_path / "flickr_test.csv"
    test_list.write_text("10000130166,202\r\n10007936344,0\r\n10008553263,309\r\n10009662863,0\r\n")
    out = tmp_path / "out"
    evaluate.main(["--baseline", "centre", "--data_dir", str(data), "--annotations", str(xml_dir),
                   "--test_list", str(test_list), "--out_dir", str(out), "--figures", "3"])
    cious = {row["id"]: float(row["ciou"]) for row in read_rows(out / "per_item.csv")}
    # consensus maps: two annotators on the centred box -> 1 there; one alone -> 0.5. Third item: centre 0.5
    # (12544 px) and corner 0.5 (35 * 35 px): cIoU = 0.5 * 12544 / (0.5 * 12544 + 0.5 * 1225)
    assert cious == pytest.approx({"10000130166": 1.0, "10007936344": 0.0, "10008553263": 12544 / (12544 + 1225)})
    report = json.loads((out / "metrics.json").read_text())
    assert (report["n_scored"], report["n_missing"]) == (3, 1)
    assert (out / "missing_ids.txt").read_text() == "10009662863\n"
    assert len(list((out / "figures").glob("*.png"))) == 3
    check_summary_line(capsys.readouterr().out, report)
    # boxes are drawn in 0..1: 256-px coordinates divided by 256, clipped to the frame
    annotation = Annotation([(64, 64, 192, 192), (-10, 0, 300, 128)], None, "flickr")
    assert evaluate.normalised_boxes(annotation) == [(0.25, 0.25, 0.75, 0.75), (0.0, 0.0, 1.0, 0.5)]


def test_real_vggss_json_degenerate_items_are_scored_and_flagged(tmp_path, capsys, metadata_dir):
    data = tmp_path / "data"
    for seed, name in enumerate(["zpWuikVorYg_000032", "M1P1xla8rg0_000000", "MKC9LvRivTM_000030"]):
        write_pair(data, name, size=32, seed=seed)
    out = tmp_path / "out"
    evaluate.main(["--baseline", "centre", "--data_dir", str(data), "--annotations", str(metadata_dir / "vggss.json"),
                   "--test_list", str(metadata_dir / "vggss_test.csv"), "--out_dir", str(out)])
    rows = {row["id"]: row for row in read_rows(out / "per_item.csv")}
    # zpWuikVorYg_000032: box rows 56:168 x columns 90:134 (4928 px) inside the centred 112 x 112 box:
    # cIoU = 4928 / (4928 + 12544 - 4928)
    assert float(rows["zpWuikVorYg_000032"]["ciou"]) == pytest.approx(4928 / 12544)
    assert rows["zpWuikVorYg_000032"]["degenerate"] == "0" and rows["zpWuikVorYg_000032"]["class"] == "elk bugling"
    for name in ("M1P1xla8rg0_000000", "MKC9LvRivTM_000030"):
        assert rows[name]["degenerate"] == "1" and float(rows[name]["ciou"]) == 0.0
    report = json.loads((out / "metrics.json").read_text())
    assert report["degenerate_ids"] == ["M1P1xla8rg0_000000", "MKC9LvRivTM_000030"]
    assert (report["n_scored"], report["n_missing"]) == (3, 5158 - 3)
    assert len((out / "missing_ids.txt").read_text().split()) == 5158 - 3
    printed = capsys.readouterr().out
    assert "M1P1xla8rg0_000000, MKC9LvRivTM_000030" in printed
    check_summary_line(printed, report)


def test_official_checkpoint_scores_like_pytorch(tmp_path, metadata_dir):
    state_dict = random_official_state_dict(metadata_dir / "lvs_state_dict_keys.tsv", seed=5)
    checkpoint = tmp_path / "lvs.pth.tar"
    torch.save({"model_state_dict": state_dict}, checkpoint)
    data = tmp_path / "data"
    boxes = {"item_a": [[0.1, 0.2, 0.7, 0.9]], "item_b": [[0.3, 0.0, 1.0, 0.6]]}
    for seed, name in enumerate(boxes):
        write_pair(data, name, size=224, rate=16000, seconds=1.0, seed=seed)
    annotations = write_vggss_json(tmp_path / "vggss.json", boxes)
    out = tmp_path / "out"
    result = run_evaluate("--checkpoint", checkpoint, "--data_dir", data, "--annotations", annotations, "--out_dir", out)
    assert result.returncode == 0, result.stderr[-3000:]
    cious = {row["id"]: float(row["ciou"]) for row in read_rows(out / "per_item.csv")}
    assert sorted(cious) == ["item_a", "item_b"]

    reference = TorchLVS()
    reference.load_official_state_dict(state_dict)
    reference.eval()
    for name, item_boxes in boxes.items():
        frame = preprocessing.load_frame(str(data / f"{name}.jpg"), 224)  # 224 x 224 x 3
        waveform = preprocessing.load_waveform(str(data / f"{name}.wav"), 16000, 10.0)
        spectrum = preprocessing.spectrogram(waveform, 16000).numpy()  # 257 x 671
        with torch.no_grad():
            frame_features, audio_features = reference(torch.from_numpy(frame).permute(2, 0, 1)[None],
                                                       torch.from_numpy(spectrum)[None, None])
        similarity = torch.einsum("nchw,nc->nhw", frame_features, audio_features)[0].numpy()  # 14 x 14
        expected = metrics.score_map(similarity, ground_truth_map(Annotation(item_boxes, None, "vggss")))
        assert cious[name] == pytest.approx(expected, abs=2e-3)


def test_missing_checkpoint_is_one_error_line(tmp_path):
    data = tmp_path / "data"
    write_pair(data, "item", size=32)
    annotations = write_vggss_json(tmp_path / "vggss.json", {"item": [CENTRE]})
    result = run_evaluate("--checkpoint", tmp_path / "nowhere.keras", "--data_dir", data, "--annotations", annotations)
    assert result.returncode != 0 and "Traceback" not in result.stderr and result.stdout == ""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines[-1] == f"error: checkpoint not found: {tmp_path / 'nowhere.keras'}"
    assert sum(line.startswith("error") for line in lines) == 1


def test_user_errors_are_one_line(tmp_path):
    data, empty = tmp_path / "data", tmp_path / "empty"
    empty.mkdir()
    write_pair(data, "item", size=32)
    annotations = write_vggss_json(tmp_path / "vggss.json", {"item": [CENTRE], "other": [CENTRE]})
    elsewhere = tmp_path / "elsewhere.csv"
    elsewhere.write_text("other\nunknown\n")
    base = ["--baseline", "centre", "--out_dir", str(tmp_path / "out")]
    cases = [
        (["--data_dir", str(data), "--annotations", str(tmp_path / "none.json")], "annotations not found"),
        (["--data_dir", str(empty), "--annotations", str(annotations)], "is empty"),
        (["--data_dir", str(tmp_path / "none"), "--annotations", str(annotations)], "data folder not found"),
        (["--data_dir", str(data), "--annotations", str(annotations), "--test_list", str(elsewhere)],
         "none of the 2 ids"),
        (["--data_dir", str(data), "--annotations", str(annotations), "--test_list", str(tmp_path / "none.csv")],
         "cannot read"),
    ]
    for arguments, message in cases:
        with pytest.raises(SystemExit) as stop:
            evaluate.main(base + arguments)
        text = str(stop.value.code)
        assert text.startswith("error: ") and message in text and "\n" not in text
    assert not (tmp_path / "out").exists()
    with pytest.raises(SystemExit) as stop:  # neither a checkpoint nor a baseline: argparse's usage error
        evaluate.main(["--data_dir", str(data), "--annotations", str(annotations)])
    assert stop.value.code == 2


def test_figures_are_spread_from_best_to_worst():
    cious = {"a": 0.9, "b": 0.1, "c": float("nan"), "d": 0.5, "e": 0.3}
    # ranking a (0.9), d, e, b, c (NaN last): three picks at positions 0, 2, 4
    assert evaluate.spread_over_scores(cious, 3) == [(1, "a"), (3, "e"), (5, "c")]
    assert evaluate.spread_over_scores(cious, 10) == [(1, "a"), (2, "d"), (3, "e"), (4, "b"), (5, "c")]
    assert evaluate.spread_over_scores(cious, 0) == []
