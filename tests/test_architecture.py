"""The layout docs/architecture.md describes: modules in packages by stage, no two modules of the same name,
imports that run one way, and every path the page names present. And the repository explains itself: every
document its code, tests, experiments, benchmarks and docs cite is in it, every heading cited is there, and no
comment leans on an issue tracker a reader cannot see."""

import ast
import io
import os
import re
import tokenize
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


def package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The module graph seen from above: electra.pretraining.step -> electra.pretraining, and so on; a top-level
    module is its own node. Edges inside one package are dropped."""
    def package(module: str) -> str:
        return ".".join(module.split(".")[:2])

    packages: dict[str, set[str]] = {}
    for module, targets in graph.items():
        packages.setdefault(package(module), set()).update(package(t) for t in targets)
    return {p: targets - {p} for p, targets in packages.items()}


def test_packages_import_one_way_and_nothing_inside_imports_the_package_root():
    """No two packages import each other, through any path; and no module imports ``electra`` itself (the root's
    lazy attributes import the API, so a module inside that did would go round through it)."""
    graph = import_graph()
    assert find_cycle(package_graph(graph)) is None
    for module, path in module_names().items():
        if module == "electra":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            root = (isinstance(node, ast.ImportFrom) and node.module == "electra" and node.level == 0) or \
                (isinstance(node, ast.Import) and any(a.name == "electra" for a in node.names))
            assert not root, f"{path.relative_to(ROOT)}:{node.lineno} imports the package root"


def test_the_page_shows_the_package_graph_as_the_source_has_it():
    """docs/architecture.md's block of each package and what it imports is the graph built from the source (every
    package and top-level module but the root and __main__), listed bottom up: each imports only lines above it."""
    page = (ROOT / "docs" / "architecture.md").read_text()
    block = page[page.index("source (the same test checks this block against it):"):]
    block = block[block.index("```") + 3:]
    block = block[:block.index("```")].strip()
    shown = {}
    for line in block.splitlines():
        name, _, targets = line.partition(" ")
        shown["electra." + name] = set() if "(nothing)" in targets else {"electra." + t.strip()
                                                                         for t in targets.split(",")}
    actual = {p: t for p, t in package_graph(import_graph()).items() if p not in ("electra", "electra.__main__")}
    assert shown == actual
    above = []
    for name in shown:  # dicts keep the page's order
        assert shown[name] <= set(above), name
        above.append(name)


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for target in graph[todo.pop()] - seen:
            seen.add(target)
            todo.append(target)
    return seen


def test_training_never_imports_a_measuring_instrument():
    """The step and what builds it (setup, the objective, the batches and masking) reach neither the held-out yardstick nor the
    held-out evaluation: they measure training, training does not depend on them."""
    graph = import_graph()
    for module in ("electra.pretraining.step", "electra.pretraining.setup", "electra.pretraining.objective",
                   "electra.pretraining.batches", "electra.pretraining.word_masking"):
        assert not reachable(graph, module) & {"electra.pretraining.yardstick", "electra.pretraining.evaluation"}, module


def test_the_package_graph_sees_a_circle_between_packages():
    modules = {"electra.interop.hf": {"electra.pretraining.objective"}, "electra.pretraining.objective": set(),
               "electra.pretraining.setup": {"electra.interop.hf"}, "electra.interop.card": set()}
    assert find_cycle(modules) is None  # no module cycle ...
    assert find_cycle(package_graph(modules)) == ["electra.interop", "electra.pretraining", "electra.interop"]


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_two_modules_share_a_name_and_the_top_level_is_small():
    files = [p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py"]
    names = [p.name for p in files]
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert top == ["__init__.py", "__main__.py", "api.py", "cli.py", "config.py", "errors.py", "model.py", "study.py",
                   "version.py"]
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


# --------------------------------------------------------------------------- citations

# Where a reader meets prose: the package, tests, experiments and benchmarks (.py, .sh) and the docs (.md).
CITING_FOLDERS = ("electra", "tests", "experiments", "benchmarks", "docs")
# A dated log: its entries stay as they were written, tracker numbers included (the issue-number check skips it).
KEPT_AS_WRITTEN = {"benchmarks/RESULTS.md"}
# Documents of other projects that may be cited by bare name. None is needed today: cite another project's file
# by its URL (a path after "://" is not read as a local one) or by "owner/name" and the file's name in words.
EXTERNAL_DOCUMENTS: frozenset[str] = frozenset()
# A .md path: letters, digits, _ . / + - and ending in ".md"; not the tail of a longer path or of a URL.
MD_PATH = re.compile(r"(?<![\w./:+-])([\w./+-]*\w\.md)\b")
# A cited heading: `docs/design.md, "Generator size"` (the quote may wrap onto the next comment line).
CITED_HEADING = re.compile(r"(?<![\w./:+-])([\w./+-]*\w\.md),?\s+\(?\"([^\"]{1,160})\"")
# "issue" or "issues" (any case), then spaces, "#" or "-", then digits; also across a wrapped comment line.
ISSUE_NUMBER = re.compile(r"\bissues?[\s#-]*\d+", re.I)
# Projects whose trackers are public. A bare "electra" is not one of them: it is this project's name, so Google's
# code is cited as "google-research/electra issue 39".
EXTERNAL_PROJECTS = ("transformers", "tokenizers", "datasets", "safetensors", "PyTorch", "pytorch", "torch",
                     "ONNX Runtime", "onnxruntime", "ONNX", "onnx", "TorchServe", "TEI", "text-embeddings-inference",
                     "FastAPI", "uvicorn", "jieba", "pyarrow", "TensorBoard", "wandb")
# What may stand right before "issue N": an "owner/name" repository or a named project, then optionally "'s"
# and "GitHub" (e.g. "onnxruntime issue 11286", "TEI's GitHub issues 123").
ISSUE_OWNER = re.compile(r"(?<![\w.-])(?:[\w.-]+/[\w.-]+|" + "|".join(re.escape(p) for p in EXTERNAL_PROJECTS) + r")"
                         r"(?:'s)?(?:\s+GitHub)?\s*$")


def citing_files() -> list[Path]:
    files = [ROOT / "README.md"]
    for folder in CITING_FOLDERS:
        for parent, dirs, names in os.walk(ROOT / folder):
            dirs[:] = sorted(d for d in dirs if not d.startswith((".", "__")) and not d.endswith(".egg-info"))
            files += [Path(parent) / n for n in sorted(names) if n.endswith((".py", ".sh", ".md"))]
    return files


def prose(path: Path, text: str) -> str:
    """What a reader reads as prose: all of a .md file; the comments of a .sh file; the comments and docstrings of
    a .py file. Code (a file name a test writes, a path a script reads) is not a citation."""
    if path.suffix == ".md":
        return text
    if path.suffix == ".sh":
        return "\n".join(m.group(1) for m in re.finditer(r"(?:^|\s)#+(.*)", text, re.M))
    parts = [t.string.lstrip("#") for t in tokenize.generate_tokens(io.StringIO(text).readline)
             if t.type == tokenize.COMMENT]
    parts += [doc for node in ast.walk(ast.parse(text))
              if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
              and (doc := ast.get_docstring(node))]
    return "\n".join(parts)


def resolve_document(cited: str, citing: Path) -> Path | None:
    """The repository file a cited path names, relative to the root or to the citing file's folder; None if it
    names none (absent, outside the checkout, or in the shared data folder beside it, which is not ours)."""
    for base in (ROOT, citing.parent):
        target = (base / cited).resolve()
        if (target.is_file() and target.is_relative_to(ROOT)
                and target.relative_to(ROOT).parts[0] not in ("shared", ".git")):
            return target
    return None


def missing_documents(citing: Path, text: str) -> list[str]:
    return [cited for cited in MD_PATH.findall(prose(citing, text))
            if cited not in EXTERNAL_DOCUMENTS and resolve_document(cited, citing) is None]


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def squash(text: str) -> str:
    return " ".join(text.split())


def headings(document: Path) -> list[str]:
    """The headings of a Markdown page and its bold paragraph leads (`**Health checks** (...)`), as one line each."""
    text = read(document)
    return ([squash(h) for h in re.findall(r"^#+\s+(.+)$", text, re.M)]
            + [squash(b) for b in re.findall(r"\*\*(.+?)\*\*", text, re.S)])


def unknown_headings(citing: Path, text: str) -> list[str]:
    found = []
    for cited, heading in CITED_HEADING.findall(prose(citing, text)):
        document = resolve_document(cited, citing)
        if document is not None and not any(h.startswith(squash(heading)) for h in headings(document)):
            found.append(f'{cited}, "{squash(heading)}"')
    return found


def untraceable_issue_numbers(text: str) -> list[str]:
    """Issue numbers not preceded by the project whose tracker holds them (comment markers of wrapped lines and
    line breaks read as spaces)."""
    found = []
    for m in ISSUE_NUMBER.finditer(text):
        before = squash(re.sub(r"\n\s*#+", " ", text[max(0, m.start() - 120):m.start()]))
        if not ISSUE_OWNER.search(before + " "):
            found.append(squash(text[max(0, m.start() - 30):m.end()]))
    return found


def test_every_document_cited_is_in_the_repository():
    """Every `*.md` path named in the prose of the package, tests, experiments, benchmarks, docs and README exists
    in the repository (relative to its root or to the citing file's folder). A design note kept outside the
    checkout (a path into ../shared or an absolute one) means nothing to a reader of the repository."""
    files = citing_files()
    assert len(files) > 100
    missing = {str(f.relative_to(ROOT)): m for f in files if (m := missing_documents(f, read(f)))}
    assert not missing


def test_every_heading_cited_is_in_its_document():
    """A citation such as `docs/design.md, "Generator size"` names the start of a heading or of a bold paragraph
    lead of that page."""
    unknown = {str(f.relative_to(ROOT)): u for f in citing_files() if (u := unknown_headings(f, read(f)))}
    assert not unknown


def test_issue_numbers_name_their_project():
    """This project has no public tracker: a comment or page says what a thing is, not which issue asked for it.
    An issue number ("issue N", "Issue #N", "issues N") is allowed only right after the project whose tracker
    holds it: an "owner/name" repository ("google-research/electra issue 39") or a project named in
    EXTERNAL_PROJECTS ("onnxruntime issue 11286"), optionally followed by "'s" and "GitHub"."""
    found = {str(f.relative_to(ROOT)): u for f in citing_files()
             if str(f.relative_to(ROOT)) not in KEPT_AS_WRITTEN and (u := untraceable_issue_numbers(read(f)))}
    assert not found


def test_the_citation_checks_catch_bad_citations():
    here = ROOT / "electra" / "config.py"
    n = 21  # built at run time, so this file's own text holds no bare issue number
    assert missing_documents(here, "# the notes (../shared/NOTES.md, part 3)\nx = 1\n") == ["../shared/NOTES.md"]
    assert missing_documents(here, '"""See /work/shared/notes.md and docs/design.md."""\n') == ["/work/shared/notes.md"]
    url = "https://github.com/google-research/electra/blob/master/README.md"
    assert missing_documents(here, f"# docs/electra.md; {url}\n") == []
    assert missing_documents(here, 'CARD = "notes.md"  # a file name in code, not a citation\n') == []
    assert missing_documents(ROOT / "experiments" / "x.sh", "#!/bin/bash\n# results: docs/no_such_page.md\n") == [
        "docs/no_such_page.md"]
    assert unknown_headings(here, '# docs/design.md, "Generator size"; docs/electra.md, "Health\n# checks"\n') == []
    assert unknown_headings(here, '# docs/design.md, "No such heading"\n') == ['docs/design.md, "No such heading"']
    assert untraceable_issue_numbers(f"# Recipes (issue {n}): the paper's\n") == [f"# Recipes (issue {n}"]
    assert untraceable_issue_numbers(f"Issue #{n}, part 3: x") and untraceable_issue_numbers(f"# see electra issue {n}")
    assert untraceable_issue_numbers(f"# Small++ (google-research/electra\n# issue {n}) and onnxruntime issue {n}, "
                                     f"TEI's GitHub issues {n}, huggingface/transformers issue #{n}") == []
    assert untraceable_issue_numbers("an issue's target; issues with masking") == []


def test_the_version_is_pyprojects():
    import tomllib

    from electra.version import __version__

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert __version__ == project["version"]


def test_one_default_batch_runs_through_the_files_the_page_walks(tmp_path):
    """The page's walk is the code's: the pre-training files a default batch and step execute (traced, from the
    stream's next batch to the optimiser step) are the page's table, which lists at most six. Layers below the
    path (config, the data layer's shard reader, runtime/) do not count, as torch does not; of setup.py, which
    builds the Run once, the path may only read the Run's ``step``."""
    import sys as _sys

    from synthetic import make_data_dir

    from electra.pretraining.setup import build_run
    from electra.pretraining.step import train_step
    from electra.runtime.distributed import Dist

    page = (ROOT / "docs" / "architecture.md").read_text()
    walk = page[page.index("## One batch, from a shard to a checkpoint"):page.index("One optimiser step:")]
    table = re.findall(r"^\| \d \| `(electra/[\w/.]+\.py)` \|", walk, re.M)
    assert 4 <= len(table) <= 6 and table[0] == "electra/pretraining/pretrain.py"

    run = build_run(Dist(), make_data_dir(tmp_path / "data"), tmp_path / "run", "tiny", max_steps=2,
                    overrides=["train.batch_size=8"])
    executed: set[str] = set()
    setup_calls: set[str] = set()

    def record(frame, event, arg):
        path = Path(frame.f_code.co_filename)
        if event == "call" and PACKAGE in path.parents:
            executed.add(path.relative_to(ROOT).as_posix())
            if path.name == "setup.py":
                setup_calls.add(frame.f_code.co_name)

    try:
        _sys.setprofile(record)
        try:
            train_step(run, run.batches.next(run.step))
        finally:
            _sys.setprofile(None)
    finally:
        run.close()
    assert setup_calls == {"step"}
    below = ("electra/config.py", "electra/data/", "electra/runtime/", "electra/pretraining/setup.py")
    on_path = {p for p in executed if not p.startswith(below)}
    assert on_path == set(table) - {"electra/pretraining/pretrain.py"}, sorted(on_path)
