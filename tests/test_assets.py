"""The bert-base-chinese tokenizer ships inside the package, so tokenizing needs no network."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from jaxsenti.assets import bert_tokenizer_dir

REPO = Path(__file__).resolve().parents[1]
# The shared copy the assets were taken from: beside the checkout, or beside $JAXSENTI_DATA_DIR.
_SHARED_CANDIDATES = [REPO.parent / "shared"] + ([Path(os.environ["JAXSENTI_DATA_DIR"]).parent]
                                                  if os.environ.get("JAXSENTI_DATA_DIR") else [])
SHARED = next((c / "models" / "bert-base-chinese-tokenizer" for c in _SHARED_CANDIDATES
               if (c / "models" / "bert-base-chinese-tokenizer").is_dir()), _SHARED_CANDIDATES[0] / "models")
FILES = ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "config.json", "NOTICE")
SENTENCE = "这家的菜很好吃"
# [CLS] 这 家 的 菜 很 好 吃 [SEP] in bert-base-chinese's vocabulary
EXPECTED_IDS = [101, 6821, 2157, 4638, 5831, 2523, 1962, 1391, 102]


def _tokenizer(folder):
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    from transformers import BertTokenizerFast

    return BertTokenizerFast.from_pretrained(str(folder))


def test_files_present_small_and_attributed():
    d = bert_tokenizer_dir()
    assert d.is_dir() and d.is_absolute()
    for f in FILES:
        assert (d / f).is_file(), f
    size = sum(p.stat().st_size for p in d.iterdir())
    assert 300_000 < size < 1_500_000, size
    notice = (d / "NOTICE").read_text(encoding="utf-8")
    assert "Apache License, Version 2.0" in notice and "huggingface.co/bert-base-chinese" in notice


def test_packaged_tokenizer_tokenizes_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # a local folder must not need the hub
    tok = _tokenizer(bert_tokenizer_dir())
    assert tok(SENTENCE)["input_ids"] == EXPECTED_IDS
    assert tok.vocab_size == 21128


def test_same_as_shared_copy():
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} not present (the packaged copy is checked against known ids above)")
    for f in FILES[:-1]:
        if (SHARED / f).is_file():
            assert (bert_tokenizer_dir() / f).read_bytes() == (SHARED / f).read_bytes(), f
    texts = [SENTENCE, "服务太差了，再也不来！", "Hello 世界 123"]
    assert _tokenizer(bert_tokenizer_dir())(texts)["input_ids"] == _tokenizer(SHARED)(texts)["input_ids"]


def test_wheel_contains_assets(tmp_path):
    """A non-editable wheel carries the assets and finds them once installed."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    # Build from a copy so the checkout gets no build/ or *.egg-info, and VCS file lists play no part.
    for folder in ("jaxsenti", "configs"):
        shutil.copytree(REPO / folder, src / folder, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    cmd = [sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "-q", "-w", str(tmp_path / "dist")]
    if importlib.util.find_spec("setuptools") is not None:
        cmd.append("--no-build-isolation")  # no index needed when setuptools is already here
    build = subprocess.run(cmd, cwd=src, capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr
    assert "would be ignored" not in build.stderr, build.stderr  # every shipped folder is in pyproject's list
    (wheel,) = (tmp_path / "dist").glob("jaxsenti-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for f in FILES:
        assert f"jaxsenti/assets/bert-base-chinese/{f}" in names, f
    packages = [p.parent.relative_to(REPO).as_posix() for p in (REPO / "jaxsenti").rglob("__init__.py")]
    assert all(f"{p}/__init__.py" in names for p in packages), "a subpackage is missing from pyproject's package list"
    assert "jaxsenti/configs/lstm_dianping.py" in names  # the top-level configs/ ship as jaxsenti.configs
    shipped = [p.relative_to(REPO).as_posix() for p in (REPO / "jaxsenti" / "assets" / "pretrained").rglob("*") if p.is_file()]
    assert all(f in names for f in shipped)
    meta = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert "Requires-Dist: noto-cjk-sans-otc" in meta

    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)  # what a non-editable install puts in site-packages
    code = ("import jaxsenti.assets as a, pathlib; d = a.bert_tokenizer_dir(); "
            "assert pathlib.Path(a.__file__).is_relative_to(pathlib.Path(r'%s')); "
            "print(sorted(p.name for p in d.iterdir()))" % site)
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=dict(os.environ, PYTHONPATH=str(site)),
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(sorted(FILES))
