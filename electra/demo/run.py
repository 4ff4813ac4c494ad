"""``electra demo``: the whole pre-training pipeline, small, on real public text, in minutes on a CPU."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from electra.config import default_recipe
from electra.errors import UserError
from electra.runtime.files import OWNER_MARKER, claim_output_folder, failure_reason, is_owned, make_folder, mark_owned
from electra.runtime.metrics_log import read_metrics

DEMO_COMMAND = "electra demo"      # named in the demo folder's OWNER_MARKER, which tells a demo from other outputs
DEMO_MARKER = ".electra-demo"      # the marker of demos before OWNER_MARKER: still accepted, replaced on a rerun
DEMO_OUTPUTS = ("tokenizer", "data", "pretrain")  # what the demo writes in its --out folder: all it may replace
DEMO_STEPS = 800          # tiny preset, 3.3M tokens: the discriminator detects context in ~7 minutes on 2 CPU cores
DEMO_VOCAB = 8000
# Chinese: HFL's vocabulary size. Each character is a token of its own, so the corpus fills only what its
# characters (and the Latin and digit pieces) need: 5,600 entries for People's Daily.
DEMO_VOCAB_ZH = 21128
DEMO_SENTENCE_ZH = "今天北京的天气非常好，我们去公园散步吧。"  # inspected after the Chinese demo


def default_cache_dir() -> Path:
    return Path(os.environ.get("ELECTRA_CACHE", Path.home() / ".cache" / "electra"))


def is_demo_folder(out: Path) -> bool:
    """``out`` was made by ``electra demo``: its OWNER_MARKER names the demo (or it has the older DEMO_MARKER)."""
    return (Path(out) / DEMO_MARKER).is_file() or is_owned(out, DEMO_COMMAND)


def _outputs_to_replace(out: Path, inputs: list[str] | None = None) -> list[Path]:
    """What a (re)run of the demo into ``out`` will replace; checks only, changes nothing.

    The demo may write ``out`` if it is missing, empty or an earlier demo, and then replaces only what it wrote
    itself (DEMO_OUTPUTS): anything else there, such as a model fine-tuned into OUT/sentiment (as the Chinese
    demo suggests) or the user's notes, is kept. Any other folder is refused with one line, and so is a corpus
    (``inputs``) inside what the demo would replace."""
    out = claim_output_folder(out, "--out", overwrite=True)  # a file (or link) where the folder should be
    if out.is_dir() and any(out.iterdir()):
        if not is_demo_folder(out):
            raise UserError(f"{out}: exists and is not an earlier demo (it has no {OWNER_MARKER} marker written "
                            f"by `{DEMO_COMMAND}`); choose another --out")
    ours = [out / name for name in DEMO_OUTPUTS if (out / name).exists() or (out / name).is_symlink()]
    if ours:
        for path in ours:  # the demo never makes these as files or links: then they are not its own
            if path.is_symlink() or not path.is_dir():
                raise UserError(f"{path}: is not a folder the demo wrote, and the demo writes its {path.name} "
                                f"there; move it away or choose another --out")
        for given in inputs or []:
            resolved = Path(given).resolve()
            for path in ours:
                if resolved == path.resolve() or path.resolve() in resolved.parents:
                    raise UserError(f"{given}: the corpus is inside {path}, which the demo replaces on a rerun; "
                                    f"move the corpus elsewhere or choose another --out")
    return ours


def _claim_output(out: Path, inputs: list[str] | None = None) -> None:
    """Check ``out`` (``_outputs_to_replace``), remove the earlier demo's own outputs, keep everything else,
    and mark ``out`` as the demo's (OWNER_MARKER naming `electra demo`)."""
    out = Path(out)
    for path in _outputs_to_replace(out, inputs):
        try:
            shutil.rmtree(path)
        except OSError as e:
            raise UserError(f"{path}: could not remove the earlier demo's {path.name} ({failure_reason(e)}); "
                            f"fix the cause and run the demo again") from None
    make_folder(out)
    mark_owned(out, DEMO_COMMAND)
    try:
        (out / DEMO_MARKER).unlink(missing_ok=True)  # the older marker, now replaced by OWNER_MARKER
    except OSError:
        pass  # harmless: it says the same as OWNER_MARKER


def run_demo(out: Path, corpus: list[str] | None = None, max_steps: int | None = None,
             cache_dir: str | None = None, progress: bool = True, recipe: str | None = None,
             lang: str = "en") -> dict:
    """The pipeline end to end on ``lang``'s demo text (or ``corpus``). Chinese: whole-word masking from jieba's
    segmentation, and the two fetched tasks (review sentiment, People's Daily POS) for fine-tuning."""
    from electra.data.corpus import build_dataset
    from electra.data.tokenizer import describe_tokenizer_report, tokenizer_report, train_tokenizer
    from electra.demo.downloads import demo_tasks, fetch_demo_corpus, sources_for
    from electra.pretraining.export import export_run
    from electra.pretraining.plots import plot_run
    from electra.pretraining.pretrain import pretrain

    t0 = time.perf_counter()
    out = Path(out)
    sources_for(lang)  # an unknown language fails here, before anything is fetched or written
    if max_steps is not None and (isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1):
        raise UserError(f"--max-steps {max_steps!r}: must be a whole number of at least 1 (default {DEMO_STEPS})")
    _outputs_to_replace(out, corpus)  # and so does an --out the demo may not write
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
        from electra.data.sources import find_corpus_files
        find_corpus_files(corpus)  # a missing or empty corpus is named before the output folder is touched
    _claim_output(out, corpus)

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

    records = read_metrics(run / "metrics.jsonl")
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
