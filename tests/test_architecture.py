"""The layout docs/architecture.md describes (issue 24): modules in packages by stage, no two modules of the
same name, imports that run one way, and every path the page names present."""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "electra"


def module_names() -> dict[str, Path]:
    return {".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): p
            for p in PACKAGE.rglob("*.py")}


def import_graph() -> dict[str, set[str]]:
    """Module -> the electra modules it imports anywhere in its source (lazy imports inside functions too)."""
    modules = module_names()
    graph = {m: set() for m in modules}
    for m, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("electra"):
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            graph[m] |= {t for t in targets if t in modules and t not in (m, "electra")}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(u: str) -> list[str] | None:
        state[u] = 1
        path.append(u)
        for v in sorted(graph[u]):
            if state.get(v) == 1:
                return path[path.index(v):] + [v]
            if v not in state and (found := visit(v)):
                return found
        path.pop()
        state[u] = 2
        return None

    for m in sorted(graph):
        if m not in state and (found := visit(m)):
            return found
    return None


def test_imports_run_one_way():
    assert find_cycle(import_graph()) is None


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_two_modules_share_a_name_and_the_top_level_is_small():
    files = [p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py"]
    names = [p.name for p in files]
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert top == ["__init__.py", "__main__.py", "api.py", "cli.py", "config.py", "errors.py", "model.py", "study.py"]
    for package in [p for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__"]:
        doc = ast.get_docstring(ast.parse((package / "__init__.py").read_text()))
        assert doc, f"{package.name}/__init__.py says what the package holds"


def test_every_path_the_architecture_page_names_exists():
    page = (ROOT / "docs" / "architecture.md").read_text()
    paths = set(re.findall(r"`((?:electra|benchmarks|tests|docs)/[\w/.+-]+)`", page))
    assert len(paths) > 30
    missing = sorted(p for p in paths if not (ROOT / p).exists())
    assert not missing
    tree = page[page.index("```\nelectra/"):page.index("```", page.index("```\nelectra/") + 3)]
    listed = set(re.findall(r"^\s+([\w]+\.py)\b", tree, re.M))
    actual = {p.name for p in PACKAGE.rglob("*.py") if p.name not in ("__init__.py", "__main__.py")}
    assert listed == actual, (sorted(actual - listed), sorted(listed - actual))
