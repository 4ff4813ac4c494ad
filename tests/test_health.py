"""Health checks: each fires on a run that should trigger it, once, and stays silent on a healthy one."""

import json

import pytest
from synthetic import SMALL_RUN, make_data_dir

from electra.pretraining.health import MARGIN_FLOOR, PLATEAU_BAND, HealthMonitor
from electra.pretraining.pretrain import pretrain

UNIGRAM = 6.2


def _monitor(**kw):
    return HealthMonitor(max_steps=kw.pop("max_steps", 1000), warmup_steps=kw.pop("warmup_steps", 100),
                         mask_prob=0.15, unigram_entropy=UNIGRAM, detector=True, log_every=10, **kw)


def _record(step, margin=0.05, corrupted=5.0, replaced=0.13):
    return {"step": step, "disc_margin": margin, "disc_auc": 0.5 + 2 * margin, "corrupted_loss": corrupted,
            "replaced_frac": replaced, "disc_loss": 0.4}


def _run(monitor, records):
    return [w for r in records for w in monitor.observe(r)]


def _healthy(step):
    return _record(step)


@pytest.mark.parametrize("check, stuck", [
    ("discriminator_stalled", dict(margin=MARGIN_FLOOR / 2)),
    ("generator_at_unigram", dict(corrupted=UNIGRAM - PLATEAU_BAND / 2)),
    ("generator_too_strong", dict(replaced=0.03)),
])
def test_each_check_fires_once_when_its_condition_holds_for_a_span(check, stuck):
    m = _monitor()
    warnings = _run(m, [_record(s, **stuck) for s in range(10, 1001, 10)])
    assert [w["check"] for w in warnings] == [check]  # once, and no other check
    w = warnings[0]
    assert w["event"] == "warning" and "--set" in w["message"]  # a concrete suggestion
    # It fires once the condition has held for a whole span after the start (20% of the run, after warm-up).
    assert w["step"] == m.start + m.span


def test_healthy_run_and_short_dips_stay_silent():
    assert _run(_monitor(), [_healthy(s) for s in range(10, 1001, 10)]) == []
    # A stall shorter than the span (here 90 of 100 steps) is not reported ...
    records = [_record(s, margin=0.0 if 500 < s <= 590 else 0.05) for s in range(10, 1001, 10)]
    assert _run(_monitor(), records) == []
    # ... nor one that ends before the checks start (the first transient, during the warm-up).
    early = [_record(s, margin=0.0 if s <= 200 else 0.05) for s in range(10, 1001, 10)]
    assert _run(_monitor(), early) == []


def test_a_monitor_that_saw_only_part_of_the_span_waits():
    m = _monitor()
    # A run resumed at step 240: its first record (250) covers steps 241-250; the span of 100 is covered at 340.
    assert _run(m, [_record(s, margin=0.0) for s in range(250, 340, 10)]) == []
    assert [w["step"] for w in _run(m, [_record(s, margin=0.0) for s in range(340, 400, 10)])] == [340]


def test_mlm_runs_are_not_checked_for_a_discriminator():
    m = HealthMonitor(max_steps=1000, warmup_steps=100, mask_prob=0.15, unigram_entropy=UNIGRAM, detector=False,
                      log_every=10)
    records = [{"step": s, "corrupted_loss": UNIGRAM, "disc_margin": 0.0, "replaced_frac": 0.0}
               for s in range(10, 1001, 10)]
    assert [w["check"] for w in _run(m, records)] == ["generator_at_unigram"]


def test_a_stalled_run_logs_and_prints_the_warning(tmp_path, capsys):
    # A discriminator that cannot learn (weight 0 on its loss) stays at the label entropy.
    run = pretrain(make_data_dir(tmp_path / "data"), tmp_path / "run", preset="tiny", max_steps=150,
                   overrides=SMALL_RUN + ["train.disc_weight=0", "train.log_every=10", "train.eval_every=150",
                                          "train.save_every=150", "train.warmup_steps=10"], progress=True)
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    warnings = [r for r in records if r.get("event") == "warning"]
    assert "discriminator_stalled" in [w["check"] for w in warnings]
    assert "discriminator has known no more than the replaced fraction" in capsys.readouterr().err


def test_a_warning_suggests_only_what_the_run_does_not_do_yet():
    def message(**kw):
        m = _monitor(**kw)
        fired = [w for step in range(10, 1001, 10) for w in m.observe(_record(step, corrupted=UNIGRAM))]
        return next(w["message"] for w in fired if w["check"] == "generator_at_unigram")
    paper = message()
    assert "--recipe small_budget" in paper and "hidden_fraction=1.0" in paper and "short_seq_length" in paper
    shipped = message(recipe="small_budget", generator_fraction=1.0)
    assert "short_seq_length" in shipped and "--recipe" not in shipped and "hidden_fraction" not in shipped
    everything = message(recipe="small_budget", generator_fraction=1.0, length_warmup=True)
    assert "already uses the remedies we know" in everything
