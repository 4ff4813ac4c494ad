"""Fine-tuning data readers (electra/data/readers.py): GLUE layouts, CSV/JSONL, CoNLL, SQuAD, and their errors."""

import gzip
import json
from pathlib import Path

import pytest

from electra.data.examples import ClassificationExample, QAAnswer, TaggingExample
from electra.data.readers import GLUE_TASKS, check_labels, read_classification, read_conll, read_squad, read_text_lines
from electra.errors import UserError

TASKS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "tasks"


def write(tmp_path, name, text):
    path = tmp_path / name
    (path.write_bytes if isinstance(text, bytes) else path.write_text)(text)
    return path


def error(fn, *args, where, **kwargs):
    """The UserError message; it is one line and names ``where`` (e.g. "file.tsv:3")."""
    with pytest.raises(UserError) as info:
        fn(*args, **kwargs)
    message = str(info.value)
    assert len(message.splitlines()) == 1, message
    assert str(where) in message, message
    return message


# --------------------------------------------------------------------------- GLUE layouts

MNLI_COLS = ("index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\tsentence1_parse\t"
             "sentence2_parse\tsentence1\tsentence2")
MNLI_ROW = ("{i}\t31193\t31193n\tgovernment\t( ( Conceptually ( cream skimming ) ) ...\t( ( ( Product and ) "
            "geography ) ...\t(ROOT (S (NP (JJ Conceptually) ...\t(ROOT (S (NP (NN Product) ...\t"
            "Conceptually cream skimming has two basic dimensions - product and geography.\t"
            "Product and geography are what make cream skimming work. ")
STSB_COLS = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2"

GLUE_FILES = {  # task -> (file text, has labels, [(text, text_pair, label, guid) of the rows])
    "sst2-train": ("sentence\tlabel\nhide new secretions from the parental units \t0\n"
                   "contains no wit , only labored gags \t0\nthat loves its characters \t1\n", True,
                   [("hide new secretions from the parental units ", None, "0", "2"),
                    ("contains no wit , only labored gags ", None, "0", "3"),
                    ("that loves its characters ", None, "1", "4")]),
    "sst2-test": ("index\tsentence\n0\tuneasy mishmash of styles and genres .\n"
                  "1\tthis film 's relationship to actual tension is \" the same \" .\n", False,
                  [("uneasy mishmash of styles and genres .", None, None, "0"),
                   ('this film \'s relationship to actual tension is " the same " .', None, None, "1")]),
    "cola-train": ("gj04\t1\t\tOur friends won't buy this analysis, let alone the next one we propose.\n"
                   "gj04\t0\t*\tThey drank the pub.\n", True,
                   [("Our friends won't buy this analysis, let alone the next one we propose.", None, "1", "1"),
                    ("They drank the pub.", None, "0", "2")]),
    "cola-test": ("index\tsentence\n0\tBill whistled past the house.\n1\tThe car honked its way down the road.\n",
                  False, [("Bill whistled past the house.", None, None, "0"),
                          ("The car honked its way down the road.", None, None, "1")]),
    "mrpc-train": ("\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\n"
                   '1\t702876\t702977\tAmrozi accused his brother , whom he called " the witness " , of deliberately '
                   'distorting his evidence .\tReferring to him as only " the witness " , Amrozi accused his brother '
                   "of deliberately distorting his evidence .\n"
                   "0\t2108705\t2108831\tYucaipa owned Dominick 's before selling the chain to Safeway in 1998 for "
                   "$ 2.5 billion .\tYucaipa bought Dominick 's in 1995 for $ 693 million and sold it to Safeway "
                   "for $ 1.8 billion in 1998 .\n", True,
                   [('Amrozi accused his brother , whom he called " the witness " , of deliberately distorting his '
                     "evidence .", 'Referring to him as only " the witness " , Amrozi accused his brother of '
                     "deliberately distorting his evidence .", "1", "2"),
                    ("Yucaipa owned Dominick 's before selling the chain to Safeway in 1998 for $ 2.5 billion .",
                     "Yucaipa bought Dominick 's in 1995 for $ 693 million and sold it to Safeway for $ 1.8 billion "
                     "in 1998 .", "0", "3")]),
    "mrpc-test": ("index\t#1 ID\t#2 ID\t#1 String\t#2 String\n0\t1089874\t1089925\tPCCW 's chief operating officer "
                  "quit .\tCurrent Chief Operating Officer Mike Butcher is leaving .\n", False,
                  [("PCCW 's chief operating officer quit .", "Current Chief Operating Officer Mike Butcher is "
                    "leaving .", None, "0")]),
    "qqp-train": ("id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n133273\t213221\t213222\tHow is the life of a "
                  "math student? Could you describe your own experiences?\tWhich level of prepration is enough for "
                  "the exam jlpt5?\t0\n402555\t536040\t536041\tHow do I control my horny emotions?\tHow do you "
                  "control your horniness?\t1\n", True,
                  [("How is the life of a math student? Could you describe your own experiences?",
                    "Which level of prepration is enough for the exam jlpt5?", "0", "133273"),
                   ("How do I control my horny emotions?", "How do you control your horniness?", "1", "402555")]),
    "qqp-test": ("id\tquestion1\tquestion2\n0\tWould the idea of Trump and Putin in bed together scare you?\t"
                 "Do you think that if Donald Trump were elected President, he would be able to restore "
                 "relations with Putin and Russia?\n", False,
                 [("Would the idea of Trump and Putin in bed together scare you?", "Do you think that if Donald "
                   "Trump were elected President, he would be able to restore relations with Putin and Russia?",
                   None, "0")]),
    "mnli-train": (MNLI_COLS + "\tlabel1\tgold_label\n" + MNLI_ROW.format(i=0) + "\tneutral\tneutral\n"
                   + MNLI_ROW.format(i=1) + "\tentailment\tentailment\n", True,
                   [("Conceptually cream skimming has two basic dimensions - product and geography.",
                     "Product and geography are what make cream skimming work. ", "neutral", "0"),
                    ("Conceptually cream skimming has two basic dimensions - product and geography.",
                     "Product and geography are what make cream skimming work. ", "entailment", "1")]),
    "mnli-dev_matched": (MNLI_COLS + "\tlabel1\tlabel2\tlabel3\tlabel4\tlabel5\tgold_label\n" + MNLI_ROW.format(i=0)
                         + "\tneutral\tentailment\tneutral\tneutral\tneutral\tneutral\n", True,
                         [("Conceptually cream skimming has two basic dimensions - product and geography.",
                           "Product and geography are what make cream skimming work. ", "neutral", "0")]),
    "mnli-test_matched": (MNLI_COLS + "\n" + MNLI_ROW.format(i=7) + "\n", False,
                          [("Conceptually cream skimming has two basic dimensions - product and geography.",
                            "Product and geography are what make cream skimming work. ", None, "7")]),
    "qnli-train": ("index\tquestion\tsentence\tlabel\n0\tWhen did the third Digimon series begin?\tUnlike the two "
                   "seasons before it and most of the seasons that followed, Digimon Tamers takes a darker and more "
                   "realistic approach to its story.\tnot_entailment\n", True,
                   [("When did the third Digimon series begin?", "Unlike the two seasons before it and most of the "
                     "seasons that followed, Digimon Tamers takes a darker and more realistic approach to its story.",
                     "not_entailment", "0")]),
    "qnli-test": ("index\tquestion\tsentence\n0\tWhat organization is devoted to Jihad?\tFor some decades prior to "
                  "the First Palestine Intifada in 1987, the Muslim Brotherhood in Palestine took a quiescent "
                  "stance.\n", False,
                  [("What organization is devoted to Jihad?", "For some decades prior to the First Palestine Intifada "
                    "in 1987, the Muslim Brotherhood in Palestine took a quiescent stance.", None, "0")]),
    "rte-train": ("index\tsentence1\tsentence2\tlabel\n0\tNo Weapons of Mass Destruction Found in Iraq Yet.\t"
                  "Weapons of Mass Destruction Found in Iraq.\tnot_entailment\n1\tA place of sorrow, after Pope John "
                  "Paul II died, became a place of celebration.\tPope Benedict XVI is the new leader of the Roman "
                  "Catholic Church.\tentailment\n", True,
                  [("No Weapons of Mass Destruction Found in Iraq Yet.", "Weapons of Mass Destruction Found in Iraq.",
                    "not_entailment", "0"),
                   ("A place of sorrow, after Pope John Paul II died, became a place of celebration.",
                    "Pope Benedict XVI is the new leader of the Roman Catholic Church.", "entailment", "1")]),
    "wnli-dev": ("index\tsentence1\tsentence2\tlabel\n0\tThe drain is clogged with hair. It has to be cleaned.\t"
                 "The hair has to be cleaned.\t0\n", True,
                 [("The drain is clogged with hair. It has to be cleaned.", "The hair has to be cleaned.", "0", "0")]),
    "stsb-train": (STSB_COLS + "\tscore\n0\tmain-captions\tMSRvid\t2012test\t0001\tnone\tnone\tA plane is taking "
                   "off.\tAn air plane is taking off.\t5.000\n1\tmain-captions\tMSRvid\t2012test\t0004\tnone\tnone\t"
                   "A man is playing a large flute.\tA man is playing a flute.\t3.800\n", True,
                   [("A plane is taking off.", "An air plane is taking off.", 5.0, "0"),
                    ("A man is playing a large flute.", "A man is playing a flute.", 3.8, "1")]),
    "stsb-test": (STSB_COLS + "\n0\tmain-news\tMSRvid\t2012test\t0024\tnone\tnone\tA girl is styling her hair.\t"
                  "A girl is brushing her hair.\n", False,
                  [("A girl is styling her hair.", "A girl is brushing her hair.", None, "0")]),
}


@pytest.mark.parametrize("name", GLUE_FILES)
@pytest.mark.parametrize("give_task", [False, True])
def test_glue_layouts(tmp_path, name, give_task):
    text, labelled, expected = GLUE_FILES[name]
    task = name.split("-")[0]
    path = write(tmp_path, name + ".tsv", text)
    examples, info = read_classification(path, has_labels=labelled, glue_task=task if give_task else None)
    assert [(e.text, e.text_pair, e.label, e.guid) for e in examples] == expected
    header = not name.startswith("cola-train")
    assert [e.source for e in examples] == [f"{path}:{i + 1 + header}" for i in range(len(expected))]
    assert info["format"] == "tsv" and info["is_regression"] == (task == "stsb")
    assert task in info["layout"] and info["layout"].startswith("glue:")
    if give_task:
        assert info["glue_task"] == task
    assert (info["header"] is not None) == header
    if labelled and task != "stsb":
        assert info["labels"] == sorted({e[2] for e in expected})


def test_glue_layout_table_is_consistent():
    for name, task in GLUE_TASKS.items():
        for cols in task.layouts + ((task.headerless,) if task.headerless else ()):
            assert task.text in cols, name
            assert task.pair is None or task.pair in cols, name
    mnli = GLUE_TASKS["mnli"]
    for cols in mnli.layouts:  # sentence1, sentence2 at 8, 9 and the label last, as the GLUE processors read them
        assert cols.index("sentence1") == 8 and cols.index("sentence2") == 9
        assert cols[-1] == "gold_label" or len(cols) == 10
    assert GLUE_TASKS["stsb"].layouts[0].index("score") == 9 and GLUE_TASKS["stsb"].regression


def test_glue_files_are_read_without_quoting(tmp_path):
    # with quoting, lines 2-3 would be one field holding a tab and a newline
    path = write(tmp_path, "q.tsv", 'sentence\tlabel\n"a quote\t0\nthat never closes"\t1\n')
    assert [(e.text, e.label) for e in read_classification(path)[0]] == [('"a quote', "0"),
                                                                         ('that never closes"', "1")]
    path = write(tmp_path, "ok.tsv", 'sentence\tlabel\n"opening quote only\t0\n"a" b ""c\t1\n')
    assert [e.text for e in read_classification(path)[0]] == ['"opening quote only', '"a" b ""c']


def test_glue_errors(tmp_path):
    sst2 = write(tmp_path, "sst2.tsv", GLUE_FILES["sst2-train"][0])
    assert "qnli" in error(read_classification, sst2, glue_task="qnli", where=f"{sst2}:1")
    assert "choose one of" in error(read_classification, sst2, glue_task="sst-2", where=sst2)
    test = write(tmp_path, "test.tsv", GLUE_FILES["sst2-test"][0])
    assert "no label column" in error(read_classification, test, where=f"{test}:1")
    bad = write(tmp_path, "bad.tsv", "sentence\tlabel\nfine\t1\nno label here\n")
    assert "expected 2 tab-separated columns, found 1" in error(read_classification, bad, where=f"{bad}:3")
    empty = write(tmp_path, "empty.tsv", "sentence\tlabel\nfine\t1\n\n \nblank\t\n")
    assert "label (column 1) is empty" in error(read_classification, empty, where=f"{empty}:5")
    stsb = write(tmp_path, "stsb.tsv", GLUE_FILES["stsb-train"][0].replace("3.800", "high"))
    assert "not a number" in error(read_classification, stsb, where=f"{stsb}:3")
    mnli = write(tmp_path, "mnli.tsv", GLUE_FILES["mnli-train"][0].replace("\tneutral\tneutral", "\tneutral"))
    assert "expected 12 tab-separated columns, found 11" in error(read_classification, mnli, where=f"{mnli}:2")


def test_blank_lines_and_crlf_and_gzip(tmp_path):
    text = "sentence\tlabel\r\n\r\ngood film\t1\r\n   \r\nbad film\t0\r\n"
    path = write(tmp_path, "crlf.tsv.gz", gzip.compress(text.encode()))
    examples, info = read_classification(path)
    assert [(e.text, e.label, e.source) for e in examples] == [("good film", "1", f"{path}:3"),
                                                               ("bad film", "0", f"{path}:5")]
    broken = write(tmp_path, "broken.tsv.gz", gzip.compress(text.encode())[:20])
    assert "gzip" in error(read_classification, broken, where=broken)


# --------------------------------------------------------------------------- other TSV, CSV and JSONL files

def test_tsv_with_named_and_indexed_columns(tmp_path):
    path = write(tmp_path, "reviews.tsv", "id\treview\tstars\n7\tgreat\tpos\n8\tawful\tneg\n")
    assert "--text-column" in error(read_classification, path, where=f"{path}:1")
    examples, info = read_classification(path, text_column="review", label_column="stars")
    assert [(e.text, e.label, e.guid) for e in examples] == [("great", "pos", "7"), ("awful", "neg", "8")]
    assert info["layout"] == "columns" and info["columns"] == {"text": "review", "text_pair": None, "label": "stars"}
    same, _ = read_classification(path, text_column="review", label_column="-1")
    assert [e.label for e in same] == ["pos", "neg"]
    headerless = write(tmp_path, "plain.tsv", "great\tpos\nawful\tneg\n")
    examples, info = read_classification(headerless, text_column=0, label_column="1")
    assert [(e.text, e.label, e.guid) for e in examples] == [("great", "pos", "1"), ("awful", "neg", "2")]
    assert info["header"] is None and info["columns"]["text"] == 0
    assert "not a column of the header" in error(read_classification, headerless, text_column="text",
                                                 label_column=1, where=f"{headerless}:1")  # a name means a header
    cola = write(tmp_path, "cola.tsv", GLUE_FILES["cola-train"][0])
    assert "no header" in error(read_classification, cola, glue_task="cola", text_column="sentence",
                                where=f"{cola}:1")
    assert "out of range" in error(read_classification, headerless, text_column=5, label_column=1,
                                   where=f"{headerless}:1")
    assert "not a column" in error(read_classification, path, text_column="body", label_column="stars",
                                   where=f"{path}:1")


def test_obvious_columns_and_txt_extension(tmp_path):
    path = write(tmp_path, "data.txt", "text\ttext_pair\tlabel\na\tb\tyes\nc\td\tno\n")
    examples, info = read_classification(path)
    assert [(e.text, e.text_pair, e.label) for e in examples] == [("a", "b", "yes"), ("c", "d", "no")]
    assert info["columns"] == {"text": "text", "text_pair": "text_pair", "label": "label"}
    examples, info = read_classification(path, has_labels=False)
    assert [e.label for e in examples] == [None, None] and info["columns"]["label"] is None


def test_csv(tmp_path):
    path = write(tmp_path, "r.csv", 'title,body,rating\n"Hi, there","a ""quoted""\nmulti-line body",4.5\n'
                                    'x,plain,3\n')
    examples, info = read_classification(path, text_column="title", text_pair_column="body", label_column="rating")
    assert [(e.text, e.text_pair, e.label, e.source) for e in examples] == [
        ("Hi, there", 'a "quoted"\nmulti-line body', 4.5, f"{path}:2"), ("x", "plain", 3.0, f"{path}:4")]
    assert info["format"] == "csv" and info["is_regression"]
    by_index, _ = read_classification(path, text_column=0, label_column=2)
    assert [e.text for e in by_index] == ["Hi, there", "x"]
    simple = write(tmp_path, "s.csv", "sentence,label\nok,1\n")
    assert read_classification(simple)[0][0].label == "1"
    assert "--text-column" in error(read_classification, path, where=f"{path}:1")
    wrong = write(tmp_path, "w.csv", "text,label\na,1\nb,2,3\n")
    assert "expected 2 comma-separated columns, found 3" in error(read_classification, wrong, where=f"{wrong}:3")
    unclosed = write(tmp_path, "u.csv", 'text,label\na,1\n"never closed,1\nmore\n')
    assert "malformed CSV" in error(read_classification, unclosed, where=f"{unclosed}:3")
    assert "tsv" in error(read_classification, simple, glue_task="sst2", where=simple)


def test_jsonl(tmp_path):
    path = write(tmp_path, "d.jsonl", '{"text": "a", "label": "pos", "id": "x1"}\n\n{"text": "b", "label": 1}\n')
    examples, info = read_classification(path)
    assert [(e.text, e.label, e.guid, e.source) for e in examples] == [("a", "pos", "x1", f"{path}:1"),
                                                                       ("b", "1", "3", f"{path}:3")]
    assert info == {"format": "jsonl", "layout": "columns", "glue_task": None, "header": None,
                    "columns": {"text": "text", "text_pair": None, "label": "label"}, "is_regression": False,
                    "labels": ["1", "pos"]}
    named = write(tmp_path, "n.jsonl", '{"q": "a", "p": "b", "y": 0.5}\n{"q": "c", "p": "d", "y": 2}\n')
    examples, info = read_classification(named, text_column="q", text_pair_column="p", label_column="y")
    assert [(e.text, e.text_pair, e.label) for e in examples] == [("a", "b", 0.5), ("c", "d", 2.0)]
    assert info["is_regression"]
    assert "JSONL fields have names" in error(read_classification, named, text_column=0, where=named)
    bad = write(tmp_path, "bad.jsonl", '{"text": "a", "label": "x"}\n{"text": "b", label: 1}\n')
    assert "not valid JSON" in error(read_classification, bad, where=f"{bad}:2")
    nolabel = write(tmp_path, "nl.jsonl", '{"text": "a", "label": "x"}\n{"text": "b"}\n')
    assert "label" in error(read_classification, nolabel, where=f"{nolabel}:2")
    notext = write(tmp_path, "nt.jsonl", '{"text": "a", "label": "x"}\n{"text": 3, "label": "x"}\n')
    assert "not a string" in error(read_classification, notext, where=f"{notext}:2")
    array = write(tmp_path, "arr.jsonl", '["text", "label"]\n')
    assert "JSON object" in error(read_classification, array, where=f"{array}:1")


def test_regression_guess():
    from electra.data.readers import _finish_labels
    def labels(*values):
        examples = [ClassificationExample("t", label=v) for v in values]
        return _finish_labels(examples, None), [e.label for e in examples]
    assert labels("0", "1", "1") == (False, ["0", "1", "1"])
    assert labels("1.0", "2.0") == (False, ["1.0", "2.0"])
    assert labels("0.5", "3", "-1e-3") == (True, [0.5, 3.0, -0.001])
    assert labels("0.5", "nan") == (False, ["0.5", "nan"])
    assert labels("0.5", "pos") == (False, ["0.5", "pos"])


@pytest.mark.parametrize("name,content,where", [
    ("missing.tsv", None, "missing.tsv"),
    ("empty.tsv", b"", "empty.tsv"),
    ("blank.csv", b"\n  \n", "blank.csv"),
    ("header.tsv", b"sentence\tlabel\n", "header.tsv"),
    ("header.csv", b"text,label\n\n", "header.csv"),
    ("empty.jsonl", b"\n", "empty.jsonl"),
    ("latin1.tsv", "sentence\tlabel\ngood\t1\ncaf\u00e9\t0\n".encode("latin-1"), "latin1.tsv:3"),
    ("utf16.tsv", "sentence\tlabel\n".encode("utf-16"), "utf16.tsv:1"),
    ("nul.csv", b"text,label\na,1\nb\x00,1\n", "nul.csv:3"),
    ("data.xlsx", b"PK", "data.xlsx"),
])
def test_unreadable_classification_files(tmp_path, name, content, where):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    error(read_classification, path, where=tmp_path / where)


def test_non_utf8_message_gives_byte_and_column(tmp_path):
    path = write(tmp_path, "l.tsv", "sentence\tlabel\ncaf\u00e9\t0\n".encode("latin-1"))
    assert "byte 0xe9 at column 4" in error(read_classification, path, where=f"{path}:2")
    (tmp_path / "folder.tsv").mkdir()
    assert "a folder" in error(read_classification, tmp_path / "folder.tsv", where="folder.tsv")


# --------------------------------------------------------------------------- label checks

def test_check_labels(tmp_path):
    train = write(tmp_path, "train.tsv", "sentence\tlabel\na\tpos\nb\tneg\n")
    dev = write(tmp_path, "dev.tsv", "sentence\tlabel\nc\tpos\nd\tneutral\n")
    _, info = read_classification(train)
    examples, _ = read_classification(dev)
    message = error(check_labels, info["labels"], examples, dev, where=f"{dev}:3")
    assert "'neutral'" in message and "'neg', 'pos'" in message
    check_labels(info["labels"], examples[:1], dev)
    check_labels([], [ClassificationExample("t", label=None), ClassificationExample("t", label=2.5)], dev)
    tagged = [TaggingExample(["a", "b"], ["NN", "XX"], f"{dev}:9")]
    assert "'XX'" in error(check_labels, ["NN", "VB"], tagged, dev, where=f"{dev}:9")
    assert "no-source.tsv" in error(check_labels, ["a"], [ClassificationExample("t", label="b")], "no-source.tsv",
                                    where="no-source.tsv")


# --------------------------------------------------------------------------- CoNLL

def test_conll_basic_and_columns(tmp_path):
    text = ("-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\nGerman JJ B-NP B-MISC\n\n\n"
            "Peter NNP B-NP B-PER\nBlackburn NNP I-NP I-PER\n")
    path = write(tmp_path, "ner.conll", text)
    examples = read_conll(path)
    assert [(e.words, e.tags, e.source) for e in examples] == [
        (["EU", "rejects", "German"], ["B-ORG", "O", "B-MISC"], f"{path}:3"),
        (["Peter", "Blackburn"], ["B-PER", "I-PER"], f"{path}:8")]
    pos = read_conll(path, token_column=0, tag_column=1)
    assert pos[0].tags == ["NNP", "VBZ", "JJ"]
    unlabelled = read_conll(path, has_labels=False)
    assert unlabelled[1].words == ["Peter", "Blackburn"] and unlabelled[1].tags is None


def test_conll_tabs_and_comments(tmp_path):
    conllu = ("# sent_id = 1\n# text = New York is big\n1\tNew York\tPROPN\n2\tis\tAUX\n3\tbig\tADJ\n\n"
              "# sent_id = 2\n# a b\n1\tHi\tINTJ\n")  # "# a b" has 3 columns, but is not tab-separated
    path = write(tmp_path, "u.conllu", conllu)
    examples = read_conll(path, token_column=1, tag_column=2)
    assert [(e.words, e.tags, e.source) for e in examples] == [
        (["New York", "is", "big"], ["PROPN", "AUX", "ADJ"], f"{path}:3"), (["Hi"], ["INTJ"], f"{path}:9")]
    # "# NN" at a sentence start has as many columns as token lines: "#" is a token there
    hashes = write(tmp_path, "h.conll", "# NN\n1 CD\n\n# a comment here\nword NN\n")
    assert [(e.words, e.tags) for e in read_conll(hashes)] == [(["#", "1"], ["NN", "CD"]), (["word"], ["NN"])]


def test_conll_errors(tmp_path):
    path = write(tmp_path, "bad.conll", "The AT\ndog NN\nbarks\n")
    assert "expected at least 2 columns" in error(read_conll, path, where=f"{path}:3")
    path = write(tmp_path, "few.conll", "a b c\n")
    assert "found 3" in error(read_conll, path, tag_column=4, where=f"{path}:1")
    path = write(tmp_path, "tab.conll", "The\tAT\tx\ndog\t\tNN\n")
    assert "empty tag" in error(read_conll, path, tag_column=1, where=f"{path}:2")
    path = write(tmp_path, "tok.conll", "The\tAT\n\tNN\n")
    assert "empty token" in error(read_conll, path, where=f"{path}:2")
    path = write(tmp_path, "empty.conll", "\n-DOCSTART- O\n\n")
    assert "no sentences" in error(read_conll, path, where=path)
    path = write(tmp_path, "latin.conll", "caf\u00e9 NN\n".encode("latin-1"))
    error(read_conll, path, where=f"{path}:1")
    assert "integer" in error(read_conll, path, tag_column="1", where=path)


# --------------------------------------------------------------------------- SQuAD

CONTEXT = "Super Bowl 50 was an American football game. The Denver Broncos won."


def squad(version=None, impossible=False):
    qas = [{"id": "q1", "question": "Who won?", "answers": [{"text": "Denver Broncos", "answer_start": 49},
                                                              {"text": "The Denver Broncos", "answer_start": 45}]}]
    if impossible:
        qas.append({"id": "q2", "question": "Who lost badly?", "answers": [], "is_impossible": True,
                    "plausible_answers": [{"text": "Denver", "answer_start": 49}]})
        qas[0]["is_impossible"] = False
    root = {"data": [{"title": "Super_Bowl_50", "paragraphs": [{"context": CONTEXT, "qas": qas}]}]}
    if version:
        root["version"] = version
    return root


def test_squad_v1_and_v2(tmp_path):
    path = write(tmp_path, "v1.json", json.dumps(squad("1.1")))
    examples, version = read_squad(path)
    assert version == "1.1" and len(examples) == 1
    e = examples[0]
    assert (e.qid, e.question, e.context, e.title, e.is_impossible, e.source) == (
        "q1", "Who won?", CONTEXT, "Super_Bowl_50", False, str(path))
    assert e.answers == [QAAnswer("Denver Broncos", 49), QAAnswer("The Denver Broncos", 45)]
    examples, version = read_squad(write(tmp_path, "v2.json", json.dumps(squad("v2.0", impossible=True))))
    assert version == "2.0" and [(x.qid, x.is_impossible, len(x.answers)) for x in examples] == [
        ("q1", False, 2), ("q2", True, 0)]
    _, version = read_squad(write(tmp_path, "nov.json", json.dumps(squad(impossible=True))))
    assert version == "2.0"
    _, version = read_squad(write(tmp_path, "nov1.json.gz", gzip.compress(json.dumps(squad()).encode())))
    assert version == "1.1"


def test_squad_answers_outside_the_context_are_kept(tmp_path):
    root = squad()
    root["data"][0]["paragraphs"][0]["qas"][0]["answers"] = [{"text": "Carolina", "answer_start": 500}]
    examples, _ = read_squad(write(tmp_path, "s.json", json.dumps(root)))
    assert examples[0].answers == [QAAnswer("Carolina", 500)]


def mutated(change):
    root = squad()
    change(root)
    return json.dumps(root)


@pytest.mark.parametrize("text,needle", [
    ('{"data": [\n  {"title": "x",\n   "paragraphs": [}\n]}', ":3: not valid JSON at column 19"),
    ("[1, 2]", "the top level: expected an object, found a list"),
    ('{"version": "1.1"}', 'missing "data"'),
    ('{"data": []}', "no questions"),
    (mutated(lambda r: r["data"][0]["paragraphs"][0]["qas"][0].pop("question")),
     'data[0].paragraphs[0].qas[0]: missing "question"'),
    (mutated(lambda r: r["data"][0]["paragraphs"][0].pop("context")), 'data[0].paragraphs[0]: missing "context"'),
    (mutated(lambda r: r["data"][0]["paragraphs"][0]["qas"][0]["answers"][1].update(answer_start="45")),
     "data[0].paragraphs[0].qas[0].answers[1].answer_start: expected a number, found a string"),
    (mutated(lambda r: r["data"][0]["paragraphs"][0]["qas"][0]["answers"][0].update(answer_start=-1)),
     "is negative"),
    (mutated(lambda r: r["data"][0]["paragraphs"][0]["qas"][0].update(is_impossible="no")),
     "is_impossible: expected true/false, found a string"),
    (mutated(lambda r: r["data"][0]["paragraphs"][0]["qas"].append(r["data"][0]["paragraphs"][0]["qas"][0])),
     "qas[1]: duplicate id 'q1' (first at data[0].paragraphs[0].qas[0])"),
    (mutated(lambda r: r["data"].append("article")), "data[1]: expected an object, found a string"),
    (mutated(lambda r: r["data"][0]["paragraphs"][0]["qas"][0].update(id=True)), "id: expected a string or a number"),
    ("[" * 100_000, "not valid JSON"),
])
def test_squad_errors(tmp_path, text, needle):
    path = write(tmp_path, "bad.json", text)
    assert needle in error(read_squad, path, where=path)


# --------------------------------------------------------------------------- prediction inputs

def test_read_text_lines(tmp_path):
    path = write(tmp_path, "in.txt", "first text\n\nsecond\twith a pair\n")
    assert [(e.text, e.text_pair, e.label, e.guid) for e in read_text_lines(path)] == [
        ("first text", None, None, "1"), ("second", "with a pair", None, "3")]
    path = write(tmp_path, "in.jsonl", '{"text": "a"}\n{"text": "b", "text_pair": "c", "id": 7}\n')
    assert [(e.text, e.text_pair, e.guid) for e in read_text_lines(path)] == [("a", None, "1"), ("b", "c", "7")]
    bad = write(tmp_path, "bad.txt", "ok\na\tb\tc\n")
    assert "3 tab-separated columns" in error(read_text_lines, bad, where=f"{bad}:2")
    bad = write(tmp_path, "bad.jsonl", '{"text": "a"}\n{"body": "b"}\n')
    assert "'text'" in error(read_text_lines, bad, where=f"{bad}:2")
    assert "no texts" in error(read_text_lines, write(tmp_path, "e.txt", "\n\n"), where="e.txt")
    assert ".txt" in error(read_text_lines, write(tmp_path, "x.csv", "a\n"), where="x.csv")


# --------------------------------------------------------------------------- the real files in ../shared/data

def real(relative):
    path = TASKS / relative
    if not path.exists():
        pytest.skip(f"{path} not found")
    return path


def test_real_rotten_tomatoes_dev():
    path = real("rotten_tomatoes/dev.tsv")
    examples, info = read_classification(path)
    assert info["layout"] == "glue:sst2" and info["labels"] == ["0", "1"] and not info["is_regression"]
    assert len(examples) == sum(1 for line in path.read_text(encoding="utf-8").splitlines()[1:] if line.strip())
    assert examples[0].source == f"{path}:2" and all(e.text and e.text_pair is None for e in examples)
    _, train_info = read_classification(real("rotten_tomatoes/train.tsv"))
    check_labels(train_info["labels"], examples, path)


def test_real_brown_pos_dev():
    path = real("brown_pos/dev.conll")
    examples = read_conll(path)
    assert len(examples) > 1000 and examples[0].source == f"{path}:1"
    assert all(len(e.words) == len(e.tags) > 0 for e in examples)
    tokens = sum(1 for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    assert sum(len(e.words) for e in examples) == tokens


def test_real_squad_sample():
    path = real("squad_sample/dev-v1.1-sample.json")
    examples, version = read_squad(path)
    assert version == "1.1" and examples and all(e.answers and not e.is_impossible for e in examples)
    assert examples[0].qid == "5733be284776f41900661182"
    assert examples[0].answers[0] == QAAnswer("Saint Bernadette Soubirous", 515)
    for e in examples:  # the sample is real data: its answers do occur at their offsets
        for answer in e.answers:
            assert e.context[answer.start:answer.start + len(answer.text)] == answer.text


def test_the_truncating_copy_is_made_once_per_tokenizer_and_length(tmp_path):
    """Copying a tokenizer re-parses its vocabulary: a service featurising one request at a time reuses it."""
    from tokenizers import Tokenizer, models

    from electra.finetuning.tasks import truncating

    vocab = {"[PAD]": 0, "[UNK]": 1, "a": 2}
    tok, other = (Tokenizer(models.WordPiece(vocab, unk_token="[UNK]")) for _ in range(2))
    first = truncating(tok, 8)
    assert truncating(tok, 8) is first and first is not tok
    assert tok.truncation is None and first.truncation["max_length"] == 8  # the original stays untouched
    assert truncating(tok, 16) is not first and truncating(other, 8) is not first
