"""evaluate.py with a model: the extended set (negatives, AP / max-F1 / LocAcc, inconsistent rows), the test-overlap
report, the tiling warning, --sample_rate; the EZ-VSL protocol with OGL against PyTorch written from EZ-VSL's and
SLAVC's test.py; and checkpoints that must be refused in one line."""

import csv
import json
import sys

sys.modules.setdefault("triton", None)  # as tests/test_resnet18.py: keep triton from loading after TensorFlow

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import scipy.io.wavfile  # noqa: E402
import scipy.signal  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from PIL import Image  # noqa: E402

import evaluate  # noqa: E402
from evaluation import extended_metrics  # noqa: E402
import keras  # noqa: E402
from pipeline import preprocessing  # noqa: E402
import resnet18  # noqa: E402
import report  # noqa: E402
from evaluation.annotations import Annotation, ground_truth_map  # noqa: E402
from model import build_model  # noqa: E402
from test_resnet18 import random_torchvision_resnet18, torch_layer4  # noqa: E402
from benchmarks.torch_reference import TorchLVS, random_official_state_dict  # noqa: E402


def write_pair(folder, name, width=64, height=64, rate=8000, seconds=0.25, seed=0, chirp=False):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)).save(folder / f"{name}.jpg")
    samples = rng.uniform(-0.5, 0.5, size=int(rate * seconds))
    if chirp:  # a rising tone over noise: every window of the file sounds different
        times = np.arange(samples.shape[0]) / rate
        samples = 0.1 * samples + 0.8 * scipy.signal.chirp(times, 100, seconds, rate / 2.5)
    samples = (samples * 32767).astype(np.int16)
    scipy.io.wavfile.write(folder / f"{name}.wav", rate, samples)


def write_vggss_json(path, boxes_by_name):
    path.write_text(json.dumps([{"file": name, "class": "c", "bbox": boxes} for name, boxes in boxes_by_name.items()]))
    return path


def read_rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


BOXES = {"p0": [[0.1, 0.1, 0.6, 0.6]], "p1": [[0.3, 0.2, 0.9, 0.8]], "p2": [[0.0, 0.5, 0.1, 0.6]],
         "p3": [[0.2, 0.2, 0.8, 0.8], [0.0, 0.0, 0.1, 0.1]]}


def test_extended_set_overlap_tiling_and_sample_rate_with_a_trained_model(tmp_path, capsys):
    data = tmp_path / "data"
    for seed, name in enumerate(BOXES):
        write_pair(data, name, seed=seed)  # 0.25 s of audio under a 0.5 s model: tiled
    annotations = write_vggss_json(tmp_path / "vggss.json", BOXES)
    extended = tmp_path / "plus_silent.csv"
    extended.write_text("video,audio,label\np0,p1,non-sounding\np2,p2,non-sounding\np3,absent,non-sounding\n"
                        "p1,p0,sounding\n")
    run = tmp_path / "run"
    run.mkdir()
    build_model(image_weights="none", image_size=64, sample_rate=16000, audio_seconds=0.5).save(run / "model.keras")
    (run / "test_overlap.txt").write_text("p1\nnot_scored\n")
    out = tmp_path / "out"
    evaluate.main(["--checkpoint", str(run / "model.keras"), "--data_dir", str(data), "--annotations", str(annotations),
                   "--extended", str(extended), "--out_dir", str(out), "--sample_rate", "8000", "--resize", "squash",
                   "--batch_size", "3"])
    printed = capsys.readouterr()
    metrics_report = json.loads((out / "metrics.json").read_text())
    rows = read_rows(out / "per_item.csv")
    assert [row["id"] for row in rows] == ["p0", "p1", "p2", "p3", "p0+p1", "p2+p2"]
    assert [row["kind"] for row in rows] == ["positive"] * 4 + ["negative"] * 2
    assert (rows[4]["video"], rows[4]["audio"], rows[4]["boxes"], rows[4]["area"]) == ("p0", "p1", "0", "0.0")
    assert [int(row["boxes"]) for row in rows[:4]] == [1, 1, 1, 2]
    # the numbers in metrics.json are SLAVC's, from the per-item columns
    expected = extended_metrics.summarise_extended([int(row["boxes"]) for row in rows], [float(row["ciou"]) for row in rows],
                                                   [float(row["confidence"]) for row in rows],
                                                   [float(row["area"]) for row in rows])
    for key in ("ap", "max_f1", "loc_acc", "n_positive", "n_negative"):
        assert metrics_report[key] == pytest.approx(expected[key])
    assert set(metrics_report["buckets"]) == {"small", "medium", "large", "huge"}
    assert "NaN" not in (out / "metrics.json").read_text()  # strict JSON: an empty bucket's numbers are null
    assert metrics_report["buckets"]["huge"]["ap"] is None and metrics_report["buckets"]["huge"]["n_items"] == 0
    assert all(0 <= float(row["confidence"]) <= 1 for row in rows)
    extended_report = metrics_report["extended"]
    assert (extended_report["n_negative_rows"], extended_report["n_negative_scored"],
            extended_report["n_negative_missing"], extended_report["n_inconsistent_rows"]) == (3, 2, 1, 1)
    assert (out / "inconsistent_negatives.txt").read_text() == "p2,p2\n"
    assert (out / "missing_negatives.txt").read_text() == "p3+absent\n"
    assert "1 non-sounding row(s)" in printed.out and "video == audio" in printed.out
    assert (out / "precision_recall.png").read_bytes()[:4] == b"\x89PNG"
    # the checkpoint's training run listed p1 as a test item it trained on
    assert metrics_report["test_overlap"] == {"file": str(run / "test_overlap.txt"), "n_overlapping": 1, "names": ["p1"]}
    assert "1 scored item(s) were training pairs" in printed.out
    # what ran is recorded, and the tiling is said once
    protocol = metrics_report["protocol"]
    assert (protocol["name"], protocol["resize"], protocol["sample_rate"], protocol["audio_seconds"]) == (
        "lvs", "squash", 8000, 0.5)
    tiled = [line for line in printed.err.splitlines() if "tiled" in line]
    assert len(tiled) == 1 and "6 of 6 audio files" in tiled[0] and "0.5 s" in tiled[0]
    # the table collects it with its counts
    table = report.markdown_table([metrics_report])
    assert f"{100 * metrics_report['ap']:.1f} [6/1]" in table and f"{100 * metrics_report['ciou']:.1f} [4/0]" in table


def ezvsl_normalize_img(value):  # EZ-VSL / SLAVC utils.normalize_img
    vmin, vmax = value.min(), value.max()
    return (value - vmin) / (vmax - vmin) if vmax - vmin != 0 else value


def ezvsl_ciou(pred, gt_map):  # EZ-VSL test.py: threshold at the median index, then utils.Evaluator.cal_CIOU
    thr = np.sort(pred.flatten())[int(pred.shape[0] * pred.shape[1] * 0.5)]
    infer_map = np.zeros((224, 224))
    infer_map[pred >= thr] = 1
    return np.sum(infer_map * gt_map) / (np.sum(gt_map) + np.sum(infer_map * (gt_map == 0)))


def slavc_confidence(scores):  # SLAVC test.py
    n = scores.size
    return np.sort(scores.flatten())[-n // 4:].mean()


def test_ezvsl_protocol_with_ogl_equals_pytorch_written_from_the_papers_code(tmp_path, metadata_dir):
    state_dict = random_official_state_dict(metadata_dir / "lvs_state_dict_keys.tsv", seed=11)
    checkpoint = tmp_path / "lvs.pth.tar"
    torch.save({"model_state_dict": state_dict}, checkpoint)
    object_model = random_torchvision_resnet18(seed=12, layer4_stride=2)
    pth = tmp_path / "resnet18.pth"
    torch.save(object_model.state_dict(), pth)
    weights = resnet18.convert_imagenet(tmp_path / "object.weights.h5", pth, expected_sha256=resnet18.file_sha256(pth))
    data = tmp_path / "data"
    boxes = {"wide": [[0.1, 0.2, 0.5, 0.9]], "tall": [[0.3, 0.1, 0.9, 0.5]]}
    write_pair(data, "wide", width=320, height=180, rate=16000, seconds=5.0, seed=1, chirp=True)
    write_pair(data, "tall", width=120, height=200, rate=16000, seconds=2.0, seed=2, chirp=True)
    annotations = write_vggss_json(tmp_path / "vggss.json", boxes)
    extended = tmp_path / "plus_silent.csv"
    extended.write_text("video,audio,label\nwide,tall,non-sounding\n")
    out = tmp_path / "out"
    evaluate.main(["--checkpoint", str(checkpoint), "--data_dir", str(data), "--annotations", str(annotations),
                   "--protocol", "ezvsl", "--ogl", "0.4", "--image_weights", str(weights), "--extended", str(extended),
                   "--out_dir", str(out)])
    rows = {row["id"]: row for row in read_rows(out / "per_item.csv")}
    metrics_report = json.loads((out / "metrics.json").read_text())
    assert metrics_report["protocol"]["resize"] == "squash" and metrics_report["protocol"]["audio_seconds"] == 3.0
    assert set(metrics_report["ogl"]["rows"]) == {"AV", "OBJ", "AV+OGL"}

    reference = TorchLVS()
    reference.load_official_state_dict(state_dict)
    reference.eval()
    for name, image_name, audio_name in [("wide", "wide", "wide"), ("tall", "tall", "tall"), ("wide+tall", "wide", "tall")]:
        frame = preprocessing.load_frame(str(data / f"{image_name}.jpg"), 224, resize="squash")  # Resize((224, 224))
        samples, rate = preprocessing.read_audio(str(data / f"{audio_name}.wav"), 16000)
        start = max(samples.shape[0] / rate / 2 - 1.5, 0)  # EZ-VSL load_spectrogram: the middle 3 s
        audio = samples[int(round(start * rate)):][: 3 * rate]
        audio = np.tile(audio, int(rate * 3 / audio.shape[0]) + 1)[: 3 * rate]  # repeated if too short
        spectrum = preprocessing.spectrogram(np.clip(audio, -1, 1), rate).numpy()  # 257 x time
        frame_tensor = torch.from_numpy(frame).permute(2, 0, 1)[None]
        with torch.no_grad():
            frame_features, audio_features = reference(frame_tensor, torch.from_numpy(spectrum)[None, None])
            heatmap_av = torch.einsum("nchw,nc->nhw", frame_features, audio_features)[:, None]  # 1 x 1 x 14 x 14
            heatmap_av = F.interpolate(heatmap_av, size=(224, 224), mode="bilinear", align_corners=True)[0, 0].numpy()
            img_feat = torch_layer4(object_model, frame_tensor).abs().mean(1)[:, None]  # NormReducer: 1 x 1 x 7 x 7
            heatmap_obj = F.interpolate(img_feat, size=(224, 224), mode="bilinear", align_corners=True)[0, 0].numpy()
        pred_av, pred_obj = ezvsl_normalize_img(heatmap_av), ezvsl_normalize_img(heatmap_obj)
        pred_av_obj = ezvsl_normalize_img(pred_av * 0.4 + pred_obj * (1 - 0.4))
        gt_map = ground_truth_map(Annotation(boxes[name], None, "vggss")) if name in boxes else np.zeros((224, 224))
        row = rows[name]
        if name in boxes:
            assert float(row["ciou"]) == pytest.approx(ezvsl_ciou(pred_av, gt_map), abs=2e-3)
            assert float(row["obj_ciou"]) == pytest.approx(ezvsl_ciou(pred_obj, gt_map), abs=2e-3)
            assert float(row["av_ogl_ciou"]) == pytest.approx(ezvsl_ciou(pred_av_obj, gt_map), abs=2e-3)
        assert float(row["confidence"]) == pytest.approx(slavc_confidence((heatmap_av + 1) / 2), abs=1e-5)
        assert float(row["obj_confidence"]) == pytest.approx(slavc_confidence(heatmap_obj / 2.5), abs=1e-5)


def test_checkpoints_that_must_be_refused_in_one_line(tmp_path):
    data = tmp_path / "data"
    write_pair(data, "item")
    annotations = write_vggss_json(tmp_path / "vggss.json", {"item": [[0.25, 0.25, 0.75, 0.75]]})
    foreign = tmp_path / "foreign.keras"
    keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)]).save(foreign)
    truncated = tmp_path / "truncated.keras"
    model = build_model(image_weights="none", image_size=64, sample_rate=8000, audio_seconds=0.5)
    model.save(tmp_path / "good.keras")
    truncated.write_bytes((tmp_path / "good.keras").read_bytes()[:5000])
    kernel = model.vision.get_layer("conv1").kernel
    kernel.assign(np.where(np.arange(kernel.shape[-1]) == 3, np.nan, kernel.numpy()).astype("float32"))
    diverged = tmp_path / "diverged.keras"
    model.save(diverged)
    cases = [(["--checkpoint", str(foreign)], "not an LVS model"), (["--checkpoint", str(truncated)], str(truncated)),
             (["--checkpoint", str(diverged)], "non-finite values"),
             (["--checkpoint", str(tmp_path / "good.keras"), "--ogl", "0.4", "--image_weights",
               str(tmp_path / "none.weights.h5")], "ImageNet ResNet-18 weights not found")]
    for arguments, message in cases:
        with pytest.raises(SystemExit) as stop:
            evaluate.main(arguments + ["--data_dir", str(data), "--annotations", str(annotations),
                                       "--out_dir", str(tmp_path / "out")])
        line = str(stop.value.code)
        assert line.startswith("error: ") and message in line and "\n" not in line, line
    assert not (tmp_path / "out").exists()


def test_report_table_rows_and_one_line_errors(tmp_path):
    base = {"ciou": 0.412, "auc": 0.398, "n_scored": 110, "n_missing": 2, "checkpoint": "runs/x/model.keras",
            "train_set": "data/vggss_144k", "test_list": "data/metadata/vggss_test.csv",
            "protocol": {"name": "ezvsl", "resize": "squash"}}
    extended = dict(base, ap=0.25, max_f1=0.5, extended={"list": "x/vggss_test_plus_silent.csv", "n_negative_scored": 100,
                                                         "n_negative_missing": 3})
    ogl = dict(base, ogl={"rows": {"AV": {"ciou": 0.4, "auc": 0.3}, "OBJ": {"ciou": 0.2, "auc": 0.1},
                                   "AV+OGL": {"ciou": 0.5, "auc": 0.45}}})
    lines = report.markdown_table([base, extended, ogl], ["LVS"]).splitlines()
    assert lines[0] == "| method | checkpoint | train set | test set | protocol | cIoU | AUC | AP | max-F1 |"
    assert lines[2] == ("| LVS | model.keras | data/vggss_144k | vggss_test.csv | ezvsl (squash) | 41.2 [110/2] | "
                        "39.8 [110/2] | - | - |")
    assert lines[3].endswith("| vggss_test.csv + vggss_test_plus_silent.csv | ezvsl (squash) | 41.2 [110/2] | "
                             "39.8 [110/2] | 25.0 [210/5] | 50.0 [210/5] |")
    assert [line.split(" | ")[0] for line in lines[4:]] == ["| LVS (this repository)", "| OBJ (ImageNet ResNet-18)",
                                                             "| LVS (this repository) + OGL"]
    broken = tmp_path / "metrics.json"
    broken.write_bytes(b"\xff\xfe not json")
    with pytest.raises(SystemExit) as stop:
        report.main([str(broken)])
    assert str(stop.value.code).startswith("error: ") and str(broken) in str(stop.value.code)


def test_lvs_protocol_maps_are_the_training_pipelines(tmp_path):
    # evaluate.py reads pairs itself (windows, native rates); under the lvs protocol it must see what
    # preprocessing.make_dataset (training, predict.py) feeds the model
    from evaluation.maps import model_maps
    from evaluation.protocols import LVS
    from predict import predict_maps

    data = tmp_path / "data"
    write_pair(data, "a", width=80, height=48, rate=8000, seconds=0.3, seed=1)
    write_pair(data, "b", width=48, height=70, rate=11025, seconds=1.0, seed=2, chirp=True)
    write_pair(data, "c", rate=16000, seconds=0.6, seed=3)
    pairs, _ = preprocessing.find_pairs(str(data))
    model = build_model(image_weights="none", image_size=64, sample_rate=16000, audio_seconds=0.5)
    maps, failures, durations = model_maps(model, pairs, model.settings, LVS, batch_size=2)
    assert failures == {} and durations == pytest.approx({"a": 0.3, "b": 1.0, "c": 0.6})
    for name, _, similarity, mask in predict_maps(model, pairs, batch_size=2):
        np.testing.assert_allclose(maps[name]["similarity"], similarity, atol=1e-5)
        np.testing.assert_allclose(maps[name]["positive_mask"], mask, atol=1e-5)
