"""Sequence-length warm-up: short windows cut from the packed examples for the first steps of pre-training."""

import json

import pytest
import torch
from synthetic import SMALL_RUN as SMALL
from synthetic import make_data_dir

from electra.config import ModelConfig, TrainConfig
from electra.errors import UserError
from electra.model import ElectraEmbeddings
from electra.pretraining.batches import WINDOW_KEY_OFFSET, cut_into_windows
from electra.pretraining.pretrain import pretrain

WARMUP = ["train.short_seq_length=8", "train.short_seq_steps=6"]


def _batch():
    # Row 0: 10 real tokens; row 1: 3 real tokens then padding (pad id 0). T = 10 is not a multiple of 4.
    ids = torch.tensor([[2, 11, 12, 13, 14, 3, 15, 16, 17, 3], [2, 21, 3, 0, 0, 0, 0, 0, 0, 0]])
    types = torch.tensor([[0, 0, 0, 0, 0, 0, 1, 1, 1, 1], [0, 0, 0, 0, 0, 0, 0, 0, 0, 0]])
    return {"input_ids": ids, "attention_mask": (ids != 0).long(), "token_type_ids": types,
            "keys": torch.tensor([40, 41])}


def test_windows_keep_every_real_token_in_order_and_drop_padding_only_windows():
    out = cut_into_windows(_batch(), 4, pad_id=0)
    # Row 0 -> 3 windows (the last holds 2 real tokens and 2 added pads); row 1 -> 1 window, 2 of padding dropped.
    assert out["input_ids"].tolist() == [[2, 11, 12, 13], [14, 3, 15, 16], [17, 3, 0, 0], [2, 21, 3, 0]]
    assert out["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 1, 1], [1, 1, 0, 0], [1, 1, 1, 0]]
    assert out["token_type_ids"].tolist() == [[0, 0, 0, 0], [0, 0, 1, 1], [1, 1, 0, 0], [0, 0, 0, 0]]
    # Each window keeps its tokens' positions in the row (the added padding column reuses the last one).
    assert out["position_ids"].tolist() == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 9, 9], [0, 1, 2, 3]]
    # Each window has its own key, derived from its example's, above every example key.
    assert (out["keys"] - WINDOW_KEY_OFFSET).tolist() == [40 * 3, 40 * 3 + 1, 40 * 3 + 2, 41 * 3]
    batch = _batch()
    real = batch["input_ids"][batch["attention_mask"].bool()]
    assert torch.equal(out["input_ids"][out["attention_mask"].bool()], real)


def test_a_length_that_divides_the_rows_adds_no_padding():
    out = cut_into_windows(_batch(), 5, pad_id=0)
    assert out["input_ids"].tolist() == [[2, 11, 12, 13, 14], [3, 15, 16, 17, 3], [2, 21, 3, 0, 0]]
    assert out["position_ids"].tolist() == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9], [0, 1, 2, 3, 4]]


def test_a_window_sees_the_embeddings_its_tokens_have_in_the_full_row():
    torch.manual_seed(0)
    emb = ElectraEmbeddings(ModelConfig(vocab_size=30, embedding_size=8, hidden_size=8, num_attention_heads=1,
                                        intermediate_size=16, max_position_embeddings=16)).eval()
    batch = _batch()
    out = cut_into_windows(batch, 4, pad_id=0)
    with torch.no_grad():
        full = emb(batch["input_ids"], batch["token_type_ids"])  # (2, 10, E)
        windows = emb(out["input_ids"], out["token_type_ids"], out["position_ids"])  # (4, 4, E)
    real = out["attention_mask"].bool()
    torch.testing.assert_close(windows[real], full[batch["attention_mask"].bool()])


@pytest.mark.parametrize("length,steps", [(8, 0), (0, 5), (1, 5), (-4, 5), (8, -1)])
def test_length_and_steps_are_set_together(length, steps):
    with pytest.raises(UserError, match="short_seq_length"):
        TrainConfig(short_seq_length=length, short_seq_steps=steps).validate()


def test_doubling_schedule_steps_through_equal_stages_below_the_full_length():
    t = TrainConfig(short_seq_length=8, short_seq_steps=1600, short_seq_schedule="doubling")
    # 128 tokens: 4 stages of 400 steps (8, 16, 32, 64), then whole examples
    assert [t.window_length(s, 128) for s in (0, 399, 400, 799, 800, 1199, 1200, 1599, 1600, 5000)] == \
        [8, 8, 16, 16, 32, 32, 64, 64, None, None]
    # 100 tokens is not a power-of-two multiple: still 8..64, never a window of the full length
    t = TrainConfig(short_seq_length=8, short_seq_steps=8, short_seq_schedule="doubling")
    assert [t.window_length(s, 100) for s in range(9)] == [8, 8, 16, 16, 32, 32, 64, 64, None]
    constant = TrainConfig(short_seq_length=8, short_seq_steps=3)
    assert [constant.window_length(s, 128) for s in range(4)] == [8, 8, 8, None]
    with pytest.raises(UserError, match="short_seq_schedule.*doubling"):
        TrainConfig(short_seq_length=8, short_seq_steps=3, short_seq_schedule="linear").validate()


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_data_dir(tmp_path_factory.mktemp("d") / "data")  # 32-token examples


def _train_records(run):
    recs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r for r in recs if "gen_loss" in r}


@pytest.mark.parametrize("schedule", ["constant", "doubling"])  # doubling: 8 for steps 0-2, 16 for 3-5
def test_warm_up_keeps_every_token_changes_training_and_resumes_exactly_across_the_switch(data, tmp_path, schedule):
    warmup = WARMUP + [f"train.short_seq_schedule={schedule}"]
    plain = pretrain(data, tmp_path / "plain", preset="tiny", max_steps=10, overrides=SMALL, progress=False)
    full = pretrain(data, tmp_path / "full", preset="tiny", max_steps=10, overrides=SMALL + warmup, progress=False)
    a, b = _train_records(plain), _train_records(full)
    # The same tokens are seen either way; windows of 8 hold fewer tokens each but more of them.
    assert all(a[s]["tokens_seen"] == b[s]["tokens_seen"] for s in range(1, 11))
    assert a[1]["gen_loss"] != b[1]["gen_loss"] and all(torch.isfinite(torch.tensor(b[s]["gen_loss"])) for s in b)

    # Stop inside the warm-up (step 4), resume: the same losses as the uninterrupted run, past the switch too.
    run = tmp_path / "resumed"
    pretrain(data, run, preset="tiny", max_steps=10, overrides=SMALL + warmup + ["train.stop_at=4"], progress=False)
    pretrain(data, run, resume=True, progress=False)
    c = _train_records(run)
    for s in range(1, 11):
        assert abs(b[s]["gen_loss"] - c[s]["gen_loss"]) <= 1e-5 and abs(b[s]["disc_loss"] - c[s]["disc_loss"]) <= 1e-5


def test_a_window_as_long_as_the_examples_is_refused(data, tmp_path):
    with pytest.raises(UserError, match="must be below the data's 32-token examples"):
        pretrain(data, tmp_path / "run", preset="tiny", max_steps=4,
                 overrides=SMALL + ["train.short_seq_length=32", "train.short_seq_steps=2"], progress=False)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_gradient_accumulation_during_the_warm_up_gives_the_same_losses(data, tmp_path):
    # Micro-batches of 2 of the global 8: the windows cut from 8 examples (32 of 8 tokens, then 16 of 16) are
    # split with their position_ids into 4 micro-batches whose loss sums add up to the whole batch's. Dropout is
    # 0: its masks come from one RNG stream, which micro-batches consume in other shapes.
    warmup = WARMUP + ["train.short_seq_schedule=doubling", "train.max_steps=8", "model.hidden_dropout_prob=0",
                       "model.attention_probs_dropout_prob=0"]
    whole = pretrain(data, tmp_path / "whole", preset="tiny", overrides=SMALL + warmup, progress=False)
    split = pretrain(data, tmp_path / "split", preset="tiny", overrides=SMALL + warmup + ["train.micro_batch_size=2"],
                     progress=False)
    a, b = _train_records(whole), _train_records(split)
    assert sorted(a) == sorted(b) == list(range(1, 9))
    for s in a:
        assert abs(a[s]["gen_loss"] - b[s]["gen_loss"]) <= 1e-5 and abs(a[s]["disc_loss"] - b[s]["disc_loss"]) <= 1e-5
