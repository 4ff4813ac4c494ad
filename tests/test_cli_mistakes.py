"""A table of mistaken command lines: every one is one line on stderr and exit status 2, never a traceback
(docs/reliability.md, "Bad input"). Paths that are files, folders, missing or read-only; wrong types and
ranges for the flags of every verb. Run in-process through ``electra.cli.main``: an uncaught exception fails
the test with its traceback; argparse's own refusals exit 2 with one line too."""

import pytest
from faults import mounted_tmpfs
from synthetic import SMALL_RUN, make_data_dir
from toy_tasks import save_toy_model, write_sst

from electra.cli import main
from electra.pretraining.pretrain import pretrain


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A data folder, a 3-step run, a transformers folder with a tokenizer, task files and a fine-tuned model."""
    from electra.finetuning.finetune import finetune

    root = tmp_path_factory.mktemp("world")
    w = {"root": root, "file": root / "a-file.txt", "missing": root / "missing"}
    w["file"].write_text("just text\n")
    w["data"] = make_data_dir(root / "data")
    w["run"] = pretrain(w["data"], root / "run", preset="tiny", max_steps=3,
                        overrides=[*SMALL_RUN, "train.save_every=3"], progress=False)
    (root / "toy").mkdir()
    w["hf"] = save_toy_model(root / "toy", [], 64)
    w["train"] = write_sst(root / "train.tsv", 32, 0)
    w["dev"] = write_sst(root / "dev.tsv", 16, 1)
    finetune(w["hf"], "classification", w["train"], w["dev"], root / "ft", overrides=["epochs=1", "batch_size=16"],
             progress=False)
    w["ft"] = root / "ft"
    w["corpus"] = root / "corpus.txt"
    w["corpus"].write_text("the cat sat on the mat .\n" * 20)
    w["texts"] = root / "texts.txt"
    w["texts"].write_text("good film\nbad film\n")
    return w


def F(name):
    """A path: world[name], or with ``@`` a path under the module's folder (``@RO/``: the read-only one)."""
    return ("path", name)


PROBE = ["--probe", ("probe", "")]  # a valid probe: classification on the world's train and dev files

# (the command's arguments, a word its error line must contain)
MISTAKES = [
    # tokenizer train
    (["tokenizer", "train", "--input", F("missing"), "--out", F("@tok1")], "missing"),
    (["tokenizer", "train", "--input", F("corpus"), "--out", F("file")], "a-file.txt"),
    (["tokenizer", "train", "--input", F("corpus"), "--out", F("@a-file.txt/tok")], "a-file.txt"),
    (["tokenizer", "train", "--input", F("corpus"), "--vocab-size", "abc", "--out", F("@tok2")], "vocab-size"),
    (["tokenizer", "train", "--input", F("corpus"), "--vocab-size", "-5", "--out", F("@tok3")], "vocab"),
    (["tokenizer", "train", "--input", F("data"), "--out", F("@tok4")], "corpus"),
    # data build
    (["data", "build", "--input", F("corpus"), "--tokenizer", F("missing"), "--out", F("@d1")], "missing"),
    (["data", "build", "--input", F("corpus"), "--tokenizer", F("file"), "--out", F("@d2")], "a-file.txt"),
    (["data", "build", "--input", F("corpus"), "--tokenizer", F("hf"), "--out", F("file")], "a-file.txt"),
    (["data", "build", "--input", F("corpus"), "--tokenizer", F("hf"), "--max-seq-length", "100000000",
      "--out", F("@d3")], "max"),
    (["data", "build", "--input", F("corpus"), "--tokenizer", F("hf"), "--max-seq-length", "2", "--out", F("@d4")],
     "max"),
    (["data", "build", "--input", F("corpus"), "--tokenizer", F("hf"), "--valid-fraction", "1.5", "--out", F("@d5")],
     "valid"),
    (["data", "build", "--input", F("corpus"), "--tokenizer", F("hf"), "--max-seq-length", "x", "--out", F("@d6")],
     "max-seq-length"),
    # pretrain
    (["pretrain", "--data", F("missing"), "--out", F("@r1")], "missing"),
    (["pretrain", "--data", F("file"), "--out", F("@r2")], "a-file.txt"),
    (["pretrain", "--data", F("corpus"), "--out", F("@r2b")], "corpus.txt"),
    (["pretrain", "--preset", "tiny", "--data", F("data"), "--out", F("file")], "a-file.txt"),
    (["pretrain", "--preset", "tiny", "--data", F("data"), "--out", F("@a-file.txt/run")], "a-file.txt"),
    (["pretrain", "--preset", "tiny", "--data", F("data"), "--out", F("run")], "--resume"),
    (["pretrain", "--preset", "tiny", "--data", F("data"), "--max-steps", "-1", "--out", F("@r3")], "max_steps"),
    (["pretrain", "--preset", "tiny", "--data", F("data"), "--flops-budget", "-1", "--out", F("@r4")], "flops"),
    (["pretrain", "--preset", "tiny", "--data", F("data"), "--flops-budget", "nan", "--out", F("@r5")], "flops"),
    (["pretrain", "--preset", "tiny", "--data", F("data"), "--set", "nonsense", "--out", F("@r6")], "nonsense"),
    (["pretrain", "--preset", "tiny", "--data", F("data"), "--set", "train.learning_rate=abc", "--out", F("@r7")],
     "learning_rate"),
    (["pretrain", "--data", F("data"), "--out", F("data"), "--resume"], "config.json"),
    (["pretrain", "--data", F("data"), "--out", F("missing"), "--resume"], "missing"),
    (["pretrain", "--preset", "tiny", "--data", F("data"), "--out", F("@r8"), "--init", F("missing")], "missing"),
    (["pretrain", "--preset", "tiny", "--data", F("data"), "--out", F("@r9"), "--init", F("hf"), F("hf"), F("hf")],
     "--init"),
    (["pretrain", "--data", F("data"), "--out", F("run"), "--resume", "--init", F("hf")], "--init"),
    # export, plot, inspect
    (["export", F("missing"), "--out", F("@e1")], "missing"),
    (["export", F("file"), "--out", F("@e2")], "a-file.txt"),
    (["export", F("run"), "--out", F("@e3"), "--step", "999"], "999"),
    (["export", F("run"), "--out", F("file")], "a-file.txt"),
    (["export", F("run"), "--out", F("@a-file.txt/hf")], "a-file.txt"),
    (["export", F("run"), "--out", F("@e4"), "--step", "x"], "--step"),
    (["plot", F("missing")], "missing"),
    (["plot", F("data")], "metrics.jsonl"),
    (["plot", F("run"), "--out", F("@a-file.txt/c.png")], "a-file.txt"),
    (["inspect", "--model", F("missing"), "text"], "missing"),
    (["inspect", "--model", F("data"), "text"], "config.json"),
    # finetune, evaluate, predict
    (["finetune", "--model", F("missing"), "--task", "classification", "--train", F("train"), "--dev", F("dev"),
      "--out", F("@f1")], "missing"),
    (["finetune", "--model", F("hf"), "--task", "classification", "--train", F("missing"), "--dev", F("dev"),
      "--out", F("@f2")], "missing"),
    (["finetune", "--model", F("hf"), "--task", "classification", "--train", F("data"), "--dev", F("dev"),
      "--out", F("@f3")], "data"),
    (["finetune", "--model", F("hf"), "--task", "classification", "--train", F("train"), "--dev", F("dev"),
      "--out", F("file")], "a-file.txt"),
    (["finetune", "--model", F("hf"), "--task", "classification", "--train", F("train"), "--dev", F("dev"),
      "--out", F("@f4"), "--set", "max_seq_length=1"], "max_seq_length"),
    (["finetune", "--model", F("hf"), "--task", "classification", "--train", F("train"), "--dev", F("dev"),
      "--out", F("@f5"), "--seeds", "0"], "seeds"),
    (["finetune", "--model", F("hf"), "--task", "classification", "--train", F("train"), "--dev", F("dev"),
      "--out", F("@f6"), "--set", "epochs=abc"], "epochs"),
    (["finetune", "--model", F("hf"), "--task", "nonsense", "--train", F("train"), "--dev", F("dev"),
      "--out", F("@f7")], "--task"),
    (["evaluate", "--model", F("missing"), "--data", F("dev")], "missing"),
    (["evaluate", "--model", F("ft"), "--data", F("missing")], "missing"),
    (["evaluate", "--model", F("ft"), "--data", F("dev"), "--out", F("root")], "folder"),
    (["evaluate", "--model", F("ft"), "--data", F("dev"), "--out", F("dev")], "input"),
    (["predict", "--model", F("ft"), "--input", F("texts"), "--out", F("root")], "folder"),
    (["predict", "--model", F("ft"), "--input", F("texts"), "--out", F("@a-file.txt/p.jsonl")], "a-file.txt"),
    (["predict", "--model", F("ft"), "--input", F("texts"), "--out", F("texts")], "input"),
    (["predict", "--model", F("ft"), "--input", F("missing"), "--out", F("@p.jsonl")], "missing"),
    (["predict", "--model", F("run"), "--input", F("texts"), "--out", F("@p2.jsonl")], "run"),
    # export-onnx, serve
    (["export-onnx", F("missing"), "--out", F("@o1")], "missing"),
    (["export-onnx", F("ft"), "--out", F("file")], "a-file.txt"),
    (["serve", F("missing")], "missing"),
    (["serve", F("ft"), "--port", "70000"], "port"),
    (["serve", F("ft"), "--max-batch-size", "0"], "max"),
    (["serve", F("ft"), "--api-key-file", F("missing")], "missing"),
    (["serve", F("ft"), "--timeout", "nan"], "timeout"),
    # study, demo
    (["study", "--data", F("data"), "--out", F("@s1"), "--budgets", "abc", *PROBE], "budgets"),
    (["study", "--data", F("data"), "--out", F("@s2"), "--budgets", "1e12", "--seeds", "x", *PROBE], "seeds"),
    (["study", "--data", F("data"), "--out", F("@s3"), "--budgets", "-1e12", *PROBE], "budgets"),
    (["study", "--data", F("data"), "--out", F("@s4"), "--budgets", "1e12", "--jobs", "0", *PROBE], "jobs"),
    (["study", "--data", F("data"), "--out", F("@s5"), "--budgets", "1e12", "--probe", "nonsense"], "probe"),
    (["demo", "--out", F("file"), "--corpus", F("corpus")], "a-file.txt"),
    (["demo", "--out", F("data"), "--corpus", F("corpus")], "data"),
    (["demo", "--out", F("@demo1"), "--corpus", F("missing")], "missing"),
    (["demo", "--out", F("@demo2"), "--corpus", F("corpus"), "--max-steps", "-3"], "max"),
]


def resolve(arg, world, read_only=None):
    if isinstance(arg, tuple) and arg[0] == "probe":
        return f"classification:{world['train']}:{world['dev']}"
    if isinstance(arg, tuple):
        name = arg[1]
        if name.startswith("@RO/"):
            return str(read_only / name[4:])
        return str(world["root"] / name[1:]) if name.startswith("@") else str(world[name])
    return arg


@pytest.mark.parametrize("args,needle", MISTAKES, ids=[" ".join(a if isinstance(a, str) else a[1] or a[0]
                                                                 for a in args) for args, _ in MISTAKES])
def test_a_mistaken_command_is_one_line(world, capsys, args, needle):
    argv = [resolve(a, world) for a in args] + ["--quiet"]
    before = sorted(p.relative_to(world["root"]).as_posix() for p in world["root"].rglob("*"))
    try:
        code = main(argv)
    except SystemExit as e:  # argparse
        code = e.code
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, (argv, err)
    assert len(err) == 1 and "error" in err[0], err
    assert needle in err[0], err[0]
    after = sorted(p.relative_to(world["root"]).as_posix() for p in world["root"].rglob("*"))
    assert after == before  # a refused command writes nothing, leaves no temporary file


def test_the_table_is_long_enough():
    assert len(MISTAKES) >= 40


@pytest.fixture
def read_only(tmp_path):
    """A read-only file system."""
    with mounted_tmpfs(tmp_path / "ro", "ro,size=1m") as folder:
        yield folder


@pytest.mark.parametrize("args", [
    ["pretrain", "--preset", "tiny", "--data", F("data"), "--out", F("@RO/run")],
    ["export", F("run"), "--out", F("@RO/hf")],
    ["finetune", "--model", F("hf"), "--task", "classification", "--train", F("train"), "--dev", F("dev"),
     "--out", F("@RO/ft")],
    ["predict", "--model", F("ft"), "--input", F("texts"), "--out", F("@RO/p.jsonl")],
    ["evaluate", "--model", F("ft"), "--data", F("dev"), "--out", F("@RO/m.json")],
    ["data", "build", "--input", F("corpus"), "--tokenizer", F("hf"), "--out", F("@RO/data")],
    ["tokenizer", "train", "--input", F("corpus"), "--out", F("@RO/tok")],
])
def test_a_read_only_out_is_one_line(world, read_only, capsys, args):
    argv = [resolve(a, world, read_only) for a in args] + ["--quiet"]
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "read-only" in err[0], err
