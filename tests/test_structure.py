"""The package's shape: no import circles, not even through function-level imports."""

import ast
import pathlib

ROOT = pathlib.Path(__file__).parent.parent
PACKAGES = ("glat_core", "glat_tf", "train", "export", "edge_runtime")
TRAINING_SIDE = ("tensorflow", "keras", "glat_tf", "train", "export")


def module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: pathlib.Path, modules: set) -> set:
    """Project modules `path` imports anywhere in its body (top level or inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from pkg import sub` imports the submodule pkg.sub when there is one.
            names = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules
                     else node.module for a in node.names]
        else:
            continue
        found.update(n for n in names if n in modules)
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


def test_edge_runtime_imports_nothing_of_the_training_side():
    graph = project_graph()
    for module, deps in graph.items():
        if module.startswith("edge_runtime"):
            assert all(d.split(".")[0] in ("edge_runtime", "glat_core") for d in deps), (module, deps)


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
