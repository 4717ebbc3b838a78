"""vggss_dl.py --train_list: the shipped training lists and VGGSound's csv, test items left out, one-line errors.

Dry runs read the real lists in data/metadata (no network); the end-to-end build downloads generated clips from a
server on 127.0.0.1 (helpers from test_vggss_dl.py).
"""

import csv
import http.server
import threading

import pytest

from downloading import held_out
from downloading import item_lists
import vggss_dl
from test_vggss_dl import PRESENT, RangeRequestHandler, frame_second, make_clock_video, middle_second

VGGSS_TEST_ITEM = "zpWuikVorYg_000032"  # on vggss_test.csv


@pytest.mark.parametrize("filename, left_out", [("vggss_144k.txt", 3709), ("vggss_10k.txt", 238),
                                                ("vggss_144k_fnac.txt", 3715), ("vggss_heard.txt", 0)])
def test_shipped_training_lists_leave_out_the_test_items(metadata_dir, tmp_path, capsys, filename, left_out):
    path = str(metadata_dir / filename)
    out_dir = tmp_path / "out"
    result = vggss_dl.main(["--train_list", path, "--out_dir", str(out_dir), "--dry_run", "--limit", "3"])
    assert result["left_out"] == left_out and len(result["todo"]) == 3
    printed = capsys.readouterr().out
    assert (f"left out {left_out} item(s) of {path}" in printed) == (left_out > 0)
    assert not out_dir.exists()  # a dry run writes nothing

    items = item_lists.load_train_list(path)
    names = held_out.read_names(path)
    assert [item.name for item in items] == names  # every name parsed, in file order
    kept, excluded = item_lists.leave_out_test_items(items)
    assert len(excluded) == left_out and len(kept) + len(excluded) == len(names)
    assert not {item.name for item in kept} & held_out.test_names("vggss")
    assert result["todo"] == [item.name for item in kept[:3]]

    result = vggss_dl.main(["--train_list", path, "--out_dir", str(out_dir), "--dry_run", "--limit", "3",
                            "--allow_test_overlap"])
    assert result["left_out"] == 0 and result["todo"] == names[:3]


def test_vggsound_csv_takes_the_split_rows(tmp_path):
    vggsound = tmp_path / "vggsound.csv"  # as the official file: no header, labels with commas quoted
    vggsound.write_text(f'abcdefghijk,3,"female speech, woman speaking",train\n'
                        f'a-b_c-d_e-f,7,dog barking,test\n'
                        f'{VGGSS_TEST_ITEM[:11]},32,fire truck siren,train\n'
                        f'abcdefghijk,3,"female speech, woman speaking",train\n')
    items = item_lists.load_train_list(str(vggsound), "train")
    assert items == [item_lists.Item("abcdefghijk_000003", "abcdefghijk", 3, "female speech, woman speaking"),
                     item_lists.Item(VGGSS_TEST_ITEM, VGGSS_TEST_ITEM[:11], 32, "fire truck siren")]
    assert item_lists.load_train_list(str(vggsound), "test") == [
        item_lists.Item("a-b_c-d_e-f_000007", "a-b_c-d_e-f", 7, "dog barking")]
    result = vggss_dl.main(["--train_list", str(vggsound), "--out_dir", str(tmp_path / "o"), "--dry_run"])
    assert (result["left_out"], result["todo"]) == (1, ["abcdefghijk_000003"])
    result = vggss_dl.main(["--train_list", str(vggsound), "--out_dir", str(tmp_path / "o"), "--dry_run",
                            "--classes", "dog barking", "--split", "test"])
    assert (result["left_out"], result["todo"]) == (0, ["a-b_c-d_e-f_000007"])


def one_line_error(arguments):
    with pytest.raises(SystemExit) as stop:
        vggss_dl.main(arguments)
    message = stop.value.code
    assert isinstance(message, str) and message.startswith("error: ") and "\n" not in message, message
    return message


def test_bad_lists_end_in_one_line_naming_the_file(metadata_dir, tmp_path):
    out = ["--out_dir", str(tmp_path / "out"), "--dry_run"]
    latin1_json = tmp_path / "vggss_latin1.json"
    latin1_json.write_bytes('[{"file": "zpWuikVorYg_000032", "class": "caf\u00e9"}]'.encode("latin-1"))
    latin1_list = tmp_path / "train_latin1.txt"
    latin1_list.write_bytes("zpWuikVorYg_000032\n# caf\u00e9\n".encode("latin-1"))
    for flag, path in [("--json", latin1_json), ("--train_list", latin1_list), ("--ids", latin1_list)]:
        message = one_line_error([flag, str(path)] + out)
        assert str(path) in message and "UTF-8" in message
    flickr = metadata_dir / "flickr_10k.txt"
    message = one_line_error(["--train_list", str(flickr)] + out)
    assert str(flickr) in message and "Flickr-SoundNet" in message
    broken = tmp_path / "broken.txt"
    broken.write_text("abcdefghijk_000003\nnot a name\n")
    assert f"{broken} line 2" in one_line_error(["--train_list", str(broken)] + out)
    nested = tmp_path / "nested.json"
    nested.write_text("[" * 100_000 + "]" * 100_000)
    assert f"{nested} is nested too deeply" in one_line_error(["--json", str(nested)] + out)
    a_file = tmp_path / "a_file"
    a_file.write_text("not a folder")
    assert str(a_file) in one_line_error(["--out_dir", str(a_file), "--limit", "1"])
    empty = tmp_path / "empty.csv"
    empty.write_text("abcdefghijk,3,dog barking,test\n")
    assert "holds no items of split 'train'" in one_line_error(["--train_list", str(empty)] + out)


@pytest.mark.parametrize("flags, expected", [
    (["--url_template", "http://mirror/{id.foo}.mp4"], "--url_template: only {id}, {start} and {name}"),
    (["--url_template", "http://mirror/{id}/{nope}.mp4"], "--url_template: only {id}, {start} and {name}"),
    (["--timeout", "nan"], "--timeout must be a finite number of seconds, above 0"),
    (["--timeout", "inf"], "--timeout must be a finite number of seconds, above 0"),
    (["--timeout", "0"], "--timeout must be a finite number of seconds, above 0"),
    (["--sleep", "-1"], "--sleep must be a finite number of seconds, 0 or more"),
    (["--sleep", "nan"], "--sleep must be a finite number of seconds, 0 or more"),
    (["--item_timeout", "inf"], "--item_timeout must be a finite number of seconds, above 0"),
    (["--item_timeout", "-5"], "--item_timeout must be a finite number of seconds, above 0"),
    (["--sample_rate", "44.1k"], "--sample_rate: '44.1k' is neither a whole number of Hz nor 'native'"),
    (["--json", "a.json", "--train_list", "b.txt"], "not allowed with argument"),
])
def test_bad_flags_end_in_one_line(tmp_path, capsys, flags, expected):
    with pytest.raises(SystemExit) as stop:
        vggss_dl.main(["--out_dir", str(tmp_path / "out"), "--dry_run"] + flags)
    assert stop.value.code == 2
    error_lines = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(error_lines) == 1 and expected in error_lines[0], error_lines
    assert not (tmp_path / "out").exists()


def test_sleep_0_is_allowed(metadata_dir, tmp_path):
    result = vggss_dl.main(["--out_dir", str(tmp_path / "out"), "--dry_run", "--sleep", "0", "--limit", "2"])
    assert len(result["todo"]) == 2  # the default list is the shipped vggss.json


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """url_template of a server with the clock video under the ids of PRESENT."""
    root = tmp_path_factory.mktemp("served")
    make_clock_video(root / f"{PRESENT[0][:11]}.mp4")
    (root / f"{PRESENT[1][:11]}.mp4").write_bytes((root / f"{PRESENT[0][:11]}.mp4").read_bytes())
    handler = type("Handler", (RangeRequestHandler,), {"root": str(root), "log": [], "throttle_once": set()})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/{{id}}.mp4", handler.log
    httpd.shutdown()
    httpd.server_close()


def test_training_set_is_built_without_its_test_items(server, tmp_path):
    url_template, log = server
    train_list = tmp_path / "train.txt"
    train_list.write_text("\n".join([PRESENT[0], VGGSS_TEST_ITEM, PRESENT[1]]) + "\n")
    out_dir = tmp_path / "train"
    result = vggss_dl.main(["--train_list", str(train_list), "--out_dir", str(out_dir), "--url_template",
                            url_template, "--sleep", "0", "--audio_seconds", "10"])
    assert (result["done"], result["failed"], result["left_out"], result["pairs"]) == (2, 0, 1, 2)
    assert (out_dir / vggss_dl.EXCLUDED_TXT).read_text() == f"{VGGSS_TEST_ITEM}\n"
    assert not [entry for entry in log if VGGSS_TEST_ITEM[:11] in entry[0]]  # never requested
    with open(out_dir / "manifest.csv", newline="") as handle:
        assert [row["name"] for row in csv.DictReader(handle)] == [PRESENT[0], PRESENT[1]]
    for name in PRESENT:
        assert frame_second(out_dir / f"{name}.jpg") == pytest.approx(middle_second(name), abs=0.25)

    # the list as published: the test item is tried too (the server does not have it: http_404)
    result = vggss_dl.main(["--train_list", str(train_list), "--out_dir", str(out_dir), "--url_template",
                            url_template, "--sleep", "0", "--audio_seconds", "10", "--allow_test_overlap"])
    assert (result["done"], result["failure_reasons"], result["finished_before"]) == (0, {"http_404": 1}, 2)
    assert not (out_dir / vggss_dl.EXCLUDED_TXT).exists()

