"""``electra demo``: the whole pre-training pipeline, small, on real public text, in minutes on a CPU."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

from electra.config import default_recipe
from electra.errors import UserError

DEMO_MARKER = ".electra-demo"
DEMO_STEPS = 800          # tiny preset, 3.3M tokens: the discriminator detects context in ~7 minutes on 2 CPU cores
DEMO_VOCAB = 8000
# Chinese: HFL's vocabulary size. Each character is a token of its own, so the corpus fills only what its
# characters (and the Latin and digit pieces) need: 5,600 entries for People's Daily.
DEMO_VOCAB_ZH = 21128
DEMO_SENTENCE_ZH = "今天北京的天气非常好，我们去公园散步吧。"  # inspected after the Chinese demo


def default_cache_dir() -> Path:
    return Path(os.environ.get("ELECTRA_CACHE", Path.home() / ".cache" / "electra"))


def _claim_output(out: Path) -> None:
    """The demo owns its folder: it may replace an earlier demo, never anything else."""
    if out.exists() and any(out.iterdir()):
        if not (out / DEMO_MARKER).exists():
            raise UserError(f"{out}: exists and is not an earlier demo; choose another --out")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / DEMO_MARKER).write_text("made by `electra demo`; safe to delete\n")


def run_demo(out: Path, corpus: list[str] | None = None, max_steps: int | None = None,
             cache_dir: str | None = None, progress: bool = True, recipe: str | None = None,
             lang: str = "en") -> dict:
    """The pipeline end to end on ``lang``'s demo text (or ``corpus``). Chinese: whole-word masking from jieba's
    segmentation, and the two fetched tasks (review sentiment, People's Daily POS) for fine-tuning."""
    from electra.data.corpus import build_dataset
    from electra.data.tokenizer import describe_tokenizer_report, tokenizer_report, train_tokenizer
    from electra.demo.downloads import demo_tasks, fetch_demo_corpus, sources_for
    from electra.interop.hf import export_run
    from electra.pretraining.plots import plot_run
    from electra.pretraining.pretrain import pretrain

    t0 = time.perf_counter()
    out = Path(out)
    sources_for(lang)  # an unknown language fails here, before anything is fetched or written
    zh = lang == "zh"
    segmenter = "jieba" if zh else None
    if segmenter:
        from electra.data.segment import load_segmenter
        load_segmenter(segmenter)  # jieba missing: say so now, not after the download
    tasks = None
    if corpus is None:
        print(f"1/5 fetching public {'Chinese' if zh else 'English'} text (cached after the first run) ...")
        folder = fetch_demo_corpus(Path(cache_dir) if cache_dir else default_cache_dir(), progress=progress,
                                   lang=lang)
        corpus = [str(folder)]
        tasks = demo_tasks(folder) if zh else None
    else:
        print(f"1/5 using the corpus {' '.join(corpus)}")
    _claim_output(out)

    vocab = DEMO_VOCAB_ZH if zh else DEMO_VOCAB
    print(f"2/5 training a WordPiece tokenizer of up to {vocab} entries ...")
    train_tokenizer(corpus, vocab, out / "tokenizer", progress=progress)
    for line in describe_tokenizer_report(tokenizer_report(out / "tokenizer"), vocab):
        print(f"  {line}")
    words = ", with jieba's word starts for whole-word masking" if segmenter else ""
    print(f"3/5 building 128-token pre-training examples{words} ...")
    manifest = build_dataset(corpus, out / "tokenizer", out / "data", max_seq_length=128, progress=progress,
                             word_segmenter=segmenter)
    steps = max_steps or DEMO_STEPS
    recipe = recipe or default_recipe("tiny")
    masking = ["train.masking=whole_word"] if segmenter else []
    print(f"4/5 pre-training the tiny preset for {steps} steps (batch 32 x 128, {recipe} recipe"
          f"{', whole-word masking' if segmenter else ''}) ...")
    run = pretrain(out / "data", out / "pretrain", preset="tiny", max_steps=steps, recipe=recipe,
                   overrides=[f"train.eval_every={max(1, steps // 5)}", f"train.save_every={max(1, steps // 2)}",
                              "train.log_every=10", *masking], progress=progress)
    print("5/5 exporting to Hugging Face transformers folders and plotting ...")
    disc, gen = export_run(run, run / "hf")
    png = plot_run(run)

    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if "gen_loss" in r]
    evals = [r for r in records if r.get("event") == "eval"]
    first, last = train[0], train[-1]
    minutes = (time.perf_counter() - t0) / 60
    print()
    print(f"done in {minutes:.1f} min. Corpus: {manifest['source']['num_documents']} documents, "
          f"{manifest['splits']['train']['num_tokens']:,} training tokens.")
    print(f"  generator MLM loss     {first['gen_loss']:.3f} -> {last['gen_loss']:.3f}   "
          f"accuracy {first['gen_acc']:.3f} -> {last['gen_acc']:.3f}")
    print(f"  discriminator loss     {first['disc_loss']:.3f} -> {last['disc_loss']:.3f}   "
          f"accuracy {first['disc_acc']:.3f} -> {last['disc_acc']:.3f}")
    if evals:
        e = evals[-1]
        print(f"  held-out (step {e['step']}): generator accuracy {e['eval_gen_acc']:.3f}, "
              f"discriminator accuracy {e['eval_disc_acc']:.3f}, replaced-token recall {e['eval_disc_recall']:.3f}")
        if "eval_disc_auc" in e:
            print(f"  discriminator AUC {e['eval_disc_auc']:.3f} on the generator's replacements, "
                  f"{e['eval_disc_margin']:+.4f} nats below the label entropy")
        if "eval_unigram_auc" in e:
            print(f"  yardstick: AUC {e['eval_unigram_auc']:.3f} on unigram-sampled replacements (0.5 = chance; only "
                  f"context gives them away), {e['eval_uniform_auc']:.3f} on uniformly random ones")
    if zh:
        from electra.pretraining.inspect_tokens import inspect_text
        print(f"  `electra inspect` on {DEMO_SENTENCE_ZH} (P(replaced) per token):")
        inspect_text(disc, DEMO_SENTENCE_ZH, color=False)
    print(f"  tokenizer      {out / 'tokenizer'}")
    print(f"  data           {out / 'data'}")
    print(f"  run            {run}   (metrics.jsonl, checkpoints/)")
    print(f"  curves         {png}")
    print(f"  discriminator  {disc}   transformers.ElectraForPreTraining.from_pretrained(...)")
    print(f"  generator      {gen}")
    if tasks is not None:
        print(f"  tasks          {tasks}   (reviews_sentiment/*.tsv, pd_pos/*.conll; docs/chinese.md), e.g.")
        print(f"    electra finetune --model {disc} --task classification --train "
              f"{tasks / 'reviews_sentiment' / 'train.tsv'} --dev {tasks / 'reviews_sentiment' / 'dev.tsv'} "
              f"--out {out / 'sentiment'}")
    return {"run": run, "discriminator": disc, "generator": gen, "plot": png, "minutes": minutes}
