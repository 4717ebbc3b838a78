"""The repository's layout: which modules sit where, and that imports run one way.

Walks every project module's imports with `ast` (also those inside functions) and checks:
- the root holds only the scripts and the network modules; support code lives in the folders;
- a folder's module never imports a script (train.py, predict.py, ...);
- a folder's module imports only what its folder's docstring allows ("May import: ...");
- no module imports another that imports it back, directly or around a circle.
"""

import ast
import re
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[1]
SCRIPTS = {"train", "predict", "evaluate", "vggss_dl", "bench", "report", "app", "data_service"}
NETWORK = {"model", "resnet18", "loss"}
FOLDERS = ("pipeline", "evaluation", "downloading", "visualization", "training", "safeguards", "benchmarks")


def project_modules():
    """Dotted name -> path of every project module: the root's .py files and the folders' modules."""
    modules = {path.stem: path for path in PROJECT.glob("*.py")}
    for folder in FOLDERS:
        for path in (PROJECT / folder).glob("*.py"):
            modules[folder if path.stem == "__init__" else f"{folder}.{path.stem}"] = path
    return modules


def imported_modules(path, known):
    """The project modules a file imports (anywhere in it), as dotted names in `known`."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # "from pipeline import preprocessing" names a module; "from model import build_model" names a symbol
            names = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
        else:
            continue
        for name in names:
            if name in known:
                found.add(name)
    return found


def import_graph():
    """Dotted name -> the set of project modules it imports (a package's own __init__ left out of its members)."""
    modules = project_modules()
    graph = {}
    for name, path in modules.items():
        imports = imported_modules(path, modules)
        imports.discard(name)
        # "from evaluation import metrics" also lists the package itself; the package's __init__ imports nothing
        graph[name] = {target for target in imports if target not in FOLDERS}
    return graph


def allowed_imports(folder):
    """The names a folder's docstring allows its modules to import ("May import: pipeline, resnet18 (...)")."""
    docstring = ast.get_docstring(ast.parse((PROJECT / folder / "__init__.py").read_text())) or ""
    match = re.search(r"^May import: (.*?)(?:\n\n|\Z)", docstring, flags=re.M | re.S)
    if match is None:
        raise AssertionError(f"{folder}/__init__.py's docstring has no 'May import:' line")
    text = re.sub(r"\([^)]*\)", "", match.group(1))  # drop the reasons in parentheses
    if text.strip().startswith("nothing of the project"):
        return set()
    return {word.strip(" .") for word in text.replace("\n", " ").split(",") if word.strip(" .")}


def find_cycle(graph):
    """One import circle as a list of modules [a, b, ..., a], or None."""
    state = {}

    def visit(node, stack):
        state[node] = "open"
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == "open":
                return stack[stack.index(target):] + [target]
            if target not in state:
                cycle = visit(target, stack)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node, [])
            if cycle:
                return cycle
    return None


def test_the_root_holds_the_scripts_and_the_network_modules_only():
    root = {path.stem for path in PROJECT.glob("*.py")}
    assert root == SCRIPTS | NETWORK, f"unexpected modules at the root: {sorted(root - SCRIPTS - NETWORK)}"
    for folder in FOLDERS:
        assert (PROJECT / folder / "__init__.py").is_file(), f"{folder}/ has no __init__.py"
        assert allowed_imports(folder) is not None
    for name, path in project_modules().items():
        assert ast.get_docstring(ast.parse(path.read_text())), f"{name} has no module docstring"


def test_folders_import_no_script_and_only_what_their_docstring_allows():
    graph = import_graph()
    problems = []
    for name, targets in graph.items():
        if "." not in name:
            continue
        folder = name.split(".")[0]
        allowed = allowed_imports(folder) | {folder}
        for target in targets:
            top = target.split(".")[0]
            if top in SCRIPTS:
                problems.append(f"{name} imports the script {target}")
            elif top not in allowed:
                problems.append(f"{name} imports {target}, which {folder}/__init__.py does not allow")
    assert not problems, "\n".join(sorted(problems))


def test_no_import_circle():
    assert find_cycle(import_graph()) is None, " -> ".join(find_cycle(import_graph()))


def test_no_script_imports_another_script():
    graph = import_graph()
    problems = [f"{name} imports {target}" for name in SCRIPTS for target in graph[name] if target in SCRIPTS]
    assert not problems, "\n".join(problems)


def test_the_checks_can_fail(tmp_path):
    """The circle finder and the docstring reader catch what they are meant to catch."""
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"model": {"resnet18"}, "resnet18": {"model"}}) == ["model", "resnet18", "model"]
    source = "import train\nfrom model import build_model\nfrom pipeline import preprocessing\n"
    path = tmp_path / "probe.py"
    path.write_text(source)
    found = imported_modules(path, {"train", "model", "pipeline", "pipeline.preprocessing"})
    assert found == {"train", "model", "pipeline", "pipeline.preprocessing"}


@pytest.mark.parametrize("folder", FOLDERS)
def test_each_folder_docstring_lists_its_modules(folder):
    docstring = ast.get_docstring(ast.parse((PROJECT / folder / "__init__.py").read_text()))
    for path in (PROJECT / folder).glob("*.py"):
        if path.stem != "__init__":
            assert f"{path.stem}.py" in docstring, f"{folder}/__init__.py does not say what {path.name} holds"
