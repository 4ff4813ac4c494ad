"""``electra study``: compute-matched comparisons of pre-training objectives, as the paper's Figure 3/4.

A grid of cells (arm × FLOPs budget × seed); an arm is an objective with the preset's recipe, or
RECIPE:OBJECTIVE (e.g. ``paper:electra`` against ``small_budget:electra``), optionally named, LABEL=ARM, so that
one objective can appear twice with different ``--set LABEL@KEY=VALUE`` (e.g. ``wwm=electra`` and ``char=electra``
with ``wwm@train.masking=whole_word``). Each cell pre-trains with ``--flops-budget`` (so
the schedule ends exactly when the budget is spent), then fine-tunes the result on every probe task
and records the dev score. The study folder::

    out/study.json                     the grid (written once; a rerun must ask for the same grid)
    out/pretrain/<cell>/               one `electra pretrain` run per cell
    out/finetune/<cell>/<probe>/       one `electra finetune` run per cell and probe
    out/cells/<cell>.json              a finished cell's scores: the unit of resumption
    out/results.csv, out/results.png   every finished cell; score against pre-training FLOPs

Cells run as separate processes (`python -m electra ...`), ``jobs`` at a time, each with
``cores // jobs`` threads, so a crash (or a kill) loses at most the cells in flight: a rerun of the
same command skips finished cells, resumes interrupted pre-training runs from their last checkpoint
and redoes interrupted fine-tuning runs. ``--baseline`` adds a from-scratch fine-tuning per seed
(FLOPs 0), drawn as a horizontal reference.
"""

from __future__ import annotations

import csv
import math
import os
import shutil
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from electra.config import OBJECTIVES, RECIPES
from electra.errors import UserError
from electra.runtime.files import (WriteFailed, atomic_file, claim_output_folder, failure_reason, make_folder,
                                   open_for_appending, read_json_file, read_json_object, write_json)
from electra.runtime.metrics_log import read_metrics

TASK_NAMES = ("classification", "tagging", "qa")
MAX_SEED = 2**32 - 1  # numpy's generators (the data order) take seeds below 2**32
BUDGETS_EXAMPLE, SEEDS_EXAMPLE = "1e14,3e14,1e15", "1,2,3"


def _parse_list(text: str, option: str, example: str, convert, kind: str, plural: str) -> tuple[list[str], list]:
    """The comma-separated items of an option as written, and each converted (``convert``, e.g. float); a
    value ``convert`` refuses is one line naming it (it is not a ``kind``)."""
    items = [item.strip() for item in str(text).split(",")]
    if not any(items):
        raise UserError(f"{option} {text!r}: give one or more comma-separated values, e.g. {option} {example}")
    items, values = [item for item in items if item], []
    for item in items:
        try:
            values.append(convert(item))
        except ValueError:
            raise UserError(f"{option}: {item!r} is not {kind}; give comma-separated {plural}, "
                            f"e.g. {option} {example}") from None
    return items, values


def parse_budgets(text: str) -> list[float]:
    """``--budgets``: comma-separated pre-training FLOPs budgets (``1e14,3e14``), checked by ``check_budgets``."""
    items, budgets = _parse_list(text, "--budgets", BUDGETS_EXAMPLE, float, "a number", "FLOPs budgets")
    return check_budgets(budgets, items)


def check_budgets(budgets: list, items: list[str] | None = None) -> list[float]:
    """Budgets a study can run: at least one, each a positive finite number, no two that would name the same
    cell (equal to 3 significant figures). ``items``: how they were written, for the messages."""
    if not budgets:
        raise UserError(f"--budgets: give one or more positive FLOPs budgets, e.g. --budgets {BUDGETS_EXAMPLE}")
    items = items or [repr(b) for b in budgets]
    seen: dict[str, str] = {}
    for item, b in zip(items, budgets):
        if isinstance(b, bool) or not isinstance(b, (int, float)) or not math.isfinite(b) or b <= 0:
            raise UserError(f"--budgets: {item!r} is not a positive, finite number of FLOPs; give comma-separated "
                            f"FLOPs budgets, e.g. --budgets {BUDGETS_EXAMPLE}")
        key = f"{b:.3g}"
        if key in seen:
            raise UserError(f"--budgets: {seen[key]!r} and {item!r} are the same budget to 3 significant figures "
                            f"(a cell's name shows 3); give each budget once, e.g. --budgets {BUDGETS_EXAMPLE}")
        seen[key] = item
    return [float(b) for b in budgets]


def parse_seeds(text: str) -> list[int]:
    """``--seeds``: comma-separated whole numbers (``1,2,3``), checked by ``check_seeds``."""
    items, seeds = _parse_list(text, "--seeds", SEEDS_EXAMPLE, int, "a whole number", "seeds")
    return check_seeds(seeds, items)


def check_seeds(seeds: list, items: list[str] | None = None) -> list[int]:
    """Seeds a study can run: at least one, each a whole number from 0 to 2**32 - 1, each once. ``items``: how
    they were written, for the messages."""
    if not seeds:
        raise UserError(f"--seeds: give one or more seeds, e.g. --seeds {SEEDS_EXAMPLE}")
    items = items or [repr(s) for s in seeds]
    for i, (item, seed) in enumerate(zip(items, seeds)):
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
            raise UserError(f"--seeds: {item!r} is out of range (a seed is a whole number from 0 to {MAX_SEED}); "
                            f"give comma-separated seeds, e.g. --seeds {SEEDS_EXAMPLE}")
        if seed in seeds[:i]:
            raise UserError(f"--seeds: {seed} is given twice; give each seed once, e.g. --seeds {SEEDS_EXAMPLE}")
    return list(seeds)


def check_jobs(jobs) -> int:
    """``--jobs``: how many cells run at the same time, at least 1."""
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise UserError(f"--jobs {jobs!r}: must be a whole number of at least 1 (the cells run at the same time), "
                        f"e.g. --jobs 2")
    return jobs


def plain_name(name: str) -> bool:
    """Whether ``name`` can name a folder of its own: not empty, not . or .., no / or \\ or control character."""
    return bool(name) and name not in (".", "..") and not any(c in "/\\" or ord(c) < 32 for c in name)


def check_probe_names(probes: list["Probe"]) -> None:
    names = [p.name for p in probes]
    if len(set(names)) != len(names):
        twice = sorted({n for n in names if names.count(n) > 1})
        raise UserError(f"--probe: two probes share the name {twice[0]!r}; name them, NAME=TASK:TRAIN:DEV")


def open_record_folder(out: Path, record: str, settings: dict, kind: str, choose: str, subfolders: tuple) -> None:
    """Make ``out`` the folder of ``settings``, written once to out/``record`` (it makes the folder a ``kind``), or
    reopen it when it holds the same settings; other settings, or a folder of something else, are one line."""
    claim_output_folder(out, overwrite=True)  # a file where the folder should be is one line
    if (out / record).is_file():
        if read_json_file(out / record) != settings:
            raise UserError(f"{out}: holds a different {kind} (see {record}); rerun it with the same options to "
                            f"resume it, or choose another {choose}")
    elif out.exists() and any(out.iterdir()):
        raise UserError(f"{out}: exists and is not a {kind}; choose another {choose}")
    else:
        make_folder(out)
        write_json(out / record, settings)  # first and once; a rerun must match it
    for sub in subfolders:
        make_folder(out / sub)


@dataclass(frozen=True)
class Probe:
    name: str    # e.g. rotten_tomatoes (the train file's folder name)
    task: str
    train: str
    dev: str

    @classmethod
    def parse(cls, text: str) -> "Probe":
        """``TASK:TRAIN:DEV`` or ``NAME=TASK:TRAIN:DEV``. NAME (by default the train file's folder) names the
        probe's folders and columns, so it is a plain name: no / or \\, not . or .."""
        name, _, spec = text.rpartition("=") if "=" in text.split(":")[0] else ("", "", text)
        parts = spec.split(":")
        if len(parts) != 3 or parts[0] not in TASK_NAMES:
            raise UserError(f"--probe {text!r}: expected TASK:TRAIN:DEV with TASK one of {', '.join(TASK_NAMES)}")
        task, train, dev = parts
        for f in (train, dev):
            try:
                is_file = bool(f) and Path(f).is_file()
            except (OSError, ValueError) as e:
                raise UserError(f"--probe {text!r}: cannot read {f!r} ({failure_reason(e)})") from None
            if not is_file:
                raise UserError(f"--probe {text!r}: {f!r} is not a file")
        train_path = Path(train).resolve()
        folder = Path(train).parent.name  # as given (a study's probes are recorded by name in study.json) ...
        if folder == "..":
            folder = train_path.parent.name  # ... but ../train.tsv names its folder, not ".."
        name = name or folder or Path(train).stem
        if not plain_name(name):
            raise UserError(f"--probe {text!r}: the name {name!r} cannot name a folder; give a plain one, "
                            f"NAME=TASK:TRAIN:DEV (e.g. sst=classification:train.tsv:dev.tsv)")
        return cls(name, task, str(train_path), str(Path(dev).resolve()))


@dataclass(frozen=True)
class Cell:
    objective: str
    budget: float   # pre-training FLOPs; 0 = the from-scratch baseline (no pre-training)
    seed: int

    @property
    def name(self) -> str:
        return f"{arm_label(self.objective).replace(':', '-')}-{self.budget:.3g}-s{self.seed}".replace("+", "")

    def pretrain_args(self) -> list[str]:
        """The arm's `electra pretrain` options: OBJECTIVE (the preset's recipe) or RECIPE:OBJECTIVE."""
        recipe, _, objective = self.objective.partition("=")[2].rpartition(":") if "=" in self.objective \
            else self.objective.rpartition(":")
        return [*(["--recipe", recipe] if recipe else []), "--set", f"train.objective={objective}"]


def arm_label(arm: str) -> str:
    """LABEL of LABEL=ARM, else the arm itself."""
    return arm.partition("=")[0] if "=" in arm else arm


def arm_overrides(pretrain_set: list[str], arm: str | None) -> list[str]:
    """The study's ``--set`` values that apply to ``arm``: plain KEY=VALUE to every arm, ARM@KEY=VALUE (or
    LABEL@KEY=VALUE) to that arm only (e.g. ``mlm@train.short_seq_length=8``); ``arm`` None (the from-scratch
    architecture): plain ones."""
    out = []
    for kv in pretrain_set:
        scope, at, rest = kv.partition("@")
        if not at:
            out.append(kv)
        elif "=" not in scope and arm is not None and scope in (arm, arm_label(arm)):
            out.append(rest)
    return out


def check_arm(arm: str) -> None:
    """An arm of ``--objectives``: [LABEL=]OBJECTIVE or [LABEL=]RECIPE:OBJECTIVE (e.g. paper:electra,
    wwm=small_budget:electra)."""
    label, named, spec = arm.partition("=") if "=" in arm else ("", "", arm)
    recipe, _, objective = spec.rpartition(":")
    if objective not in OBJECTIVES or (recipe and recipe not in RECIPES) or \
            (named and (not label or any(c in label for c in "@:/, "))):
        raise UserError(f"--objectives: {arm!r} is not [LABEL=]OBJECTIVE or [LABEL=]RECIPE:OBJECTIVE with OBJECTIVE "
                        f"one of {', '.join(OBJECTIVES)} and RECIPE one of {', '.join(RECIPES)} (a LABEL has no "
                        f"@ : / , or space)")


def _electra(args: list[str], threads: int, log: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    try:
        f = open_for_appending(log)
    except OSError as e:
        raise WriteFailed(log, e) from None
    with f:
        proc = subprocess.run([sys.executable, "-m", "electra", *args, "--quiet"], stdout=f, stderr=subprocess.STDOUT,
                              env=env)
    if proc.returncode != 0:
        tail = log.read_text(errors="replace").strip().splitlines()[-1:] or ["(no output)"]
        raise RuntimeError(f"`electra {args[0]}` failed (exit {proc.returncode}): {tail[0]}; full log: {log}")


def run_cell(cell: Cell, out: Path, data: str, preset: str, probes: list[Probe], pretrain_set: list[str],
             finetune_set: list[str], threads: int) -> dict:
    """Pre-train (or resume) and fine-tune one cell; returns and saves its scores."""
    logs = out / "logs"
    log = logs / f"{cell.name}.log"
    run = out / "pretrain" / cell.name
    if cell.budget > 0:
        if (run / "config.json").is_file():
            _electra(["pretrain", "--data", data, "--out", str(run), "--resume"], threads, log)
        else:
            shutil.rmtree(run, ignore_errors=True)  # a run killed before its config was written
            _electra(["pretrain", "--preset", preset, "--data", data, "--out", str(run),
                      *cell.pretrain_args(), "--set", f"train.flops_budget={cell.budget}",
                      "--set", f"train.seed={cell.seed}",
                      *[a for kv in arm_overrides(pretrain_set, cell.objective) for a in ("--set", kv)]],
                     threads, log)
        records = read_metrics(run / "metrics.jsonl")  # a torn last line is skipped (and reported)
        spent = max((r["flops"] for r in records if isinstance(r.get("flops"), (int, float))), default=0)
        steps = max((r["step"] for r in records if isinstance(r.get("step"), (int, float))), default=0)
    else:
        spent, steps = 0, 0
    result = {**asdict(cell), "cell": cell.name, "pretrain_flops": spent, "pretrain_steps": steps,
              "scores": probe_cell(cell, cell_model(out, cell), probes, finetune_set, out, threads, log)}
    write_json(out / "cells" / f"{cell.name}.json", result)  # atomic: the cell counts as done only once this exists
    return result


def cell_model(study: Path, cell: Cell) -> Path:
    """What a cell fine-tunes from: its pre-training run, or for the from-scratch baseline the architecture run."""
    return study / "pretrain" / (cell.name if cell.budget > 0 else "architecture")


def probe_cell(cell: Cell, model: Path, probes: list[Probe], finetune_set: list[str], out: Path, threads: int,
               log: Path) -> dict:
    """Fine-tune ``model`` on every probe (into out/finetune/<cell>/<probe>/) with the cell's seed; its scores."""
    scores = {}
    for probe in probes:
        ft = out / "finetune" / cell.name / probe.name
        shutil.rmtree(ft, ignore_errors=True)  # fine-tuning is short: an interrupted one is redone
        extra = ["--set", "init=scratch"] if cell.budget == 0 else []
        _electra(["finetune", "--model", str(model), "--task", probe.task, "--train", probe.train, "--dev", probe.dev,
                  "--out", str(ft), "--set", f"seed={cell.seed}", *extra,
                  *[a for kv in finetune_set for a in ("--set", kv)]], threads, log)
        res = read_json_object(ft / "results.json")
        scores[probe.name] = {"metric": res["primary_metric"], "score": res["seeds"][0][res["primary_metric"]],
                              "collapsed": bool(res["collapsed_seeds"])}
    return scores


def _architecture_source(out: Path, data: str, preset: str, pretrain_set: list[str], threads: int) -> None:
    """The baseline needs the architecture and tokenizer without pre-training: a 1-step run, never used
    for its weights (fine-tuning with init=scratch re-initialises everything)."""
    run = out / "pretrain" / "architecture"
    if not (run / "checkpoints").is_dir():
        shutil.rmtree(run, ignore_errors=True)
        _electra(["pretrain", "--preset", preset, "--data", data, "--out", str(run), "--max-steps", "1",
                  *[a for kv in arm_overrides(pretrain_set, None) for a in ("--set", kv)]], threads,
                 out / "logs" / "architecture.log")


def seeds_label(scores_per_budget: list[list[float]]) -> str:
    """'mean of 3 seeds', or 'mean of 1–3 seeds' while a grid is still filling in at some budgets."""
    counts = sorted({len(s) for s in scores_per_budget})
    return f"mean of {counts[0] if len(counts) == 1 else f'{counts[0]}–{counts[-1]}'} seeds"


def write_results(out: Path, probes: list[Probe]) -> tuple[Path, Path | None]:
    """results.csv (one row per cell and probe) and results.png (score against FLOPs, per objective)."""
    rows = []
    for path in sorted((out / "cells").glob("*.json")):
        c = read_json_object(path, "a study cell (a JSON object)")
        try:
            rows += [{"objective": c["objective"], "budget": float(c["budget"]), "seed": c["seed"],
                      "pretrain_flops": c["pretrain_flops"], "pretrain_steps": c["pretrain_steps"], "probe": name,
                      "metric": s["metric"], "score": float(s["score"]), "collapsed": s["collapsed"]}
                     for name, s in c["scores"].items()]
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise UserError(f"{path}: not a finished study cell ({type(e).__name__}: {e}); delete it and rerun the "
                            f"study to redo that cell") from None
    csv_path = out / "results.csv"
    with atomic_file(csv_path, text=True) as f:
        writer = csv.DictWriter(f, fieldnames=["objective", "budget", "seed", "pretrain_flops", "pretrain_steps",
                                               "probe", "metric", "score", "collapsed"])
        writer.writeheader()
        writer.writerows(rows)
    if not rows:
        return csv_path, None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    names = [p.name for p in probes if any(r["probe"] == p.name for r in rows)]
    fig, axes = plt.subplots(1, len(names), figsize=(5.5 * len(names), 4), squeeze=False)
    for ax, name in zip(axes[0], names):
        mine = [r for r in rows if r["probe"] == name]
        for objective in sorted({r["objective"] for r in mine if r["budget"] > 0}):
            by_budget: dict[float, list] = {}
            for r in mine:
                if r["objective"] == objective and r["budget"] > 0:
                    by_budget.setdefault(r["budget"], []).append(r)
            budgets = sorted(by_budget)
            x = [statistics.fmean(r["pretrain_flops"] for r in by_budget[b]) for b in budgets]
            scores = [[r["score"] for r in by_budget[b]] for b in budgets]
            mean = [statistics.fmean(s) for s in scores]
            line, = ax.plot(x, mean, marker="o", label=f"{objective} ({seeds_label(scores)})")
            ax.fill_between(x, [min(s) for s in scores], [max(s) for s in scores], alpha=0.2, color=line.get_color())
        scratch = [r["score"] for r in mine if r["budget"] == 0]
        if scratch:
            ax.axhline(statistics.fmean(scratch), color="grey", linestyle="--",
                       label=f"from scratch (mean of {len(scratch)})")
        ax.set_xscale("log")
        budgets = sorted({r["budget"] for r in mine if r["budget"] > 0})
        ax.set_xticks(budgets, [f"{b:.2g}" for b in budgets])  # the grid's budgets, not 2x, 3x, ... of a decade
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("pre-training FLOPs")
        ax.set_ylabel(f"dev {mine[0]['metric']}")
        ax.set_title(name)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    png = out / "results.png"
    try:
        with atomic_file(png) as f:
            fig.savefig(f, dpi=120, format="png")
    finally:
        plt.close(fig)
    return csv_path, png


def run_study(out: Path, data: str, preset: str, objectives: list[str], budgets: list[float], seeds: list[int],
              probes: list[Probe], baseline: bool = False, jobs: int = 1, pretrain_set: list[str] | None = None,
              finetune_set: list[str] | None = None) -> tuple[Path, Path | None]:
    out = Path(out)
    pretrain_set, finetune_set = pretrain_set or [], finetune_set or []
    for o in objectives:
        check_arm(o)
    if len({arm_label(o) for o in objectives}) != len(objectives):
        raise UserError(f"--objectives: two arms share a name ({', '.join(objectives)}); label them, LABEL=ARM")
    for kv in pretrain_set:
        scope, at, _ = kv.partition("@")
        if at and "=" not in scope and scope not in objectives and scope not in map(arm_label, objectives):
            raise UserError(f"--set {kv!r}: {scope!r} is not one of the study's arms ({', '.join(objectives)})")
    if not probes:
        raise UserError("give at least one --probe TASK:TRAIN:DEV")
    check_probe_names(probes)
    check_budgets(budgets)
    check_seeds(seeds)
    check_jobs(jobs)
    grid = {"data": str(Path(data).resolve()), "preset": preset, "objectives": objectives, "budgets": budgets,
            "seeds": seeds, "probes": [asdict(p) for p in probes], "baseline": baseline,
            "pretrain_set": pretrain_set, "finetune_set": finetune_set}
    open_record_folder(out, "study.json", grid, "study", "--out", ("pretrain", "finetune", "cells", "logs"))

    # seed by seed, so that a study stopped part-way (or run over several sessions) already compares every
    # arm at every budget on its first seeds; within a seed, the short baseline first
    cells = [c for s in seeds
             for c in ([Cell("scratch", 0.0, s)] if baseline else []) + [Cell(o, b, s) for b in budgets
                                                                          for o in objectives]]
    todo = [c for c in cells if not (out / "cells" / f"{c.name}.json").is_file()]
    print(f"study: {len(cells)} cells ({len(cells) - len(todo)} done), {len(probes)} probe(s), {jobs} at a time")
    threads = threads_per_job(jobs)
    if any(c.budget == 0 for c in todo):
        _architecture_source(out, data, preset, pretrain_set, threads)

    def finish(cell: Cell) -> str:
        r = run_cell(cell, out, data, preset, probes, pretrain_set, finetune_set, threads)
        shown = ", ".join(f"{k} {v['score']:.4f}" for k, v in r["scores"].items())
        return f"{r['pretrain_steps']} steps, {r['pretrain_flops']:.3g} FLOPs; {shown}"

    return run_cells(todo, jobs, finish, out, probes)


def run_cells(cells: list[Cell], jobs: int, finish, out: Path, probes: list[Probe]) -> tuple[Path, Path | None]:
    """``finish(cell)`` for every cell, ``jobs`` at a time (it returns what to print of the cell); a cell that fails
    is reported and the others go on. Then out/results.csv and .png; the failures are one UserError at the end."""
    failures = []

    def work(cell: Cell):
        try:
            print(f"  done {cell.name}: {finish(cell)}", flush=True)
        except RuntimeError as e:
            failures.append(f"{cell.name}: {e}")
            print(f"  FAILED {cell.name}: {e}", flush=True)

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        list(pool.map(work, cells))
    csv_path, png = write_results(out, probes)
    if failures:
        raise UserError(f"{len(failures)} cell(s) failed (first: {failures[0]}); rerun the same command to retry "
                        f"them; finished cells are kept")
    return csv_path, png


def threads_per_job(jobs: int) -> int:
    # the CPUs this process may use (taskset, cgroup cpusets), not the machine's: two studies pinned to one
    # core each must not each start two threads
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cpus // jobs)


# --------------------------------------------------------------------------- re-probing a finished study

def run_reprobe(study: Path, name: str, probes: list[str] | None = None, finetune_set: list[str] | None = None,
                objectives: list[str] | None = None, budgets: list[float] | None = None,
                seeds: list[int] | None = None, jobs: int = 1) -> tuple[Path, Path | None]:
    """Fine-tune a study's finished cells again with other fine-tuning settings (``finetune_set``, applied after
    the study's own) or probes, into STUDY/reprobes/NAME/ (its own finetune/, cells/, logs/, results.csv and
    .png), leaving the study untouched.

    ``probes``: the study's probes by name, or new ones (TASK:TRAIN:DEV); default every probe of the study.
    ``objectives`` (arm names as the study has them, or ``scratch`` for its baseline), ``budgets`` (not applied to
    the baseline) and ``seeds`` choose among the finished cells; default all. reprobe.json records the re-probe
    the first time; a rerun must ask for the same one, and resumes it like the study: finished cells are kept.
    """
    study, finetune_set = Path(study), finetune_set or []
    if not (study / "study.json").is_file():
        raise UserError(f"{study}: not a study (no study.json); give the --out of an `electra study` to re-probe")
    grid = read_json_object(study / "study.json", "a study's grid (a JSON object)")
    if not plain_name(name):
        raise UserError(f"--reprobe {name!r}: the name of a folder under {study / 'reprobes'}; give a plain one, "
                        f"e.g. --reprobe epochs10")
    check_jobs(jobs)
    own = {p["name"]: Probe(**p) for p in grid.get("probes", [])}
    chosen = []
    for text in probes or list(own):
        if ":" in text:
            chosen.append(Probe.parse(text))
        elif text in own:
            chosen.append(own[text])
        else:
            raise UserError(f"--probe {text!r}: not a probe of {study} ({', '.join(own) or 'none'}); name one of "
                            f"them or give a new one, NAME=TASK:TRAIN:DEV")
    check_probe_names(chosen)
    finished = finished_cells(study)
    arms = sorted({"scratch" if c.budget == 0 else c.objective for c in finished})
    for o in objectives or []:
        if not any(_selected(c, [o], None, None) for c in finished):
            raise UserError(f"--objectives: {o!r} has no finished cell in {study} (its arms: {', '.join(arms)})")
    for b in budgets or []:
        if not any(c.budget > 0 and math.isclose(c.budget, b) for c in finished):
            raise UserError(f"--budgets: {b:g} has no finished cell in {study}")
    for seed in seeds or []:
        if not any(c.seed == seed for c in finished):
            raise UserError(f"--seeds: {seed} has no finished cell in {study}")
    cells = [c for c in finished if _selected(c, objectives, budgets, seeds)]
    if not cells:
        raise UserError(f"{study}: no finished cell matches the chosen objectives, budgets and seeds; "
                        f"see {study / 'cells'}")
    for cell in cells:
        if not (cell_model(study, cell) / "checkpoints").is_dir():
            raise UserError(f"{study}: cell {cell.name} has no pre-training run at {cell_model(study, cell)} (a "
                            f"cell copied from another study?); re-probe it in the study that ran it, or leave it out "
                            f"with --objectives, --budgets or --seeds")
    out = study / "reprobes" / name
    settings = {"probes": [asdict(p) for p in chosen], "finetune_set": finetune_set,
                "cells": [c.name for c in cells]}
    open_record_folder(out, "reprobe.json", settings, "re-probe", "--reprobe name", ("finetune", "cells", "logs"))
    todo = [c for c in cells if not (out / "cells" / f"{c.name}.json").is_file()]
    print(f"re-probe {name} of {study}: {len(cells)} cells ({len(cells) - len(todo)} done), {len(chosen)} probe(s), "
          f"{jobs} at a time")
    threads = threads_per_job(jobs)

    def finish(cell: Cell) -> str:
        original = read_json_object(study / "cells" / f"{cell.name}.json")
        scores = probe_cell(cell, cell_model(study, cell), chosen, [*grid.get("finetune_set", []), *finetune_set],
                            out, threads, out / "logs" / f"{cell.name}.log")
        write_json(out / "cells" / f"{cell.name}.json", {**original, "scores": scores})
        return ", ".join(f"{k} {v['score']:.4f}" for k, v in scores.items())

    return run_cells(todo, jobs, finish, out, chosen)


def finished_cells(study: Path) -> list[Cell]:
    """The cells of a study that have finished (cells/<name>.json), as cells."""
    cells = []
    for path in sorted((study / "cells").glob("*.json")):
        c = read_json_object(path, "a study cell (a JSON object)")
        try:
            cells.append(Cell(str(c["objective"]), float(c["budget"]), int(c["seed"])))
        except (KeyError, TypeError, ValueError) as e:
            raise UserError(f"{path}: not a finished study cell ({type(e).__name__}: {e}); delete it and rerun the "
                            f"study to redo that cell") from None
    return cells


def _selected(cell: Cell, objectives: list[str] | None, budgets: list[float] | None, seeds: list[int] | None) -> bool:
    arm = "scratch" if cell.budget == 0 else cell.objective
    return ((objectives is None or arm in objectives or arm_label(arm) in objectives)
            and (budgets is None or cell.budget == 0 or any(math.isclose(cell.budget, b) for b in budgets))
            and (seeds is None or cell.seed in seeds))
