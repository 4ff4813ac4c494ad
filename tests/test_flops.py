"""The analytic FLOP count against a hand calculation and against the paper's ELECTRA-Small."""

from torch import nn

from electra.config import GeneratorConfig, ModelConfig, PretrainConfig, TrainConfig, preset_config
from electra.model import ElectraForPreTraining, count_parameters
from electra.pretraining.flops import encoder_forward_flops, hf_pretrain_flops_per_step, pretrain_flops_per_step


def _tiny_cfg() -> PretrainConfig:
    # Discriminator: V=100, E=16, H=32, I=64, L=2, 4 heads.
    # Generator (fraction 1/4): 1 head, H=8, I=16, L=2, same E and V.
    return PretrainConfig(
        preset="tiny",
        model=ModelConfig(vocab_size=100, embedding_size=16, hidden_size=32, num_hidden_layers=2,
                          num_attention_heads=4, intermediate_size=64),
        generator=GeneratorConfig(hidden_fraction=0.25),
        train=TrainConfig(mask_prob=0.15),
    )


def test_hand_calculation_small_config():
    cfg = _tiny_cfg()
    g = cfg.generator_model_config()
    assert (g.hidden_size, g.num_attention_heads, g.intermediate_size, g.num_hidden_layers) == (8, 1, 16, 2)
    B, T = 2, 10  # N = 20 tokens; default M = round(0.15 * 20) = 3 selected positions

    # ---- discriminator, E=16, H=32, I=64, L=2, T=10, N=20
    # embeddings_project   2*20*16*32            =  20480
    # per layer: qkv       3*2*20*32*32          = 122880
    #            scores    2*20*10*32            =  12800
    #            values    2*20*10*32            =  12800
    #            out proj  2*20*32*32            =  40960
    #            ffn       2*20*32*64 + 2*20*64*32 = 163840
    #            layer     122880+12800+12800+40960+163840 = 353280
    # encoder              20480 + 2*353280      = 727040
    # head                 2*20*32*32 + 2*20*32*1 = 40960 + 1280 = 42240
    # forward              727040 + 42240        = 769280
    d = encoder_forward_flops(cfg.model, B, T)
    assert d == {"embeddings_project": 20480, "qkv": 245760, "attention_scores": 25600, "attention_values": 25600,
                 "attention_output": 81920, "ffn": 327680, "total": 727040}

    # ---- generator, E=16, H=8, I=16, L=2
    # embeddings_project   2*20*16*8             =   5120
    # per layer: qkv       3*2*20*8*8            =   7680
    #            scores    2*20*10*8             =   3200
    #            values    2*20*10*8             =   3200
    #            out proj  2*20*8*8              =   2560
    #            ffn       2*20*8*16 + 2*20*16*8 =  10240
    #            layer     7680+3200+3200+2560+10240 = 26880
    # encoder              5120 + 2*26880        =  58880
    assert encoder_forward_flops(g, B, T)["total"] == 58880

    # ---- our step: LM head at M=3 positions
    # head                 2*3*8*16 + 2*3*16*100 = 768 + 9600 = 10368
    # generator forward    58880 + 10368         =  69248
    # forward              769280 + 69248        = 838528
    # train                3 * 838528            = 2515584
    ours = pretrain_flops_per_step(cfg, B, T)
    assert ours["lm_head_rows"] == 3
    assert ours["generator_head"] == 10368
    assert ours["generator_forward"] == 69248
    assert ours["discriminator_head"] == 42240
    assert ours["discriminator_forward"] == 769280
    assert ours["forward"] == 838528
    assert ours["train"] == 2515584
    assert ours["train_per_token"] == 2515584 / 20

    # ---- transformers-style step: LM head at all N=20 positions
    # head                 2*20*8*16 + 2*20*16*100 = 5120 + 64000 = 69120
    # generator forward    58880 + 69120         = 128000
    # forward              769280 + 128000       = 897280
    # train                3 * 897280            = 2691840
    hf = hf_pretrain_flops_per_step(cfg, B, T)
    assert hf["generator_head"] == 69120
    assert hf["forward"] == 897280
    assert hf["train"] == 2691840

    # An explicit M (what our step runs: B * max_selected(T) slots = 2 * 2 = 4 rows here).
    assert pretrain_flops_per_step(cfg, B, T, num_selected=4)["generator_head"] == 2 * 4 * 8 * 16 + 2 * 4 * 16 * 100


def test_counts_every_matmul_weight_of_the_real_model():
    """Forward FLOPs per token = 2 x (weights of every nn.Linear in the discriminator) + attention (4·L·T·H)."""
    cfg = preset_config("small")
    disc = ElectraForPreTraining(cfg.model)
    linear_weights = sum(m.weight.numel() for m in disc.modules() if isinstance(m, nn.Linear))
    T, m = 128, cfg.model
    attention = 4 * m.num_hidden_layers * T * m.hidden_size
    per_token = pretrain_flops_per_step(cfg, 1, T)["discriminator_forward"] / T
    assert per_token == 2 * linear_weights + attention


def test_electra_small_matches_the_paper_scale():
    cfg = preset_config("small")
    disc_params = count_parameters(ElectraForPreTraining(cfg.model))
    assert abs(disc_params - 13.5e6) / 13.5e6 < 0.02  # the paper's 13.5M (ours: 13.55M)

    B, T = 32, 128
    ours, hf = pretrain_flops_per_step(cfg, B, T), hf_pretrain_flops_per_step(cfg, B, T)
    disc_per_token = ours["discriminator_forward"] / (B * T)
    # "2 x 13.5M params = 27 MFLOP/token" counts the 30522 x 128 word-embedding table (3.9M), which is a
    # look-up, not a matmul: the matmul weights are ~9.6M, so 2 x 9.6M = 19.3M + attention 1.6M = 20.6M.
    assert 19e6 < disc_per_token < 2 * disc_params
    assert abs(disc_per_token - 20_644_352) < 1
    # Transformers-style step (V-way logits at every position): ~90 MFLOP per token of training.
    assert 88e6 < hf["train_per_token"] < 92e6
    # Ours runs the LM head at 15% of positions: ~70 MFLOP per token, ~22% less.
    assert 68e6 < ours["train_per_token"] < 72e6
    assert 0.75 < ours["train"] / hf["train"] < 0.80
    # The whole difference is the generator head: 3 x 2 x (N - M) x (Hg·E + E·V).
    N, M = B * T, ours["lm_head_rows"]
    assert hf["train"] - ours["train"] == 3 * 2 * (N - M) * (64 * 128 + 128 * 30522)


def test_attention_grows_quadratically_with_length():
    cfg = preset_config("base")
    a, b = encoder_forward_flops(cfg.model, 1, 128), encoder_forward_flops(cfg.model, 1, 512)
    assert b["attention_scores"] == 16 * a["attention_scores"]
    assert b["ffn"] == 4 * a["ffn"]


def test_objective_aware_training_flops_by_hand():
    from electra.pretraining.flops import training_flops_per_step

    cfg = _tiny_cfg()
    cfg.train.batch_size = 2  # B=2, T=10: N=20, M=3 (the numbers of the hand calculation above)
    # electra: the step above, 2515584; electra15 computes the same
    assert training_flops_per_step(cfg, 10)["train"] == 2515584
    cfg.train.objective = "electra15"
    assert training_flops_per_step(cfg, 10)["train"] == 2515584
    # mlm: discriminator encoder 727040 + its LM head at M=3: 2*3*32*16 + 2*3*16*100 = 3072 + 9600 = 12672
    #      forward 739712, train 2219136 (no generator, no discriminator head)
    cfg.train.objective = "mlm"
    assert training_flops_per_step(cfg, 10)["train"] == 3 * 739712
    # replace_mlm: generator 69248 + discriminator encoder 727040 + MLM head at M 12672 = 808960
    cfg.train.objective = "replace_mlm"
    assert training_flops_per_step(cfg, 10)["train"] == 3 * 808960
    # all_tokens_mlm: generator 69248 + encoder 727040 + LM head at N=20 (2*20*32*16 + 2*20*16*100 = 20480 + 64000
    #                 = 84480) + copy head at N (42240) = 923008
    cfg.train.objective = "all_tokens_mlm"
    assert training_flops_per_step(cfg, 10)["train"] == 3 * 923008


def test_flops_budget_sets_the_run_length_and_is_logged(tmp_path):
    import json

    from synthetic import make_data_dir

    from electra.pretraining.flops import training_flops_per_step
    from electra.pretraining.pretrain import pretrain

    data = make_data_dir(tmp_path / "data")
    small = ["model.hidden_size=32", "model.embedding_size=24", "model.num_hidden_layers=2",
             "model.intermediate_size=64", "train.batch_size=8", "train.log_every=1", "generator.hidden_fraction=0.5"]
    cfg = preset_config("tiny", vocab_size=120)
    from electra.config import apply_overrides
    apply_overrides(cfg, small)
    per_step = training_flops_per_step(cfg, 32)["train"]
    run = pretrain(data, tmp_path / "run", preset="tiny", progress=False,
                   overrides=small + [f"train.flops_budget={per_step * 7.5}"])
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if "flops" in r]
    assert [r["step"] for r in steps] == list(range(1, 8))  # 7 whole steps fit in 7.5 steps' FLOPs
    assert steps[-1]["flops"] == 7 * per_step <= per_step * 7.5
    assert records[0]["flops_per_step"] == per_step and records[0]["max_steps"] == 7


def test_training_algorithms_flops_by_hand():
    import dataclasses

    import pytest

    from electra.errors import UserError
    from electra.pretraining.flops import steps_for_budget, training_flops, training_flops_per_step

    cfg = _tiny_cfg()
    cfg.train.batch_size = 2  # B=2, T=10: generator forward 69248, discriminator forward 769280 (see above)
    cfg.train.max_steps = 10
    # adversarial: REINFORCE backpropagates through the same generator graph as the MLM: as joint
    cfg.train.algorithm = "adversarial"
    assert training_flops_per_step(cfg, 10)["train"] == 2515584
    assert training_flops(cfg, 10, 7) == 7 * 2515584
    # two_stage, switch after n=4 of 10 steps:
    #   stage one   3 * 69248                    =   207744   (generator alone, forward + backward)
    #   stage two   69248 + 3 * 769280           =  2377088   (frozen generator: forward only)
    #   average     (4*207744 + 6*2377088) / 10  =  1509350.4
    cfg.train.algorithm, cfg.train.two_stage_generator_steps = "two_stage", 4
    per = training_flops_per_step(cfg, 10)
    assert (per["stage_one"], per["stage_two"], per["switch_step"]) == (207744, 2377088, 4)
    assert per["train"] == 1509350.4
    assert training_flops(cfg, 10, 3) == 3 * 207744
    assert training_flops(cfg, 10, 7) == 4 * 207744 + 3 * 2377088 == 7962240
    assert training_flops(cfg, 10, 10) == 15093504
    # A budget of 13e6: with n=4, 830976 + 5*2377088 = 12716416 fits, one more step (15093504) does not -> 9 steps.
    assert steps_for_budget(cfg, 10, 13e6) == 9
    # With n = half of the run: 10 steps cost 5*207744 + 5*2377088 = 12924160, 11 steps 15301248 -> 10 steps.
    assert steps_for_budget(dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, two_stage_generator_steps=0)),
                           10, 13e6) == 10
    with pytest.raises(UserError, match="less than the shortest two-stage run"):
        steps_for_budget(cfg, 10, 3e6)  # n=4 generator steps and one discriminator step cost 3208064
    cfg.train.algorithm, cfg.train.two_stage_generator_steps = "joint", 0
    assert steps_for_budget(cfg, 10, 2515584 * 7.5) == 7


def test_warm_up_steps_count_their_shorter_attention():
    import dataclasses

    from electra.pretraining.flops import steps_for_budget, training_flops, training_flops_per_step

    cfg = _tiny_cfg()
    cfg.train.batch_size = 2  # B=2, T=10: a joint step costs 2515584 (test above)
    full = training_flops_per_step(cfg, 10)["train"]
    assert full == 2515584
    # Windows of 5: B*T/5 = 4 rows of 5, the same N = 20 tokens. Only attention (scores + values,
    # L·4·N·T·H per encoder) shrinks: disc 2·4·20·(10 - 5)·32 = 25600, generator (H = 8) 6400; ×3 for training.
    assert full - training_flops_per_step(cfg, 5, batch_size=4)["train"] == 3 * (25600 + 6400) == 96000
    cfg.train.short_seq_length, cfg.train.short_seq_steps = 5, 3
    assert training_flops(cfg, 10, 2) == 2 * (full - 96000)
    assert training_flops(cfg, 10, 7) == 7 * full - 3 * 96000
    # A budget that fits 7 such steps fits only 6 without the warm-up
    budget = 7 * full - 3 * 96000
    assert steps_for_budget(cfg, 10, budget) == 7
    assert steps_for_budget(dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, short_seq_length=0,
                                                                               short_seq_steps=0)), 10, budget) == 6
    # doubling from 2 at T = 10: stages of 2, 4, 8 tokens (5, 3 and 2 windows per row, the last ones padded)
    cfg.train.short_seq_length, cfg.train.short_seq_steps, cfg.train.short_seq_schedule = 2, 3, "doubling"
    stages = [training_flops_per_step(cfg, w, batch_size=2 * n)["train"] for w, n in ((2, 5), (4, 3), (8, 2))]
    assert training_flops(cfg, 10, 5) == sum(stages) + 2 * full
