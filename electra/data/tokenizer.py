"""WordPiece tokenizers: train one on a corpus, load one (ours, a BERT vocab.txt or a tokenizer.json), save one.

Everything runs in the Rust ``tokenizers`` library; this module only assembles the BERT/ELECTRA
pipeline (uncased by default) and checks what users hand us. A saved tokenizer folder holds
``tokenizer.json`` and ``vocab.txt`` plus the transformers config files, so that
``transformers.ElectraTokenizerFast.from_pretrained(folder)`` loads it and tokenizes identically.
"""

from __future__ import annotations

import json
import unicodedata
from collections import Counter
from pathlib import Path
from typing import Iterator

from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors, trainers
from tokenizers.models import WordPiece

from electra.data.sources import CorpusReader, find_corpus_files
from electra.errors import UserError
from electra.runtime.files import AtomicDir, claim_output_folder, make_folder, write_text

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

# Every HELD_OUT_EVERY-th line of the corpus (up to HELD_OUT_MAX_LINES) is kept out of training and used to
# report the vocabulary's [UNK] rate and characters per token on text it has not seen.
HELD_OUT_EVERY = 100
HELD_OUT_MAX_LINES = 10_000
# Uncased normalisation (BERT's: lowercase, then NFD and drop combining marks) is refused when it would alter
# more than this share of a corpus's characters beyond case and Latin/Greek/Cyrillic accents: Hangul becomes
# jamo, kana lose their voicing marks (ガ -> カ), Devanagari, Thai or Arabic lose vowel signs.
UNCASED_DAMAGE_LIMIT = 0.001
TOKENIZER_REPORT = "tokenizer_training.json"  # what training measured, saved in the tokenizer folder


def train_tokenizer(inputs: list, vocab_size: int, out_dir: str | Path, *, lowercase: bool = True,
                    min_frequency: int = 2, progress: bool = True, force_uncased: bool = False,
                    min_char_frequency: int = 1, text_column: str = "text") -> Tokenizer:
    """Train a BERT-style WordPiece vocabulary of ``vocab_size`` entries on a corpus and save it to ``out_dir``.

    ``inputs``: corpus files or folders (see ``corpus.find_corpus_files``); ``text_column`` names the text of
    JSONL records and table rows. The special tokens come first, so [PAD]=0, [UNK]=1, [CLS]=2, [SEP]=3,
    [MASK]=4. ``out_dir`` must be new or empty; it is written atomically (a temporary folder beside it, renamed
    at the end), with TOKENIZER_REPORT: the held-out slice's [UNK] rate and characters per token, and how many
    characters the alphabet kept.

    The alphabet follows the corpus: every character that occurs at least ``min_char_frequency`` times in the
    training lines, the most frequent first, up to half the vocabulary (the rest is for word pieces;
    ``min_frequency`` is what a merged piece needs). A character costs one entry, an unknown one an [UNK] in
    every text that has it: on People's Daily keeping the characters seen once took the held-out [UNK] rate
    from 0.11% to 0.075%. Uncased training (``lowercase``) is refused with a UserError when it would change
    letters beyond case and European accents (Korean, Japanese, ...), unless ``force_uncased``.
    """

    out_dir = Path(out_dir)
    refuse_non_empty(out_dir)
    if not isinstance(vocab_size, int) or vocab_size <= len(SPECIAL_TOKENS):
        raise UserError(f"vocabulary size {vocab_size} is too small; give --vocab-size above {len(SPECIAL_TOKENS)} (ELECTRA uses 30522)")
    if min_frequency < 0 or min_char_frequency < 0:
        raise UserError(f"min_frequency {min_frequency} and min_char_frequency {min_char_frequency} must be 0 or "
                        f"more")
    files = find_corpus_files(inputs)
    tok = _bert_pipeline(WordPiece(unk_token="[UNK]", continuing_subword_prefix="##",
                                   max_input_chars_per_word=100), lowercase)

    scan = _scan_corpus(CorpusReader(files, text_column), progress)
    if scan.num_lines == 0:
        raise UserError(f"{' '.join(map(str, files))}: the corpus has no text; give files with at least one non-empty line")
    altered_share = _check_uncased(scan, refuse=not force_uncased) if lowercase else 0.0
    char_counts = _normalised_char_counts(scan.raw_chars, tok.normalizer)
    frequent = sum(1 for n in char_counts.values() if n >= max(1, min_char_frequency))
    alphabet = min(frequent, max(1, (vocab_size - len(SPECIAL_TOKENS)) // 2))

    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, min_frequency=min_frequency, show_progress=progress,
                                        special_tokens=SPECIAL_TOKENS, limit_alphabet=alphabet,
                                        continuing_subword_prefix="##")
    # An exception raised inside the iterator may come back out of Rust re-wrapped; keep the original.
    failure: list[BaseException] = []
    tok.train_from_iterator(_line_batches(_training_lines(CorpusReader(files, text_column)), failure),
                            trainer=trainer)
    if failure:
        raise failure[0]
    _add_post_processor(tok)
    _check_specials(tok, out_dir)
    report = {"vocab_size": tok.get_vocab_size(), "lowercase": lowercase, "min_frequency": min_frequency,
              "min_char_frequency": min_char_frequency,
              "characters_seen": len(char_counts), "characters_frequent": frequent, "alphabet_limit": alphabet,
              "uncased_altered_share": altered_share,
              **held_out_statistics(tok, scan.held_out)}
    with atomic_output_dir(out_dir) as tmp:
        save_tokenizer(tok, tmp)
        _write_json(tmp / TOKENIZER_REPORT, report)
    return tok


def tokenizer_report(folder: str | Path) -> dict:
    """The TOKENIZER_REPORT a trained tokenizer folder holds ({} for a folder from elsewhere)."""
    path = Path(folder) / TOKENIZER_REPORT
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def describe_tokenizer_report(r: dict, asked: int) -> list[str]:
    """What `tokenizer train` measured, as lines for the terminal."""
    lines = []
    if r.get("held_out_lines"):
        lines.append(f"held-out slice ({r['held_out_lines']} lines, {r['held_out_tokens']} tokens): [UNK] "
                     f"{r['unk_rate']:.3%} of tokens, {r['chars_per_token']:.2f} characters per token")
    else:
        lines.append("no held-out slice: the corpus has fewer than 100 lines (every 100th line is held out)")
    if r.get("alphabet_limit", 0) < r.get("characters_frequent", 0):
        lines.append(f"note: {r['characters_frequent']} characters occur at least --min-char-frequency times; the "
                     f"alphabet keeps the {r['alphabet_limit']} most frequent (half the vocabulary) and the rest "
                     f"become [UNK]: raise --vocab-size to keep them")
    if r.get("vocab_size", asked) < asked:
        lines.append(f"note: {r['vocab_size']} of the {asked} entries asked for: no more word pieces occur "
                     f"--min-frequency times (a small corpus, or Chinese, where each character is a word of its own)")
    if r.get("held_out_lines") and r["unk_rate"] > 0.01:
        lines.append("warning: over 1% of held-out tokens are [UNK]; raise --vocab-size or lower --min-char-frequency")
    return lines


def held_out_statistics(tok: Tokenizer, lines: list[str]) -> dict:
    """The [UNK] rate (share of tokens) and non-space characters per token of ``tok`` on ``lines``."""
    if not lines:
        return {"held_out_lines": 0, "held_out_tokens": 0, "unk_rate": None, "chars_per_token": None}
    unk = tok.token_to_id("[UNK]")
    tokens = unknown = 0
    for start in range(0, len(lines), 1000):
        for enc in tok.encode_batch(lines[start:start + 1000], add_special_tokens=False):
            tokens += len(enc.ids)
            unknown += enc.ids.count(unk)
    chars = sum(len("".join(line.split())) for line in lines)
    return {"held_out_lines": len(lines), "held_out_tokens": tokens, "unk_rate": unknown / max(1, tokens),
            "chars_per_token": chars / max(1, tokens)}


class _CorpusScan:
    """One pass over the corpus: the held-out lines, and the training lines' raw character counts with where each
    character first occurs."""

    def __init__(self):
        self.raw_chars: Counter = Counter()
        self.held_out: list[str] = []
        self.num_lines = 0
        self.first_seen: dict[str, tuple[Path, int]] = {}  # character -> (file, line) where it first occurs


def _is_held_out(line_number: int, held_so_far: int) -> bool:
    return line_number % HELD_OUT_EVERY == HELD_OUT_EVERY - 1 and held_so_far < HELD_OUT_MAX_LINES


def _scan_corpus(reader, progress: bool = False) -> _CorpusScan:
    from tqdm import tqdm

    scan = _CorpusScan()
    bar = tqdm(total=reader.total_bytes, unit="B", unit_scale=True, desc="reading", disable=not progress)
    for line in reader:
        if line is None:
            bar.update(reader.bytes_read() - bar.n)
            continue
        if _is_held_out(scan.num_lines, len(scan.held_out)):
            scan.held_out.append(line)
        else:  # the characters the trainer will see, as it counts them
            for c in set(line).difference(scan.raw_chars):
                scan.first_seen[c] = reader.location
            scan.raw_chars.update(line)
        scan.num_lines += 1
    bar.update(reader.total_bytes - bar.n)
    bar.close()
    return scan


def _training_lines(reader) -> Iterator[str | None]:
    """The corpus without the held-out lines (the same numbering as _scan_corpus)."""
    number = held = 0
    for line in reader:
        if line is None:
            yield None
            continue
        if _is_held_out(number, held):
            held += 1
        else:
            yield line
        number += 1


def _normalised_char_counts(raw_chars: Counter, normalizer) -> Counter:
    """Character counts after the tokenizer's normalisation (it works character by character)."""
    counts: Counter = Counter()
    for c, n in raw_chars.items():
        for d in normalizer.normalize_str(c):
            if not d.isspace():
                counts[d] += n
    return counts


_ACCENT_CONVENTION = ("LATIN", "GREEK", "CYRILLIC")  # scripts whose accents BERT's uncased models drop


def uncased_alteration(c: str) -> str | None:
    """What BERT's uncased normalisation makes of ``c`` where that is more than lowercasing and dropping a
    Latin/Greek/Cyrillic accent (None otherwise): Hangul syllables become jamo, kana lose voicing marks."""
    uncased = _UNCASED.normalize_str(c)
    if uncased == _CASED.normalize_str(c).lower():
        return None
    if unicodedata.name(c, "").startswith(_ACCENT_CONVENTION) or 0x0300 <= ord(c) <= 0x036F:
        return None
    return uncased


_UNCASED = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=True)
_CASED = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=False)


def _check_uncased(scan: _CorpusScan, refuse: bool) -> float:
    """The share of the corpus's (non-space) characters that uncased_alteration changes; a UserError naming the
    first occurrence of the most frequent one when that share is above UNCASED_DAMAGE_LIMIT and ``refuse``."""
    altered = {c: a for c in scan.raw_chars if (a := uncased_alteration(c)) is not None}
    total = sum(n for c, n in scan.raw_chars.items() if not c.isspace())
    share = sum(scan.raw_chars[c] for c in altered) / max(1, total)
    if share > UNCASED_DAMAGE_LIMIT and refuse:
        c = max(altered, key=scan.raw_chars.__getitem__)
        path, lineno = scan.first_seen[c]
        shown = " ".join(f"U+{ord(x):04X}" if unicodedata.category(x).startswith("M") else x for x in altered[c])
        raise UserError(f"{path}:{lineno}: uncased normalisation would change {share:.1%} of the corpus's characters "
                        f"beyond case and Latin accents (e.g. {c} -> {shown}, "
                        f"{unicodedata.name(c, 'unnamed').split()[0].title()}); pass --cased to keep the text as it "
                        f"is (Korean, Japanese and scripts with vowel signs need it), or --force-uncased to accept it")
    return share


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

    ``out_dir`` may exist (the exporter writes into its own model folder); files are replaced, each atomically
    through ``electra.runtime.files`` (a full disk is one line, ``WriteFailed``). tokenizer.json is what
    ``tok.save`` writes (``to_str(pretty=True)``), but through our writer: the Rust one bypasses it.
    """
    out_dir = make_folder(out_dir)
    size = tok.get_vocab_size(with_added_tokens=True)
    tokens = [tok.id_to_token(i) for i in range(size)]
    if None in tokens:
        raise UserError(f"{out_dir}: the tokenizer has no token with id {tokens.index(None)}; cannot write vocab.txt")
    write_text(out_dir / "tokenizer.json", tok.to_str(pretty=True))
    write_text(out_dir / "vocab.txt", "".join(t + "\n" for t in tokens))
    specials = {f"{name}_token": token for name, token in SPECIAL_NAMES.items()}
    config = {"tokenizer_class": "ElectraTokenizer", "do_lower_case": is_lowercase(tok),
              "model_max_length": MODEL_MAX_LENGTH, "tokenize_chinese_chars": True, "strip_accents": None,
              "clean_up_tokenization_spaces": True, **specials}
    _write_json(out_dir / "tokenizer_config.json", config)
    _write_json(out_dir / "special_tokens_map.json", specials)


def _write_json(path: Path, obj: dict) -> None:
    write_text(path, json.dumps(obj, indent=2) + "\n")


# --------------------------------------------------------------------------- atomic output folders

def refuse_non_empty(out_dir: Path) -> None:
    """``out_dir`` must be new or an empty folder, and not lie under a file (checked before any work is done)."""
    out_dir = claim_output_folder(out_dir, "--out", overwrite=True)  # a file where the folder should be
    if out_dir.is_dir() and any(out_dir.iterdir()):
        raise UserError(f"{out_dir}: already exists and is not empty; choose a new --out or delete it first")


class atomic_output_dir(AtomicDir):  # noqa: N801 -- used like a function: `with atomic_output_dir(path)`
    """``with atomic_output_dir(final) as tmp:`` build in ``tmp`` (beside ``final``), renamed to ``final`` on success.

    ``runtime.files.AtomicDir`` that refuses a ``final`` that is not new or empty, when it starts and again just
    before the rename (someone may have written there meanwhile). On any error the temporary folder is removed,
    so a failed run leaves nothing half-written; a file-system failure (a full disk) is ``WriteFailed``.
    """

    def __enter__(self) -> Path:
        refuse_non_empty(self.final)
        return super().__enter__()

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            try:
                refuse_non_empty(self.final)
            except UserError as e:
                super().__exit__(type(e), e, e.__traceback__)  # removes the temporary folder
                raise
        super().__exit__(exc_type, exc, tb)
