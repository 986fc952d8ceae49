"""The package's shape: no import circles, not even through function-level imports."""

import ast
import pathlib
import re
from tests.paths import ROOT

PACKAGES = ("glat_core", "glat_tf", "train", "export", "edge_runtime")
TRAINING_SIDE = ("tensorflow", "keras", "glat_tf", "train", "export")


def module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def dynamic_imports(tree: ast.AST) -> list[tuple[int, str | None]]:
    """(line, module name or None when not a literal) of every `importlib.import_module(...)`,
    `import_module(...)` and `__import__(...)` call: imports by name that an `import`
    statement would show."""
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not node.args:
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
        if name in ("import_module", "__import__"):
            arg = node.args[0]
            literal = isinstance(arg, ast.Constant) and isinstance(arg.value, str)
            found.append((node.lineno, arg.value if literal else None))
    return found


def imports_of(path: pathlib.Path, modules: set) -> set:
    """Project modules `path` imports anywhere in its body (top level or inside functions),
    by statement or by a call with a literal name (importlib.import_module, __import__)."""
    found = set()
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from pkg import sub` imports the submodule pkg.sub when there is one.
            names = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules
                     else node.module for a in node.names]
        else:
            continue
        found.update(n for n in names if n in modules)
    found.update(name for _, name in dynamic_imports(tree) if name in modules)
    return found


def find_cycle(graph: dict) -> list | None:
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def project_graph() -> dict:
    files = [p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")]
    modules = {module_name(p) for p in files}
    return {module_name(p): imports_of(p, modules) - {module_name(p)} for p in files}


def test_no_module_imports_itself_back_through_others():
    graph = project_graph()
    assert "train.fit" in graph and "export.tflite" in graph  # the walk found the packages
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_the_cycle_finder_finds_a_function_level_circle(tmp_path):
    a = tmp_path / "a.py"
    a.write_text("def f():\n    from b import g\n")
    assert imports_of(a, {"a", "b"}) == {"b"}
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_project_module_imports_by_name():
    """An import by name (importlib, __import__) hides a dependency from every reader and
    from the circle check: the project imports with statements only."""
    files = [p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")]
    found = [f"{p.relative_to(ROOT)}:{line} {name or '<computed name>'}" for p in files
             for line, name in dynamic_imports(ast.parse(p.read_text(encoding="utf-8")))]
    assert not found, found


def test_the_import_reader_sees_imports_by_name(tmp_path):
    a = tmp_path / "a.py"
    a.write_text("import importlib\nfrom importlib import import_module\n"
                 "def f():\n    importlib.import_module('b')\n"
                 "def g():\n    return __import__('c'), import_module('d'), import_module(NAME)\n")
    assert imports_of(a, {"a", "b", "c", "d"}) == {"b", "c", "d"}
    assert [name for _, name in dynamic_imports(ast.parse(a.read_text()))] == ["b", "c", "d", None]
    assert find_cycle({"a": imports_of(a, {"a", "b"}), "b": {"a"}}) == ["a", "b", "a"]


def test_edge_runtime_imports_nothing_of_the_training_side():
    graph = project_graph()
    for module, deps in graph.items():
        if module.startswith("edge_runtime"):
            assert all(d.split(".")[0] in ("edge_runtime", "glat_core") for d in deps), (module, deps)


def test_the_library_imports_nothing_downstream():
    """glat_tf is the library: no module of it imports the commands and artifacts built on
    it (train, export, bench, the edge runtime), not even inside a function."""
    downstream = ("train", "export", "edge_runtime", "bench", "tests")
    for path in sorted((ROOT / "glat_tf").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        names += [n.module for n in ast.walk(tree)
                  if isinstance(n, ast.ImportFrom) and n.module and n.level == 0]
        wrong = sorted({n for n in names if n.split(".")[0] in downstream})
        assert not wrong, (str(path.relative_to(ROOT)), wrong)


def top_level_imports(path: pathlib.Path) -> set:
    """Top packages a module imports when it is imported (not inside its functions)."""
    found = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def test_the_floor_loads_no_tensorflow():
    """glat_core is what the TF-free edge install runs (glat-tag on a LiteRT folder): no
    module of it imports TensorFlow or the training side when imported; its .keras and
    SavedModel backends import them inside the functions that load such a model."""
    floor = sorted((ROOT / "glat_core").rglob("*.py"))
    assert len(floor) >= 6
    for path in floor:
        heavy = top_level_imports(path) & set(TRAINING_SIDE)
        assert not heavy, (path.name, heavy)


def test_the_tests_mirror_the_packages():
    """tests/<package>/ holds a package's tests (cli/ what crosses them); tests/ itself only
    the shared helpers, so a test is found where its code is."""
    tests = ROOT / "tests"
    assert not sorted(p.name for p in tests.glob("test_*.py"))
    folders = {p.parent.name for p in tests.glob("*/test_*.py")}
    assert folders == {*PACKAGES, "bench", "cli"}, folders
    assert all((tests / name / "__init__.py").is_file() for name in folders)


def test_the_architecture_document_names_every_module():
    """docs/ARCHITECTURE.md's module map stays true: each package's modules are named in it
    (as `name.py` or, for sub-packages, `folder/`), and nothing it names is gone."""
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")
    missing = []
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            if path.name == "__init__.py":
                continue
            rel = path.relative_to(ROOT / pkg)
            if rel.parts[0] == "configs":  # presets, named as a folder
                continue
            if f"`{rel.name}`" not in text and f"`{rel.parts[0]}/`" not in text:
                missing.append(str(path.relative_to(ROOT)))
    assert not missing, missing
    named = set(re.findall(r"`([a-z_]+)\.py`", text))
    existing = {p.stem for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}
    assert named <= existing, sorted(named - existing)
