"""Collect metrics.json files of evaluate.py into one markdown results table, as a README or a paper shows it.

One row per scored model (and, for an --ogl run, one row each for AV, OBJ and AV+OGL):
    | method | checkpoint | train set | test set | protocol | cIoU | AUC | AP | max-F1 |
Numbers are percentages with one decimal. Every number carries its item counts as [scored/missing]: cIoU and AUC
count the positives; AP and max-F1 count positives and negatives of the extended list. "-" where a run did not
compute a number (AP and max-F1 need --extended).

Usage:
    python report.py runs/lvs/eval_vggss/metrics.json runs/lvs/eval_extended/metrics.json > results.md
    python report.py a/metrics.json b/metrics.json --method "LVS (ours)" --method "LVS (official)"
"""

import argparse
import math
import os
import sys

from evaluation.annotations import read_json

COLUMNS = ["method", "checkpoint", "train set", "test set", "protocol", "cIoU", "AUC", "AP", "max-F1"]
ROW_METHODS = {"AV": "", "OBJ": "OBJ (ImageNet ResNet-18)", "AV+OGL": " + OGL"}


def read_metrics(path):
    """A metrics.json as a dict, or ValueError naming the file."""
    report = read_json(path)
    if not isinstance(report, dict) or "ciou" not in report or "n_scored" not in report:
        raise ValueError(f"{path} is not a metrics.json of evaluate.py (no ciou / n_scored)")
    return report


def percent(value, scored, missing):
    """'41.2 [110/0]', or '-' for a number that was not computed."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{100 * value:.1f} [{scored}/{missing}]"


def default_method(report):
    """A method name from what was scored."""
    if report.get("baseline"):
        return f"{report['baseline']} baseline"
    checkpoint = str(report.get("checkpoint") or "")
    return "LVS (official checkpoint)" if checkpoint.endswith((".pth.tar", ".pth")) else "LVS (this repository)"


def test_set(report):
    """The test set's name: the test list (or annotations) file, plus the extended list."""
    name = os.path.basename(str(report.get("test_list") or report.get("annotations") or "?"))
    extended = report.get("extended")
    return f"{name} + {os.path.basename(str(extended['list']))}" if extended else name


def protocol_text(report):
    """'lvs (crop)' from the recorded protocol."""
    protocol = report.get("protocol") or {}
    return f"{protocol.get('name', 'lvs')} ({protocol.get('resize', 'crop')})"


def table_rows(report, method=None):
    """The table rows (lists of cells) of one metrics.json."""
    method = method or default_method(report)
    extended = report.get("extended") or {}
    positives, missing = report["n_scored"], report.get("n_missing", 0)
    all_scored = positives + extended.get("n_negative_scored", 0)
    all_missing = missing + extended.get("n_negative_missing", 0)
    rows = (report.get("ogl") or {}).get("rows") or {"AV": report}
    cells = []
    for row, numbers in rows.items():
        name = ROW_METHODS.get(row, row)
        name = name if row == "OBJ" else method + name
        cells.append([name, os.path.basename(str(report.get("checkpoint") or "-")), str(report.get("train_set") or "-"),
                      test_set(report), protocol_text(report), percent(numbers.get("ciou"), positives, missing),
                      percent(numbers.get("auc"), positives, missing),
                      percent(numbers.get("ap"), all_scored, all_missing),
                      percent(numbers.get("max_f1"), all_scored, all_missing)])
    return cells


def markdown_table(reports, methods=None):
    """The markdown text of the table of several metrics.json dicts."""
    methods = list(methods or []) + [None] * len(reports)
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + " --- |" * len(COLUMNS)]
    for report, method in zip(reports, methods):
        lines += ["| " + " | ".join(cell.replace("|", "/") for cell in row) + " |" for row in table_rows(report, method)]
    return "\n".join(lines) + "\n"


def parse_arguments(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("metrics", nargs="+", help="metrics.json files written by evaluate.py")
    parser.add_argument("--method", action="append", default=[],
                        help="the method name of each file, in order (repeat the flag; default: from the checkpoint)")
    return parser.parse_args(argv)


def main(argv=None):
    arguments = parse_arguments(argv)
    if len(arguments.method) > len(arguments.metrics):
        raise SystemExit(f"error: {len(arguments.method)} --method names for {len(arguments.metrics)} files")
    try:
        reports = [read_metrics(path) for path in arguments.metrics]
    except ValueError as error:
        raise SystemExit(f"error: {error}")
    sys.stdout.write(markdown_table(reports, arguments.method))


if __name__ == "__main__":
    main()
