"""README.md and docs/*.md name only flags the scripts have and files the repository holds.

Flags: a `--flag` after a script's name in a command (`python train.py ...`, code-block continuation lines joined,
or an inline `predict.py --video`) must be in that script's --help; a flag with no script before it (prose, a table
cell, `--sample_rate native`) must be in at least one script's --help. Flags after another program's name
(pytest, pip, ffmpeg, the authors' test.py, ...) are that program's and are not checked.

Paths, in markdown links and in code (inline spans and code blocks), must exist, except what a user creates or
names for themselves: URLs, absolute paths (/data/...), names with a placeholder or a glob (runs/NAME/model.keras,
Annotations/ID.xml, runs/eval_*/...), the target of a `>` redirect, and paths under what .gitignore ignores
(runs/, weights/) or under data/'s untracked folders (data/vggss, data/flickr: the user's datasets). A path with
a folder is checked when it starts in a folder or file of the repository; a bare source name (`loss.py`,
`demo.sh`, `test_loss.py`) is looked up at the root, then in tests/. Markdown anchors (#section) must be headings.

The scripts' --help runs once per session (in parallel, as subprocesses).
"""

import functools
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ("train.py", "predict.py", "evaluate.py", "vggss_dl.py", "bench.py", "report.py", "app.py", "model.py", "data_service.py",
           "resnet18.py", "data/make_demo.py", "data/make_demo_video.py")
# Programs whose flags the docs quote and these tests do not own. A token naming one of them starts its command.
OTHER_PROGRAMS = {
    "pytest": "pytest's own flags (-k, -x)",
    "pip": "pip install's flags",
    "ffmpeg": "ffmpeg's flags",
    "ffprobe": "ffprobe's flags",
    "yt-dlp": "yt-dlp's flags",
    "conda": "conda's flags",
    "apt-get": "apt-get's flags",
    "tensorboard": "tensorboard's flags (--logdir)",
    "git": "git's flags",
}
# Bare source names in code that belong to other repositories, not this one.
OUTSIDE_FILES = {
    "test.py": "the evaluation script of the authors' (and EZ-VSL's, SLAVC's) repositories",
    "opts.py": "SSL-TIE's options file",
    "main.py": "SSL-TIE's training script",
}
SOURCE_SUFFIXES = (".py", ".sh", ".md")
FLAG = re.compile(r"(?<![\w-])--[A-Za-z][\w-]*(?![\w*-])")  # `--skip_*` names a family, not a flag
SEPARATORS = {"&&", "||", ";", "|"}


def documents():
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def help_flags(help_text):
    """The option strings of an argparse --help: the option lines (two spaces, then '-'), up to the help column."""
    flags = set()
    for line in help_text.splitlines():
        match = re.match(r"^  (-\S.*?)(?:\s{2,}|$)", line)
        if match:
            flags.update(FLAG.findall(match.group(1)))
    return flags


@functools.lru_cache(maxsize=None)
def script_flags():
    """Script -> the flags of its --help, each script run once."""
    environment = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")

    def run(script):
        completed = subprocess.run([sys.executable, script, "--help"], cwd=ROOT, env=environment,
                                   capture_output=True, text=True, timeout=600)
        assert completed.returncode == 0, f"{script} --help failed:\n{completed.stderr[-2000:]}"
        return script, help_flags(completed.stdout)

    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(pool.map(run, SCRIPTS))


def split_code(markdown):
    """(code blocks' logical lines, inline code spans, prose) of a markdown text.

    Code-block lines ending in a backslash are joined with the next one; a `# comment` is returned as prose of its own
    line (it names no command)."""
    block_lines, spans, prose = [], [], []
    in_block = False
    pending = ""
    for line in markdown.splitlines():
        if line.lstrip().startswith("```"):
            in_block = not in_block
            continue
        if in_block:
            line = pending + line
            if line.rstrip().endswith("\\"):
                pending = line.rstrip()[:-1] + " "
                continue
            pending = ""
            parts = re.split(r"(?:^|\s)#\s?", line, maxsplit=1)
            code = parts[0]
            if len(parts) == 2:
                prose.append(parts[1])
            block_lines.append(code)
        else:
            pieces = re.split(r"`([^`]+)`", line)
            prose.append(" ".join(pieces[0::2]))
            spans.extend(pieces[1::2])
    return block_lines, spans, prose


def owned_flags(code):
    """(flag, owner) for every flag of one command line or inline span; owner is a script, 'other' or None."""
    found = []
    owner = None
    for token in code.split():
        bare = token.strip("()[],;:'\"")
        if token in SEPARATORS:
            owner = None
        elif bare in SCRIPTS or bare.startswith("./") and bare[2:] in SCRIPTS:
            owner = bare.removeprefix("./")
        elif bare.endswith(".py") or os.path.basename(bare) in OTHER_PROGRAMS:
            owner = "other"  # another program's script (the authors' test.py) or a tool of its own
        else:
            for flag in FLAG.findall(token.split("=", 1)[0] if token.startswith("--") else token):
                found.append((flag, owner))
    return found


def flag_problems(markdown, flags_by_script):
    """The flags a markdown text names that no script (or not the script named with it) has."""
    every_flag = set().union(*flags_by_script.values())
    block_lines, spans, prose = split_code(markdown)
    problems = []
    for code in block_lines + spans:
        for flag, owner in owned_flags(code):
            if owner == "other":
                continue
            if owner is None and flag not in every_flag:
                problems.append(f"{flag} (in `{code.strip()}`) is in no script's --help")
            elif owner is not None and flag not in flags_by_script[owner]:
                problems.append(f"{flag} is not in {owner} --help (in `{code.strip()}`)")
    for text in prose:
        for flag in FLAG.findall(text):
            if flag not in every_flag:
                problems.append(f"{flag} (in the prose '{text.strip()[:80]}') is in no script's --help")
    return problems


@functools.lru_cache(maxsize=None)
def ignored_prefixes():
    """The names .gitignore ignores (runs, weights, ...): what runs write."""
    prefixes = set()
    for line in (ROOT / ".gitignore").read_text().splitlines():
        line = line.strip().strip("/")
        if line and not any(character in line for character in "*?[") and "/" not in line:
            prefixes.add(line)
    return prefixes


def is_users_path(path):
    """A path a user creates or names for themselves (see the module docstring)."""
    if "://" in path or path.startswith(("/", "~", "github.com", "www.")):
        return True
    if re.search(r"[*?\[\]{}<>]", path) or re.search(r"(?<![a-z])[A-Z][A-Z_]{1,}(?![a-z])", path):
        return True  # a glob or a placeholder: NAME, ID, OUT_DIR, NNNN
    parts = path.split("/")
    if parts[0] in ignored_prefixes():
        return True
    if parts[0] == "data" and len(parts) > 1 and parts[1] and not (ROOT / "data" / parts[1]).exists():
        return True  # data/vggss, data/flickr: the user's datasets, next to the shipped demo/ and metadata/
    return False


def code_paths(code):
    """The path-like tokens of a code line or span: those with a folder, and bare source names."""
    paths = []
    words = code.split()
    for index, token in enumerate(words):
        if index and words[index - 1] in (">", ">>", "2>"):
            continue  # a redirect's target is an output
        token = token.split("=", 1)[1] if token.startswith("--") and "=" in token else token
        token = token.strip("()[],;:'\"`").rstrip(".")
        if not token or token.startswith("-") or "=" in token:
            continue
        if "/" in token or token.endswith(SOURCE_SUFFIXES):
            paths.append(token)
    return paths


def path_exists(path):
    path = path.rstrip("/")
    if "/" not in path:
        if path in OUTSIDE_FILES:
            return True
        return (ROOT / path).exists() or (ROOT / "tests" / path).exists()
    return (ROOT / path).exists()


def heading_anchors(markdown):
    anchors = set()
    in_block = False
    for line in markdown.splitlines():
        if line.lstrip().startswith("```"):
            in_block = not in_block
        elif not in_block and line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            anchors.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return anchors


def path_problems(markdown, document):
    """The files, folders and anchors a markdown text names that do not exist."""
    problems = []
    for target in re.findall(r"\]\(([^)\s]+)\)", markdown):
        if "://" in target or target.startswith("mailto:"):
            continue
        file_part, _, anchor = target.partition("#")
        linked = (document.parent / file_part).resolve() if file_part else document
        if not linked.exists():
            problems.append(f"link target {target} does not exist")
        elif anchor and linked.suffix == ".md" and anchor not in heading_anchors(linked.read_text()):
            problems.append(f"link target {target}: no heading #{anchor} in {linked.name}")
    block_lines, spans, _ = split_code(markdown)
    for code in block_lines + spans:
        for path in code_paths(code):
            if is_users_path(path):
                continue
            top = path.split("/")[0]
            if "/" in path and not (ROOT / top).exists() and not path.endswith(SOURCE_SUFFIXES):
                continue  # a name inside the user's own folder (frames/clip001.jpg, Data/0, out/...)
            if not path_exists(path):
                problems.append(f"{path} (in `{code.strip()}`) does not exist")
    return problems


@pytest.mark.parametrize("document", documents(), ids=lambda path: str(path.relative_to(ROOT)))
def test_every_flag_is_a_scripts_flag(document):
    problems = flag_problems(document.read_text(), script_flags())
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("document", documents(), ids=lambda path: str(path.relative_to(ROOT)))
def test_every_named_file_exists(document):
    problems = path_problems(document.read_text(), document)
    assert not problems, "\n".join(problems)


def test_the_checks_catch_a_made_up_flag_and_a_made_up_path():
    flags = {"train.py": {"--help", "--data_dir", "--epochs"}, "evaluate.py": {"--help", "--figures"}}
    flags.update({script: {"--help"} for script in SCRIPTS if script not in flags})
    sample = ("Use `--epochs 3` or `--no_such_flag`.\n\n```bash\npython train.py --data_dir data/demo/train \\\n"
              "    --figures 6   # a flag of evaluate.py, not train.py\n.venv/bin/python -m pytest -q tests -k docs "
              "--lf\npython evaluate.py --figures 2 > runs/out.md\n```\nAnd --also_made_up in prose.\n")
    problems = flag_problems(sample, flags)
    assert any("--no_such_flag" in problem for problem in problems)
    assert any("--figures is not in train.py" in problem for problem in problems)
    assert any("--also_made_up" in problem for problem in problems)
    assert not any("--lf" in problem or "--epochs" in problem for problem in problems)
    assert len(problems) == 3, problems

    sample = ("See [the data](docs/no_such_page.md), [speed](README.md#no-such-heading), `data/metadata/nothing.json`,"
              " `evaluation/no_such_module.py`, `bench_video.py`.\nYours: `runs/NAME/model.keras`, `/data/x.jpg`, "
              "`data/vggss`, `frames/clip001.jpg`, `weights/resnet18_imagenet.weights.h5`, `test.py`.\n"
              "Ours: `data/metadata/vggss.json`, `tests/test_loss.py`, `test_loss.py`, [readme](README.md).\n")
    problems = path_problems(sample, ROOT / "README.md")
    for bogus in ("no_such_page.md", "no-such-heading", "nothing.json", "no_such_module.py", "bench_video.py"):
        assert any(bogus in problem for problem in problems), (bogus, problems)
    assert len(problems) == 5, problems


def test_help_parser_reads_option_lines_only():
    text = ("usage: x.py [-h] [--out_dir OUT_DIR]\n\noptions:\n  -h, --help            show this help\n"
            "  --out_dir OUT_DIR     where (see also --not_an_option)\n  --split {train,test}\n"
            "                        which split; --neither\n")
    assert help_flags(text) == {"--help", "--out_dir", "--split"}
