"""Maintainer's check: the jaxsenti command as a hostile user drives it, case by case, each in a fresh process.

    python tools/hostile_probe.py [--work DIR] [--md probe.md] [--only SUBSTRING]

Builds a workspace (a tiny review CSV, a tiny LSTM config, a model trained from them, an export, a folder a
live run holds), then runs every case below with ``HOME`` pointing into the workspace. A case passes when its
exit code is the expected one, a failure ends in one ``jaxsenti: error:`` (or argparse) line with no
traceback, the line says what the case expects it to say, and no file that existed before the case was
deleted or changed (for a failure: nothing anywhere in the workspace changed). Prints one row per case;
exit 1 when any case fails.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from jaxsenti.ownership import LOCK_NAME  # noqa: E402

TINY = '''"""Tiny LSTM for the probe."""
from jaxsenti.config import DataConfig, OptimConfig, TrainConfig
from jaxsenti.models.lstm import LSTMConfig


def get_config():
    return TrainConfig(name="tiny", model=LSTMConfig(embed_dim=8, hidden_dim=8, num_layers=1, dropout=0.0),
                       data=DataConfig(split=(0.6, 0.2, 0.2)), optim=OptimConfig(name="adam", lr=1e-2),
                       batch_size=8, eval_batch_size=16, epochs=1, patience=0, max_len=32, buckets=(8, 32))
'''
POS = ["菜很好吃，服务也热情", "环境不错，下次还来", "味道正宗，价格实惠", "老板人很好，分量足"]
NEG = ["太难吃了，再也不来", "服务态度差，等了很久", "又贵又难吃", "卫生很差，有苍蝇"]
HOLD = textwrap.dedent("""
    import fcntl, os, sys
    fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.write(fd, f"{os.getpid()}\\n".encode())
    print("locked", flush=True)
    sys.stdin.read()
""")


@dataclass
class Case:
    name: str
    argv: list[str]
    rc: int = 2
    says: str = ""  # a fragment the error line (or stdout, for rc 0) must hold
    setup: object = None  # callable(work) run before the snapshot
    out: str = ""  # what a successful case may write or replace (under the workspace)
    outcome: str = field(default="", init=False)


def snapshot(root: Path) -> dict[str, str]:
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if p.is_symlink():
            out[rel] = "link:" + os.readlink(p)
        elif p.is_file() and p.name != LOCK_NAME:
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def write(path: Path, data: str | bytes, encoding: str = "utf-8") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data if isinstance(data, bytes) else data.encode(encoding))


def copy_model(w: Path, name: str) -> Path:
    dst = w / name
    if not dst.exists():
        shutil.copytree(w / "m", dst, symlinks=True)
    return dst


def cases(w: Path) -> list[Case]:
    cfg, data, m = str(w / "tiny.py"), str(w / "d" / "reviews.csv"), str(w / "m")
    train = ["train", "lstm", "--config", cfg, "--quiet"]
    rows = "comment,sentiment\n" + "".join(f"{t},1\n" for t in POS) + "".join(f"{t},0\n" for t in NEG)

    def damage(name, rel, data):
        def go(w):
            write(copy_model(w, name) / rel, data)
        return go

    def remove(name, rel):
        def go(w):
            p = copy_model(w, name) / rel
            shutil.rmtree(p) if p.is_dir() else p.unlink()
        return go

    def csv_file(name, content, encoding="utf-8"):
        return lambda w: write(w / "u" / name, content, encoding)

    def user_files(folder, *rels):
        def go(w):
            for r in rels:
                write(w / folder / r, "mine\n")
        return go

    def link(name, target):
        def go(w):
            p = w / "cwd" / name
            if not p.is_symlink():
                p.symlink_to(w / target)
        return go

    u = w / "u"
    return [
        # --- outputs: protected folders in other spellings ---
        Case("train --out . (the empty current folder): written in place", train + ["--data", data, "--out", "."],
             rc=0, out="cwd/"),
        Case("train --out . --overwrite (the current folder, holding that run)",
             train + ["--data", data, "--out", ".", "--overwrite"], says="current folder"),
        Case("train --out $PWD --overwrite (the current folder, absolute)",
             train + ["--data", data, "--out", str(w / "cwd"), "--overwrite"], says="current folder"),
        Case("train --out .. (an ancestor of the current folder)", train + ["--data", data, "--out", "..", "--overwrite"]),
        Case("export --out / (a filesystem root)", ["export", "--model", m, "--out", "/", "--overwrite"]),
        Case("export --out $HOME spelled with a trailing slash", ["export", "--model", m, "--out", str(w / "home") + "/",
                                                                  "--overwrite"], says="home"),
        Case("export --out m/. (the model itself, dotted)", ["export", "--model", m, "--out", m + "/.", "--overwrite"]),
        Case("export --out m//sub/.. (the model, doubled slashes)", ["export", "--model", m, "--out", m + "//sub/..",
                                                                   "--overwrite"]),
        Case("export --out inside the model folder", ["export", "--model", m, "--out", m + "/exported"],
             says="inside"),
        Case("export --out a symlink to the model folder", ["export", "--model", m, "--out", "mlink", "--overwrite"],
             setup=link("mlink", "m")),
        Case("train --out a file", train + ["--data", data, "--out", data]),
        Case("eda --out the data's folder", ["eda", "--data", data, "--out", str(w / "d"), "--overwrite"]),
        Case("baselines --out the data's folder", ["baselines", "--data", data, "--out", str(w / "d"), "--overwrite",
                                                   "--quiet"]),
        Case("train --overwrite a model folder with a user file 3 levels down",
             train + ["--data", data, "--out", str(w / "m_user"), "--overwrite"],
             setup=lambda w: (copy_model(w, "m_user"), write(w / "m_user" / "a" / "b" / "c.txt", "mine")),
             says="c.txt"),
        Case("export --overwrite a folder with only a hidden user file", ["export", "--model", m, "--out",
                                                                         str(w / "hid"), "--overwrite"],
             setup=user_files("hid", ".notes")),
        Case("export --overwrite its own export: replaced", ["export", "--model", m, "--out", str(w / "e1"),
                                                            "--overwrite"], rc=0, out="e1/"),
        Case("export over its own export without --overwrite", ["export", "--model", m, "--out", str(w / "e1")],
             says="--overwrite"),
        Case("export --out a dangling symlink: written through, the link stays",
             ["export", "--model", m, "--out", "dangling"], rc=0, setup=link("dangling", "through"), out="through/"),
        Case("predict --out the input CSV", ["predict", "--model", m, "--csv", data, "--out", data]),
        Case("predict --out the input CSV via ..", ["predict", "--model", m, "--csv", data, "--out",
                                                    str(w / "d" / ".." / "d" / "reviews.csv")]),
        Case("predict --out a symlink to the input", ["predict", "--model", m, "--csv", data, "--out", "inlink"],
             setup=link("inlink", "d/reviews.csv")),
        Case("predict --out the model's config.json", ["predict", "--model", m, "--csv", data, "--out",
                                                       m + "/config.json"], says="model folder"),
        Case("predict --out a user's CSV", ["predict", "--model", m, "--csv", data, "--out", str(u / "mine.csv")],
             setup=csv_file("mine.csv", "a,b\n1,2\n"), says="not a file jaxsenti wrote"),
        Case("lr-find --out a user's PNG", ["lr-find", "lstm", "--config", cfg, "--data", data, "--out",
                                            str(u / "plot.png")],
             setup=csv_file("plot.png", b"\x89PNG\r\n\x1a\nnot ours")),
        Case("lr-find --out x.txt (not an image)", ["lr-find", "lstm", "--config", cfg, "--data", data, "--out",
                                                    str(w / "x.txt")]),
        Case("export into a folder a live run holds", ["export", "--model", m, "--out", str(w / "live" / "sub")],
             says="pid"),
        Case("eda --overwrite a folder a live run holds", ["eda", "--data", data, "--out", str(w / "live"),
                                                           "--overwrite"], says="pid"),
        Case("predict --out into a folder a live run holds", ["predict", "--model", m, "--csv", data, "--out",
                                                             str(w / "live" / "p.csv")], says="pid"),
        # --- inputs: data files ---
        Case("train --data a missing file", train + ["--data", str(u / "nope.csv"), "--out", str(w / "o1")]),
        Case("train --data a folder", train + ["--data", str(w / "d"), "--out", str(w / "o2")]),
        Case("train --data a 0-byte file", train + ["--data", str(u / "empty.csv"), "--out", str(w / "o3")],
             setup=csv_file("empty.csv", "")),
        Case("train --data a header-only CSV", train + ["--data", str(u / "header.csv"), "--out", str(w / "o4")],
             setup=csv_file("header.csv", "comment,sentiment\n")),
        Case("train --data labels pos/neg words", train + ["--data", str(u / "words.csv"), "--out", str(w / "o5")],
             setup=csv_file("words.csv", rows.replace(",1\n", ",pos\n").replace(",0\n", ",neg\n"))),
        Case("train --data one class only", train + ["--data", str(u / "one.csv"), "--out", str(w / "o6")],
             setup=csv_file("one.csv", rows.replace(",0\n", ",1\n"))),
        Case("train --data a label column missing", train + ["--data", str(u / "nolabel.csv"), "--out", str(w / "o7")],
             setup=csv_file("nolabel.csv", "comment\n" + "".join(f"{t}\n" for t in POS + NEG))),
        Case("eda --data UTF-16-LE without a BOM", ["eda", "--data", str(u / "u16.csv"), "--out", str(w / "o8")],
             setup=csv_file("u16.csv", rows, "utf-16-le"), says="utf-16"),
        Case("eda --data GB18030 with --encoding gbk", ["eda", "--data", str(u / "gb.csv"), "--encoding", "gbk",
                                                        "--out", str(w / "o9")],
             setup=csv_file("gb.csv", rows + "𠀀好吃,1\n", "gb18030"), says="gb18030"),
        Case("eda --data random bytes", ["eda", "--data", str(u / "rand.csv"), "--out", str(w / "o10")],
             setup=csv_file("rand.csv", os.urandom(2000))),
        Case("predict --csv --text-column that is not there", ["predict", "--model", m, "--csv", data,
                                                                "--text-column", "nope"], says="nope"),
        # --- inputs: model folders ---
        Case("predict --model a CSV file", ["predict", "--model", data, "好吃"]),
        Case("predict --model a missing folder", ["predict", "--model", str(w / "nope"), "好吃"]),
        Case("predict --model an empty folder", ["predict", "--model", str(w / "emptydir"), "好吃"],
             setup=lambda w: (w / "emptydir").mkdir(exist_ok=True)),
        Case("predict --model its HF export", ["predict", "--model", str(w / "e1"), "好吃"]),
        Case("predict --model without config.json", ["predict", "--model", str(w / "m_nocfg"), "好吃"],
             setup=remove("m_nocfg", "config.json"), says="config.json"),
        Case("predict --model with config.json not JSON", ["predict", "--model", str(w / "m_badcfg"), "好吃"],
             setup=damage("m_badcfg", "config.json", "{not json"), says="config.json"),
        Case("predict --model with vocab.json truncated", ["predict", "--model", str(w / "m_badvocab"), "好吃"],
             setup=damage("m_badvocab", "vocab.json", '{"<pad>": 0, "好'), says="vocab.json"),
        Case("predict --model without its checkpoints", ["predict", "--model", str(w / "m_noweights"), "好吃"],
             setup=remove("m_noweights", "checkpoints")),
        Case("export --model without its checkpoints", ["export", "--model", str(w / "m_noweights"), "--out",
                                                        str(w / "o11")]),
        Case("train bert --pretrained an LSTM model folder", ["train", "bert", "--data", data, "--pretrained", m,
                                                              "--out", str(w / "o12")]),
        Case("train bert --pretrained a folder of a random model.safetensors",
             ["train", "bert", "--data", data, "--pretrained", str(w / "fakebert"), "--out", str(w / "o13")],
             setup=lambda w: (write(w / "fakebert" / "model.safetensors", os.urandom(512)),
                              write(w / "fakebert" / "config.json", '{"model_type": "bert", "hidden_size": 16, '
                                    '"num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 32, '
                                    '"vocab_size": 200}')),
             says="damaged"),
        # --- configs and overrides ---
        Case("--config a missing file", ["train", "lstm", "--config", str(u / "nope.py"), "--data", data, "--out",
                                         str(w / "o14")]),
        Case("--config with a syntax error", ["train", "lstm", "--config", str(u / "syntax.py"), "--data", data,
                                              "--out", str(w / "o15")], setup=csv_file("syntax.py", "def get_config(:\n")),
        Case("--config without get_config", ["train", "lstm", "--config", str(u / "noget.py"), "--data", data,
                                             "--out", str(w / "o16")], setup=csv_file("noget.py", "X = 1\n")),
        Case("--config x.txt", ["train", "lstm", "--config", str(u / "x.txt"), "--data", data, "--out", str(w / "o17")],
             setup=csv_file("x.txt", "hello\n")),
        Case("--set optim.lr=abc", train + ["--data", data, "--set", "optim.lr=abc", "--out", str(w / "o18")]),
        Case("--set no.such.key=1", train + ["--data", data, "--set", "no.such.key=1", "--out", str(w / "o19")]),
        Case("--set epochs=-1", train + ["--data", data, "--set", "epochs=-1", "--out", str(w / "o20")]),
        Case("--set batch_size=0", train + ["--data", data, "--set", "batch_size=0", "--out", str(w / "o21")]),
        # --- pretraining and the command line ---
        Case("pretrain lstm --corpus a 0-byte file", ["pretrain", "lstm", "--corpus", str(u / "empty.txt"), "--out",
                                                      str(w / "o22")], setup=csv_file("empty.txt", "")),
        Case("pretrain bert --init-from an LSTM model", ["pretrain", "bert", "--corpus", data, "--init-from", m,
                                                         "--out", str(w / "o23")]),
        Case("no command", []),
        Case("an unknown command", ["fly"]),
        Case("predict an empty text: no label", ["predict", "--model", m, "   "], rc=0, says='"label": null'),
    ]


def build(w: Path, env: dict) -> None:
    rows = "comment,sentiment\n" + "".join(f"{t}{'！' * k},1\n" for k in range(4) for t in POS) + \
           "".join(f"{t}{'。' * k},0\n" for k in range(4) for t in NEG)
    write(w / "d" / "reviews.csv", rows)
    write(w / "tiny.py", TINY)
    for sub in ("cwd", "home", "u"):
        (w / sub).mkdir(parents=True, exist_ok=True)
    for argv in (["train", "lstm", "--config", str(w / "tiny.py"), "--data", str(w / "d" / "reviews.csv"), "--out",
                  str(w / "m"), "--quiet"],
                 ["export", "--model", str(w / "m"), "--out", str(w / "e1")]):
        if not (w / argv[argv.index("--out") + 1]).exists():
            subprocess.run([sys.executable, "-m", "jaxsenti", *argv], cwd=w / "cwd", env=env, check=True,
                           capture_output=True)


def run_case(c: Case, w: Path, env: dict) -> bool:
    if c.setup:
        c.setup(w)
    before = snapshot(w)
    p = subprocess.run([sys.executable, "-m", "jaxsenti", *c.argv], cwd=w / "cwd", env=env, capture_output=True,
                       text=True, timeout=900)
    lines = [x for x in p.stderr.splitlines() if x.strip() and not x.startswith("[jaxsenti]")]
    after = snapshot(w)
    problems = []
    if p.returncode != c.rc:
        problems.append(f"exit {p.returncode}, expected {c.rc}")
    if "Traceback" in p.stderr:
        problems.append("traceback")
    if p.returncode == 2:
        errors = [x for x in lines if ": error:" in x]
        if len(errors) != 1:
            problems.append(f"{len(errors)} error lines")
    said = (lines[-1] if lines else "") if p.returncode else p.stdout.strip().splitlines()[-1:] and \
        p.stdout.strip().splitlines()[-1]
    if c.says and c.says not in (p.stderr if p.returncode else p.stdout):
        problems.append(f"does not say {c.says!r}")
    changed = [k for k, v in before.items() if after.get(k) != v and not (c.out and k.startswith(c.out))]
    if p.returncode:
        changed += [k for k in after if k not in before]
    if changed:
        problems.append(f"changed/removed: {', '.join(changed[:3])}")
    c.outcome = f"exit {p.returncode}: {said[:160]}" + (f" — FAIL ({'; '.join(problems)})" if problems else "")
    return not problems


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", help="workspace folder (default: a temporary one)")
    ap.add_argument("--md", help="also write the table here")
    ap.add_argument("--only", default="", help="run the cases whose name holds this")
    a = ap.parse_args(argv)
    w = Path(a.work or tempfile.mkdtemp(prefix="jaxsenti-probe-")).resolve()
    env = os.environ | {"HOME": str(w / "home"), "JAXSENTI_NO_DOWNLOAD": "1", "MPLBACKEND": "Agg",
                        "JAXSENTI_CACHE": str(Path(tempfile.gettempdir()) / "jaxsenti-probe-cache")}
    build(w, env)
    (w / "live").mkdir(exist_ok=True)
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(w / "live" / LOCK_NAME)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline() == "locked\n"
    rows, failed = [], 0
    try:
        for i, c in enumerate(x for x in cases(w) if a.only in x.name):
            ok = run_case(c, w, env)
            failed += not ok
            rows.append(f"| {i + 1} | {c.name} | {c.outcome.replace('|', '/')} |")
            print(rows[-1], flush=True)
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    table = "| # | case | outcome |\n|---|---|---|\n" + "\n".join(rows) + "\n"
    if a.md:
        Path(a.md).write_text(table, encoding="utf-8")
    print(f"{len(rows) - failed} of {len(rows)} cases hold (workspace {w})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
