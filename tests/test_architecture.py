"""The architecture, read from the source (AST only: nothing of the product is imported).

Imports only go down the floors of FLOORS/ALLOWED, deferred (function-level) imports included;
no import cycle among project modules; no product function over MAX_FUNCTION_LINES lines; no test
module imports another test module. Each checker is also run on a small synthetic tree in
tmp_path to show that it reports what it should.
"""
import ast
import os
import pathlib
import textwrap

REPO = pathlib.Path(__file__).resolve().parent.parent
MAX_FUNCTION_LINES = 80

# Top-level folders with a floor of their own; any other top-level folder of Python code is a
# concern package (training/, evaluation/, inference/, dataset_builders/, and any added later).
FOLDER_FLOORS = {"util": "util", "options": "options", "data": "data", "models": "models",
                 "scripts": "scripts", "benchmarks": "benchmarks", "tests": "test helpers"}
# floor -> the floors it may import. "entry" (the .py files at the repository root: train.py,
# test.py, ...) and "test modules" (tests/test_*.py) appear in no list: nothing of the product may
# import them. options/ may import util/: flag defaults such as the grayscale threshold and the Lab
# normalisation are util.color's constants, written once; util/ imports nothing above it.
ALLOWED = {
    "util": {"util"},
    "options": {"options", "util"},
    "data": {"data", "util"},
    "models": {"models", "data", "util"},
    "concern": {"concern", "models", "data", "util", "options"},
    "scripts": {"scripts", "concern", "models", "data", "util", "options"},
    "benchmarks": {"benchmarks", "scripts", "concern", "models", "data", "util", "options", "test helpers"},
    "entry": {"scripts", "concern", "models", "data", "util", "options"},
}


def is_skipped_dir(path):
    """Hidden folders (.git, .venv-ci), caches and virtual environments."""
    return path.name.startswith(".") or path.name == "__pycache__" or (path / "pyvenv.cfg").exists()


def python_files(root):
    """{module name: path} of every .py file under ``root`` (tests/ included), e.g. util.color,
    models (models/__init__.py), train (train.py at the root)."""
    modules = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not is_skipped_dir(pathlib.Path(dirpath, d)))
        for name in filenames:
            if name.endswith(".py"):
                parts = pathlib.Path(dirpath, name).relative_to(root).with_suffix("").parts
                parts = parts[:-1] if parts[-1] == "__init__" else parts
                modules[".".join(parts)] = pathlib.Path(dirpath, name)
    return modules


def floor_of(module, path, root):
    """The floor of a project module (see ALLOWED)."""
    rel = path.relative_to(root)
    if len(rel.parts) == 1:
        return "entry"
    if rel.parts[0] == "tests" and rel.name.startswith("test_"):
        return "test modules"
    return FOLDER_FLOORS.get(rel.parts[0], "concern")


def is_product(path, root):
    return path.relative_to(root).parts[0] != "tests"


def resolve(name, modules):
    """The deepest project module among the prefixes of the dotted ``name`` (None: not ours)."""
    parts = name.split(".")
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in modules:
            return ".".join(parts[:n])
    return None


def imported_modules(module, path, modules):
    """[(line, project module)] for every import statement of the file, at any depth (deferred
    imports in functions included); ``from X import Y`` names X.Y when Y is a submodule."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, resolve(alias.name, modules)) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package of this module
                package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
                package = package[:len(package) - node.level + 1]
                base = ".".join(package + ([node.module] if node.module else []))
            for alias in node.names:
                sub = f"{base}.{alias.name}" if base else alias.name
                found.append((node.lineno, sub if sub in modules else resolve(base, modules) if base else None))
    return sorted({(line, target) for line, target in found if target is not None and target != module})


def import_graph(root):
    """(modules, edges): edges[a] = [(line, b)] for every import of project module b by product module a."""
    modules = python_files(root)
    edges = {m: imported_modules(m, p, modules) for m, p in modules.items() if is_product(p, root)}
    return modules, edges


def layering_violations(root):
    """'file:line: a (floor) imports b (floor)' for every import that ALLOWED does not permit."""
    modules, edges = import_graph(root)
    problems = []
    for module, targets in sorted(edges.items()):
        floor = floor_of(module, modules[module], root)
        for line, target in targets:
            target_floor = floor_of(target, modules[target], root)
            if target_floor not in ALLOWED[floor]:
                rel = modules[module].relative_to(root)
                problems.append(f"{rel}:{line}: {module} ({floor}) imports {target} ({target_floor}); "
                                f"{floor} may import only {', '.join(sorted(ALLOWED[floor]))}")
    return problems


def strongly_connected(nodes, successors):
    """Tarjan's strongly connected components of size > 1 or with a self-loop, iteratively."""
    index, low, on_stack, stack, components = {}, {}, set(), [], []
    for start in nodes:
        if start in index:
            continue
        work = [(start, iter(successors[start]))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while not component or component[-1] != node:
                        component.append(stack.pop())
                        on_stack.discard(component[-1])
                    if len(component) > 1 or node in successors[node]:
                        components.append(sorted(component))
            elif child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(successors[child])))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return components


def one_cycle(component, successors):
    """A shortest cycle through the first module of a strongly connected component (a list that
    starts and ends with that module)."""
    start = component[0]
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        nxt = []
        for node in frontier:
            for child in successors[node]:
                if child == start:
                    return paths[node] + [start]
                if child in component and child not in paths:
                    paths[child] = paths[node] + [child]
                    nxt.append(child)
        frontier = nxt
    return [start]


def import_cycles(root):
    """One line per import cycle among product modules: 'a (file:line) -> b (file:line) -> a'."""
    modules, edges = import_graph(root)
    successors = {m: sorted({t for _, t in targets if t in edges}) for m, targets in edges.items()}
    reports = []
    for component in strongly_connected(sorted(successors), successors):
        cycle = one_cycle(component, successors)
        steps = []
        for a, b in zip(cycle, cycle[1:]):
            line = min(line for line, t in edges[a] if t == b)
            steps.append(f"{a} ({modules[a].relative_to(root)}:{line})")
        reports.append(" -> ".join(steps + [cycle[-1]]))
    return reports


def long_functions(root, limit=MAX_FUNCTION_LINES):
    """'file:line name (N lines)' for every product function or method, nested ones included,
    longer than ``limit`` lines (end_lineno - lineno + 1)."""
    found = []
    for path in python_files(root).values():
        if not is_product(path, root):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > limit:
                    found.append(f"{path.relative_to(root)}:{node.lineno} {node.name} ({length} lines)")
    return sorted(found)


def imports_between_test_modules(root):
    """'file:line: a imports b' for every tests/test_*.py that imports another tests/test_*.py."""
    modules = python_files(root)
    found = []
    for module, path in sorted(modules.items()):
        if floor_of(module, path, root) != "test modules":
            continue
        for line, target in imported_modules(module, path, modules):
            if floor_of(target, modules[target], root) == "test modules":
                found.append(f"{path.relative_to(root)}:{line}: {module} imports {target}")
    return found


# ---- the repository ----

def test_imports_only_go_down_the_floors():
    problems = layering_violations(REPO)
    assert not problems, "imports against the layering:\n" + "\n".join(problems)


def test_no_import_cycle():
    cycles = import_cycles(REPO)
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_no_product_function_over_80_lines():
    found = long_functions(REPO)
    assert not found, f"functions over {MAX_FUNCTION_LINES} lines:\n" + "\n".join(found)


def test_no_test_module_imports_another():
    found = imports_between_test_modules(REPO)
    assert not found, "shared test code belongs in conftest.py or tests/helpers.py:\n" + "\n".join(found)


def test_the_walk_sees_every_floor():
    """The checks above pass vacuously if the walk finds nothing: it sees each floor's modules."""
    modules, edges = import_graph(REPO)
    floors = {floor_of(m, modules[m], REPO) for m in edges}
    assert {"util", "options", "data", "models", "concern", "scripts", "benchmarks", "entry"} <= floors
    assert {"util.color", "train", "models.networks", "scripts.run_entry_points"} <= set(edges)
    assert "tests.helpers" not in edges  # tests/ is not product code


# ---- the checkers on a synthetic tree ----

def write_tree(root, files):
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


def function_of(lines):
    """Source of a function ``f`` that spans exactly ``lines`` lines."""
    return "def f():\n" + "    x = 0\n" * (lines - 2) + "    return x\n"


SYNTHETIC = {
    "util/__init__.py": "",
    "util/color.py": "def lab():\n    from data import datasets  # deferred upward import\n",
    "util/image.py": "from util import color\n",
    "options/__init__.py": "from util.color import lab\n",
    "data/__init__.py": "",
    "data/datasets.py": "import util.image\n",
    "data/loop_a.py": "def f():\n    import data.loop_b\n",
    "data/loop_b.py": "from data.loop_a import f\n",
    "models/__init__.py": "",
    "models/nets.py": "from . import heads\nimport training.engine\n",
    "models/heads.py": "from models.nets import something\n",
    "training/__init__.py": "",
    "training/engine.py": "from data import datasets\nimport train\n",
    "scripts/__init__.py": "",
    "scripts/tool.py": "import train\nimport numpy\n",
    "benchmarks/__init__.py": "",
    "benchmarks/bench.py": "from tests import helpers, test_golden\nfrom tests.test_golden import GOLDEN\n",
    "tests/__init__.py": "",
    "tests/helpers.py": "",
    "tests/test_golden.py": "GOLDEN = 1\n",
    "tests/test_other.py": "from tests.test_golden import GOLDEN\nfrom tests import helpers\n",
    "train.py": "import models.nets\n" + function_of(81) + function_of(80),
    "venv/pyvenv.cfg": "",
    "venv/lib/bad.py": "import train\n" + function_of(200),
}


def test_layering_check_reports_upward_imports(tmp_path):
    write_tree(tmp_path, SYNTHETIC)
    found = [p.split(";")[0] for p in layering_violations(tmp_path)]
    assert found == [
        "benchmarks/bench.py:1: benchmarks.bench (benchmarks) imports tests.test_golden (test modules)",
        "benchmarks/bench.py:2: benchmarks.bench (benchmarks) imports tests.test_golden (test modules)",
        "models/nets.py:2: models.nets (models) imports training.engine (concern)",
        "scripts/tool.py:1: scripts.tool (scripts) imports train (entry)",
        "training/engine.py:2: training.engine (concern) imports train (entry)",
        "util/color.py:2: util.color (util) imports data.datasets (data)",
    ]


def test_cycle_check_reports_plain_relative_and_deferred_cycles(tmp_path):
    write_tree(tmp_path, SYNTHETIC)
    assert import_cycles(tmp_path) == [
        "data.datasets (data/datasets.py:1) -> util.image (util/image.py:1) -> util.color (util/color.py:2) "
        "-> data.datasets",
        "data.loop_a (data/loop_a.py:2) -> data.loop_b (data/loop_b.py:1) -> data.loop_a",
        "models.heads (models/heads.py:1) -> models.nets (models/nets.py:1) -> models.heads",
    ]


def test_length_check_reports_an_81_line_function_only(tmp_path):
    write_tree(tmp_path, SYNTHETIC)
    assert long_functions(tmp_path) == ["train.py:2 f (81 lines)"]


def test_test_module_check_reports_imports_between_test_modules(tmp_path):
    write_tree(tmp_path, SYNTHETIC)
    assert imports_between_test_modules(tmp_path) == [
        "tests/test_other.py:1: tests.test_other imports tests.test_golden"]
