"""Property tests for the fine-tuning readers: whatever the bytes, a reader returns examples or raises a
one-line UserError naming the file; never another exception, never a hang."""

import gzip
import json

import fuzzing
import pytest
from fuzzing import FUZZ, mostly
from hypothesis import given
from hypothesis import strategies as st

from electra.data.readers import GLUE_TASKS, read_classification, read_conll, read_squad, read_text_lines


def check(reader, path, data: bytes, **kwargs):
    """``reader(path)`` on ``data``: a result, or None after a one-line error naming the file."""
    path.write_bytes(data)
    return fuzzing.check(reader, path, name=path.name, **kwargs)


# Pieces that matter to the parsers: separators, quotes, brackets, line ends, BOM, odd Unicode line breaks.
PIECES = ["\t", "\n", "\r\n", "\r", ",", '"', "'", "{", "}", "[", "]", ":", "#", "# ", " ", "-DOCSTART-", "a",
          "text", "label", "sentence", "0", "1", "2.5", "nan", "\ufeff", "\u00e9", "\x85", "\u2028", "\x0b", "\\",
          "null", "true",
          # CJK: Chinese, full-width punctuation and letters, kana, Hangul, an ideographic space
          "中文", "，", "。", "！", "（", "）", "ＡＢ", "１２", "カタカナ", "の", "한국어", "\u3000"]
text = st.lists(st.sampled_from(PIECES) | st.text(max_size=5), max_size=60).map("".join)
raw = st.binary(max_size=300)
column = st.none() | st.integers(-4, 6) | st.sampled_from(["text", "label", "sentence", "0", "-1", "x"])
field = st.sampled_from(["", "a", "0", "1", "3.5", "pos", '"', "#", "x y", " "]) | st.text(max_size=6)


def glue_header(task: str, which: int) -> str:
    layouts = GLUE_TASKS[task].layouts
    return "\t".join(layouts[which % len(layouts)])


def glue_file(task, which):
    header = glue_header(task, which) if task else "\t".join(["text", "label"])
    width = header.count("\t") + 1
    row = mostly(st.lists(field, min_size=width, max_size=width), st.lists(field, min_size=1, max_size=12))
    headerless = task == "cola" and which % 2 == 1  # CoLA train/dev: 4 columns, no header
    if headerless:
        row = st.tuples(field, st.sampled_from(["0", "1"]), st.sampled_from(["", "*"]), field).map(list)
    return st.lists(row.map("\t".join), max_size=6).map(
        lambda rows: "\n".join(([] if headerless else [header]) + rows) + "\n")


tsv = st.tuples(st.sampled_from([None, *GLUE_TASKS]), st.integers(0, 3)).flatmap(lambda t: glue_file(*t))


@FUZZ
@given(data=raw | text.map(str.encode) | tsv.map(str.encode), ext=st.sampled_from([".tsv", ".txt", ".csv", ".jsonl"]),
       text_column=column, pair_column=column, label_column=column, has_labels=st.booleans(),
       glue_task=st.none() | st.sampled_from(list(GLUE_TASKS)))
def test_read_classification_never_crashes(tmp_path, data, ext, text_column, pair_column, label_column, has_labels,
                                           glue_task):
    result = check(read_classification, tmp_path / ("f" + ext), data, text_column=text_column,
                   text_pair_column=pair_column, label_column=label_column, has_labels=has_labels,
                   glue_task=glue_task if ext == ".tsv" else None)
    if result is not None:
        examples, info = result
        assert examples and all(isinstance(e.text, str) for e in examples)
        assert all((e.label is None) == (not has_labels) for e in examples)
        assert all(isinstance(e.label, float) for e in examples) if info["is_regression"] and has_labels else True


@FUZZ
@given(tsv=tsv, glue_task=st.none() | st.sampled_from(list(GLUE_TASKS)), has_labels=st.booleans())
def test_glue_like_tsv_never_crashes(tmp_path, tsv, glue_task, has_labels):
    check(read_classification, tmp_path / "glue.tsv", tsv.encode(), glue_task=glue_task, has_labels=has_labels)


csv_field = mostly(field.filter(lambda f: not set(f) & set('",\r\n')) | st.sampled_from(['"a,b"', '"q""q"']),
                   st.sampled_from(['"open', 'x"y', '"a\nb"']) | field)
csv_rows = st.lists(mostly(st.lists(csv_field, min_size=2, max_size=2), st.lists(csv_field, min_size=1, max_size=5))
                    .map(",".join), min_size=0, max_size=6).map(lambda r: "\n".join(["text,label", *r]) + "\n")


@FUZZ
@given(data=csv_rows | text, gz=st.booleans(), text_column=column, label_column=column)
def test_csv_never_crashes(tmp_path, data, gz, text_column, label_column):
    blob = gzip.compress(data.encode()) if gz else data.encode()
    check(read_classification, tmp_path / ("c.csv.gz" if gz else "c.csv"), blob, text_column=text_column,
          label_column=label_column)


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
                               st.sampled_from(["text", "label", "text_pair", "id", "x"]), inner, max_size=4),
                           max_leaves=12)
record = st.fixed_dictionaries({"text": mostly(st.text(max_size=5), json_values),
                                "label": mostly(st.sampled_from(["a", "b", 1, 2.5, "0"]), json_values)},
                               optional={"text_pair": mostly(st.text(max_size=3), json_values), "id": json_values})
jsonl = st.lists(mostly(record.map(json.dumps), json_values.map(json.dumps) | text.filter(lambda s: "\n" not in s)),
                 max_size=5).map("\n".join)


@FUZZ
@given(data=jsonl, has_labels=st.booleans(), label_column=st.none() | st.sampled_from(["label", "x", "id"]))
def test_jsonl_never_crashes(tmp_path, data, has_labels, label_column):
    check(read_classification, tmp_path / "j.jsonl", data.encode(), has_labels=has_labels, label_column=label_column)
    check(read_text_lines, tmp_path / "t.jsonl", data.encode())


@FUZZ
@given(data=raw | text.map(str.encode))
def test_read_text_lines_never_crashes(tmp_path, data):
    check(read_text_lines, tmp_path / "in.txt", data)


token_line = st.tuples(st.text("abc#-.", min_size=1, max_size=4), st.sampled_from(["NN", "VB", "O"]),
                       st.sampled_from([" ", "\t"])).map(lambda t: t[0] + t[2] + t[1])
conll = st.lists(mostly(token_line | st.just(""), st.sampled_from(
    ["-DOCSTART- O", "# sent_id = 1", "# NN", "w", "\tNN", "w\t", "a b c d", " ", "1\tNew York\tPROPN"])
    | st.text(max_size=8)), max_size=20)


@FUZZ
@given(lines=conll, token_column=st.integers(-4, 4), tag_column=st.integers(-4, 4), has_labels=st.booleans())
def test_read_conll_never_crashes(tmp_path, lines, token_column, tag_column, has_labels):
    result = check(read_conll, tmp_path / "d.conll", "\n".join(lines).encode(), token_column=token_column,
                   tag_column=tag_column, has_labels=has_labels)
    for example in result or ():
        assert example.words and all(example.words)
        assert example.tags is None if not has_labels else len(example.tags) == len(example.words)


@FUZZ
@given(data=raw)
def test_read_conll_random_bytes(tmp_path, data):
    check(read_conll, tmp_path / "r.conll", data)


def squad_like():
    answer = mostly(st.fixed_dictionaries({"text": st.text(max_size=5), "answer_start": st.integers(-1, 50)}),
                    json_values)
    qa = mostly(st.fixed_dictionaries({"id": st.uuids().map(str) | st.integers(0, 3), "question": st.text(max_size=5),
                                       "answers": st.lists(answer, max_size=2)},
                                      optional={"is_impossible": mostly(st.booleans(), json_values)}), json_values)
    paragraph = mostly(st.fixed_dictionaries({"context": mostly(st.text(max_size=10), json_values),
                                              "qas": st.lists(qa, max_size=3)}), json_values)
    article = mostly(st.fixed_dictionaries({"paragraphs": st.lists(paragraph, max_size=2)},
                                           optional={"title": mostly(st.text(max_size=5), json_values)}), json_values)
    return mostly(st.fixed_dictionaries({"data": st.lists(article, max_size=2)},
                                        optional={"version": mostly(st.sampled_from(["1.1", "v2.0"]), json_values)}),
                  json_values)


@FUZZ
@given(root=squad_like(), ascii=st.booleans(), cut=st.none() | st.integers(0, 400),
       noise=st.sampled_from([b"", b"}", b"\x00", b"\xff", b"[[", b"\n\n"]))
def test_read_squad_never_crashes(tmp_path, root, ascii, cut, noise):
    data = json.dumps(root, indent=1, ensure_ascii=ascii).encode("utf-8", "surrogatepass")
    if cut is not None:  # truncated or corrupted JSON
        data = data[:cut] + noise
    result = check(read_squad, tmp_path / "s.json", data)
    if result is not None:
        examples, version = result
        assert examples and isinstance(version, str)
        assert len({e.qid for e in examples}) == len(examples)


@FUZZ
@given(data=raw)
def test_read_squad_random_bytes(tmp_path, data):
    check(read_squad, tmp_path / "b.json", data)


@pytest.mark.parametrize("name", ["x.tsv.gz", "x.jsonl.gz", "x.conll.gz", "x.json.gz"])
def test_truncated_gzip(tmp_path, name):
    reader = {".tsv": read_classification, ".jsonl": read_classification, ".conll": read_conll,
              ".json": read_squad}[name[1:].removesuffix(".gz")]
    blob = gzip.compress(b"sentence\tlabel\n" + b"word\t1\n" * 200)
    for cut in (0, 5, 10, 18, len(blob) // 2, len(blob) - 4):
        check(reader, tmp_path / name, blob[:cut])
