"""benchmarks/pipeline_speed.py and `bench.py --only pipeline`: the generated files are shaped as vggss_dl.py writes
them, the four pinned runs report their figures (json and table), and the report's other sections are kept.

No speed is asserted: only that the figures are measured, named and written.
"""

import json
import os
import subprocess
import sys

import numpy as np
import soundfile
from PIL import Image, JpegImagePlugin

from benchmarks import pipeline_speed
from benchmarks.tables import replace_section
from safeguards import cpu_features

PROJECT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_generated_pairs_are_shaped_as_vggss_dl_writes_them(tmp_path):
    names = pipeline_speed.write_vggss_like_pairs(str(tmp_path), 2, seed=0)
    assert names == ["pair_0000", "pair_0001"]
    for name in names:
        with Image.open(tmp_path / f"{name}.jpg") as image:
            assert (image.format, image.mode, image.size) == ("JPEG", "RGB", (512, 512))
            assert JpegImagePlugin.get_sampling(image) == 2  # 4:2:0, as ffmpeg's mjpeg writes video frames
            pixels = np.asarray(image, np.float32)
        assert pixels.std() > 15 and np.abs(np.diff(pixels, axis=1)).mean() > 2  # not flat colour, has detail
        assert 40_000 < os.path.getsize(tmp_path / f"{name}.jpg") < 150_000  # a photo's size at -q:v 2, not flat
        info = soundfile.info(tmp_path / f"{name}.wav")
        assert (info.samplerate, info.channels, info.frames, info.subtype) == (16000, 1, 160000, "PCM_16")
    again = tmp_path / "again"
    again.mkdir()
    pipeline_speed.write_vggss_like_pairs(str(again), 2, seed=0)
    for name in names:  # the same seed writes the same files
        for extension in ("jpg", "wav"):
            assert (again / f"{name}.{extension}").read_bytes() == (tmp_path / f"{name}.{extension}").read_bytes()


def fake_result(ours_one, reference_one, ours_all, reference_all, cores=4):
    rows = [{"framework": framework, "cores": count, "parallelism": "", "samples_per_second": speed, "error": None,
             "rounds": [speed] if speed else []}
            for count, pair in ((1, (ours_one, reference_one)), (cores, (ours_all, reference_all)))
            for framework, speed in zip(("ours", "reference"), pair)]
    return {"rows": rows, "cpu_class": "AVX2/FMA", "files": "512x512 jpg", "batch_size": 16, "load_start": "0.1",
            "load_end": "0.2", "others_share": 0.05}


def test_json_figures_and_the_gpu_arithmetic():
    result = fake_result(100.0, 50.0, 360.0, 190.0)
    figures = pipeline_speed.json_figures(result)
    assert figures["per_core"] == {"ours": 100.0, "reference": 50.0, "ours_cached": None,  # no cached row here
                                   "ours_service": None}
    assert figures["all_cores"] == {"ours": 360.0, "reference": 190.0, "ours_cached": None, "ours_service": None,
                                    "cores": 4}
    line = pipeline_speed.gpu_line(result, 500)
    assert "N / 100.0 with ours, N / 50.0 with the reference" in line
    assert "**5 cores with ours, 10 with the reference**" in line
    assert "3.60x (ours) and 3.80x (reference)" in line and "AVX2/FMA" in line
    failed = fake_result(None, 50.0, 360.0, 190.0)
    assert "not computed" in pipeline_speed.gpu_line(failed)


def test_a_section_is_replaced_and_every_other_line_kept():
    document = "# Benchmarks\n\n## Machine\n\n| a | b |\n\n## Input pipeline\n\nold table\n\n## Peak memory\n\nkept\n"
    section = "## Input pipeline on vggss_dl.py's files (CPU class: AVX2/FMA)\n\nnew table\n"
    replaced = replace_section(document, section, "## Input pipeline")
    assert replaced == ("# Benchmarks\n\n## Machine\n\n| a | b |\n\n## Input pipeline on vggss_dl.py's files (CPU "
                        "class: AVX2/FMA)\n\nnew table\n\n## Peak memory\n\nkept\n")
    last = replace_section("# B\n\n## Input pipeline\n\nold\n", section, "## Input pipeline")
    assert last == "# B\n\n" + section
    assert replace_section("# B\n", section, "## Input pipeline") == "# B\n\n" + section  # none yet: appended


def test_bench_only_pipeline_writes_its_section_and_json(tmp_path):
    """A real `bench.py --only pipeline` on a --data_dir of generated pairs: eight pinned runs, the json, the table
    with the CPU class, and the report's other sections as they were."""
    data = tmp_path / "pairs"
    data.mkdir()
    pipeline_speed.write_vggss_like_pairs(str(data), 4, seed=2)
    report = tmp_path / "B.md"
    before = "# Benchmarks\n\n## Machine\n\n| CPU | x |\n\n## Input pipeline\n\nold\n\n## Peak memory\n\nkept\n"
    report.write_text(before)
    figures = tmp_path / "pipeline.json"
    command = [sys.executable, os.path.join(PROJECT, "bench.py"), "--only", "pipeline", "--quick", "--batch_size", "2",
               "--pipeline_batches", "1", "--data_dir", str(data), "--json", str(figures), "--output", str(report)]
    completed = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600,
                               env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert completed.returncode == 0, completed.stderr[-3000:]
    written = json.loads(figures.read_text())
    cores = len(os.sched_getaffinity(0))
    assert written["all_cores"]["cores"] == cores
    for group in ("per_core", "all_cores"):
        assert written[group]["ours"] > 0 and written[group]["reference"] > 0 and written[group]["ours_cached"] > 0
        assert written[group]["ours_service"] > 0
    cpu_class = cpu_features.cpu_class(cpu_features.cpu_flags())
    assert written["cpu_class"] == cpu_class
    text = report.read_text()
    assert text.startswith("# Benchmarks\n\n## Machine\n\n| CPU | x |\n\n## Input pipeline on vggss_dl.py's files")
    assert text.endswith("\n## Peak memory\n\nkept\n") and "\nold\n" not in text
    rows = [line for line in text.splitlines() if line.startswith(f"| {cpu_class} | ")]
    names = ["ours (make_dataset)", "ours, train.py --cache (warm)", "ours, a data service worker (TensorFlow ops)",
             "reference (PyTorch DataLoader)"]
    assert [row.split(" | ")[1:3] for row in rows] == [[name, count] for count in ("1", str(cores)) for name in names]
    assert f"the first 4 pairs of {data}" in text and "512x512 jpg" in text
    assert "Cores to feed a GPU" in text
    assert "## Input pipeline on vggss_dl.py's files" in completed.stdout  # the table on stdout too
