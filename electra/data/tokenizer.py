"""WordPiece tokenizers: train one on a corpus, load one (ours, a BERT vocab.txt or a tokenizer.json), save one.

Everything runs in the Rust ``tokenizers`` library; this module only assembles the BERT/ELECTRA
pipeline (uncased by default) and checks what users hand us. A saved tokenizer folder holds
``tokenizer.json`` and ``vocab.txt`` plus the transformers config files, so that
``transformers.ElectraTokenizerFast.from_pretrained(folder)`` loads it and tokenizes identically.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors, trainers
from tokenizers.models import WordPiece

from electra.errors import UserError

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
SPECIAL_NAMES = {"pad": "[PAD]", "unk": "[UNK]", "cls": "[CLS]", "sep": "[SEP]", "mask": "[MASK]"}
MODEL_MAX_LENGTH = 512
_TRAIN_BATCH_LINES = 1000  # lines handed to the Rust trainer at a time (fewer Python->Rust crossings)


# --------------------------------------------------------------------------- the BERT pipeline

def _bert_pipeline(model: WordPiece, lowercase: bool) -> Tokenizer:
    """BERT's uncased (or cased) normalisation, pre-tokenisation and decoding around a WordPiece model.

    ``strip_accents=None`` strips accents exactly when lowercasing, as BERT and transformers do.
    """
    tok = Tokenizer(model)
    tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True,
                                                strip_accents=None, lowercase=lowercase)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece(prefix="##")
    return tok


def _add_post_processor(tok: Tokenizer) -> None:
    """[CLS] A [SEP] and [CLS] A [SEP] B [SEP], with token type 1 on B and its [SEP]."""
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS]:0 $A:0 [SEP]:0", pair="[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)])


def _check_specials(tok: Tokenizer, source: Path | str) -> Tokenizer:
    missing = [t for t in SPECIAL_TOKENS if tok.token_to_id(t) is None]
    if missing:
        raise UserError(f"{source}: vocabulary has no {' '.join(missing)} token; ELECTRA needs {' '.join(SPECIAL_TOKENS)}")
    # A tokenizer.json from elsewhere may truncate or pad; the data builder must see every token.
    tok.no_truncation()
    tok.no_padding()
    return tok


def special_token_ids(tok: Tokenizer) -> dict[str, int]:
    """{"pad": id, "unk": id, "cls": id, "sep": id, "mask": id}."""
    return {name: tok.token_to_id(token) for name, token in SPECIAL_NAMES.items()}


def is_lowercase(tok: Tokenizer) -> bool:
    """Whether the tokenizer's normaliser lowercases (a BertNormalizer or a Lowercase step anywhere in it)."""
    def walk(node) -> bool:
        if isinstance(node, dict):
            if node.get("type") == "Lowercase" or (node.get("type") == "BertNormalizer" and node.get("lowercase")):
                return True
            return any(walk(v) for v in node.values())
        if isinstance(node, list):
            return any(walk(v) for v in node)
        return False
    return walk(json.loads(tok.to_str()).get("normalizer"))


# --------------------------------------------------------------------------- training

def train_tokenizer(inputs: list, vocab_size: int, out_dir: str | Path, *, lowercase: bool = True,
                    min_frequency: int = 2, progress: bool = True) -> Tokenizer:
    """Train a BERT-style WordPiece vocabulary of ``vocab_size`` entries on a corpus and save it to ``out_dir``.

    ``inputs``: corpus files or folders (see ``corpus.find_corpus_files``). The special tokens come
    first, so [PAD]=0, [UNK]=1, [CLS]=2, [SEP]=3, [MASK]=4. ``out_dir`` must be new or empty; it is
    written atomically (a temporary folder beside it, renamed at the end).
    """
    from electra.data.corpus import CorpusReader, find_corpus_files  # corpus imports this module

    out_dir = Path(out_dir)
    refuse_non_empty(out_dir)
    if not isinstance(vocab_size, int) or vocab_size <= len(SPECIAL_TOKENS):
        raise UserError(f"vocabulary size {vocab_size} is too small; give --vocab-size above {len(SPECIAL_TOKENS)} (ELECTRA uses 30522)")
    if min_frequency < 0:
        raise UserError(f"min_frequency {min_frequency} is negative; give 0 or more")
    files = find_corpus_files(inputs)
    reader = CorpusReader(files)

    tok = _bert_pipeline(WordPiece(unk_token="[UNK]", continuing_subword_prefix="##",
                                   max_input_chars_per_word=100), lowercase)
    # limit_alphabet as in transformers' BertWordPieceTokenizer: rare characters become [UNK]
    # instead of crowding out real word pieces.
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, min_frequency=min_frequency, show_progress=progress,
                                        special_tokens=SPECIAL_TOKENS, limit_alphabet=1000,
                                        continuing_subword_prefix="##")
    # An exception raised inside the iterator may come back out of Rust re-wrapped; keep the original.
    failure: list[BaseException] = []
    tok.train_from_iterator(_line_batches(reader, failure), trainer=trainer)
    if failure:
        raise failure[0]
    if reader.num_lines == 0:
        raise UserError(f"{' '.join(map(str, files))}: the corpus has no text; give files with at least one non-empty line")
    _add_post_processor(tok)
    _check_specials(tok, out_dir)
    with atomic_output_dir(out_dir) as tmp:
        save_tokenizer(tok, tmp)
    return tok


def _line_batches(reader, failure: list) -> Iterator[list[str]]:
    """The corpus's lines in lists of ``_TRAIN_BATCH_LINES``; stops quietly on an error, kept in ``failure``."""
    batch: list[str] = []
    try:
        for line in reader:
            if line is None:  # end of a document: irrelevant for counting word pieces
                continue
            batch.append(line)
            if len(batch) >= _TRAIN_BATCH_LINES:
                yield batch
                batch = []
    except Exception as e:  # noqa: BLE001 -- re-raised by the caller once Rust has returned
        failure.append(e)
        return
    if batch:
        yield batch


# --------------------------------------------------------------------------- loading

def load_tokenizer(path: str | Path) -> Tokenizer:
    """Load a tokenizer from a folder (tokenizer.json or vocab.txt), a vocab.txt file or a tokenizer.json file.

    A bare vocab.txt gets BERT's pipeline, lowercasing unless a tokenizer_config.json beside it
    says ``"do_lower_case": false``. Raises UserError unless all of SPECIAL_TOKENS are present.
    """
    path = Path(path)
    if path.is_dir():
        if (path / "tokenizer.json").is_file():
            return _load_tokenizer_json(path / "tokenizer.json")
        if (path / "vocab.txt").is_file():
            return _load_vocab_txt(path / "vocab.txt")
        raise UserError(f"{path}: folder has no tokenizer.json or vocab.txt; give the --out folder of `electra tokenizer train`")
    if not path.exists():
        raise UserError(f"{path}: no such file or folder; give a tokenizer folder, a vocab.txt or a tokenizer.json")
    if path.suffix == ".json":
        return _load_tokenizer_json(path)
    return _load_vocab_txt(path)


def _load_tokenizer_json(path: Path) -> Tokenizer:
    try:
        tok = Tokenizer.from_file(str(path))
    except Exception as e:  # noqa: BLE001 -- the Rust parser raises plain Exception
        reason = (str(e).splitlines() or ["unreadable"])[0]
        raise UserError(f"{path}: not a valid tokenizer.json ({reason}); give a file saved by the tokenizers library") from None
    return _check_specials(tok, path)


def _load_vocab_txt(path: Path) -> Tokenizer:
    vocab = _read_vocab(path)
    tok = _bert_pipeline(WordPiece(vocab=vocab, unk_token="[UNK]", continuing_subword_prefix="##",
                                   max_input_chars_per_word=100), _config_lowercase(path.parent))
    _check_specials(tok, path)
    # Registered as special so that "[MASK]" written in text stays one token, as in transformers.
    tok.add_special_tokens(SPECIAL_TOKENS)
    _add_post_processor(tok)
    return tok


def _read_vocab(path: Path) -> dict[str, int]:
    """One token per line, id = line number - 1 (the BERT vocab.txt format)."""
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not UTF-8 text (byte at offset {e.start}); a vocab.txt has one token per line") from None
    except OSError as e:
        raise UserError(f"{path}: cannot read ({e.strerror})") from None
    if "\0" in text:
        raise UserError(f"{path}: not UTF-8 text (contains NUL bytes: a binary file?); a vocab.txt has one token per line")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the newline after the last token
    vocab: dict[str, int] = {}
    for i, token in enumerate(lines):
        token = token.rstrip("\r")
        if token in vocab:
            raise UserError(f"{path}:{i + 1}: token {token!r} repeats line {vocab[token] + 1}; each token must appear once")
        vocab[token] = i
    if not vocab:
        raise UserError(f"{path}: empty vocabulary; a vocab.txt has one token per line")
    return vocab


def _config_lowercase(folder: Path) -> bool:
    """do_lower_case from a tokenizer_config.json beside a vocab.txt (default True: uncased, like ELECTRA)."""
    config = folder / "tokenizer_config.json"
    if not config.is_file():
        return True
    try:
        value = json.loads(config.read_text(encoding="utf-8")).get("do_lower_case", True)
    except (ValueError, OSError, AttributeError) as e:
        raise UserError(f"{config}: unreadable tokenizer config ({e}); fix or remove it") from None
    return bool(value)


# --------------------------------------------------------------------------- saving

def save_tokenizer(tok: Tokenizer, out_dir: str | Path) -> None:
    """Write tokenizer.json, vocab.txt and transformers' tokenizer_config.json / special_tokens_map.json.

    ``out_dir`` may exist (the exporter writes into its own model folder); files are overwritten.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tok.save(str(out_dir / "tokenizer.json"))
    size = tok.get_vocab_size(with_added_tokens=True)
    tokens = [tok.id_to_token(i) for i in range(size)]
    if None in tokens:
        raise UserError(f"{out_dir}: the tokenizer has no token with id {tokens.index(None)}; cannot write vocab.txt")
    (out_dir / "vocab.txt").write_text("".join(t + "\n" for t in tokens), encoding="utf-8")
    specials = {f"{name}_token": token for name, token in SPECIAL_NAMES.items()}
    config = {"tokenizer_class": "ElectraTokenizer", "do_lower_case": is_lowercase(tok),
              "model_max_length": MODEL_MAX_LENGTH, "tokenize_chinese_chars": True, "strip_accents": None,
              "clean_up_tokenization_spaces": True, **specials}
    _write_json(out_dir / "tokenizer_config.json", config)
    _write_json(out_dir / "special_tokens_map.json", specials)


def _write_json(path: Path, obj: dict) -> None:
    path.write_text(json.dumps(obj, indent=2) + "\n", encoding="utf-8")


# --------------------------------------------------------------------------- atomic output folders

def refuse_non_empty(out_dir: Path) -> None:
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise UserError(f"{out_dir}: already exists and is not empty; choose a new --out or delete it first")


class atomic_output_dir:  # noqa: N801 -- used like a function: `with atomic_output_dir(path)`
    """``with atomic_output_dir(final) as tmp:`` build in ``tmp`` (beside ``final``), renamed to ``final`` on success.

    On any error the temporary folder is removed, so a failed run leaves nothing half-written.
    """

    def __init__(self, final: Path):
        self.final = Path(final)

    def __enter__(self) -> Path:
        refuse_non_empty(self.final)
        self.final.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{self.final.name}.tmp-", dir=self.final.parent))
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return
        try:
            refuse_non_empty(self.final)  # someone may have written there meanwhile
            if self.final.is_dir():
                self.final.rmdir()  # empty: make way for the rename
            os.chmod(self.tmp, 0o755)  # mkdtemp makes it 0700; give it an ordinary folder's mode
            os.rename(self.tmp, self.final)
        except BaseException:
            shutil.rmtree(self.tmp, ignore_errors=True)
            raise

