"""Shared fixtures: where the shared datasets live, small CSV writers, a private cache folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("JAXSENTI_DATA_DIR", REPO.parent / "shared" / "data"))

# Tests that need the real bert-base-chinese tokenizer/config read $JAXSENTI_BERT_TOKENIZER_DIR when
# their module is imported; without it they use the copy shipped in the package, so a fresh clone
# needs neither shared/ nor the Hugging Face hub.
if not os.environ.get("JAXSENTI_BERT_TOKENIZER_DIR"):
    from jaxsenti.assets import bert_tokenizer_dir

    os.environ["JAXSENTI_BERT_TOKENIZER_DIR"] = str(bert_tokenizer_dir())


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    os.environ.setdefault("JAXSENTI_CACHE", str(tmp_path_factory.mktemp("jaxsenti-cache")))
    os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    """Drop JAX's compiled programs after each test module. Each one holds a few memory mappings of its machine
    code, and the whole suite in one process compiles thousands: past the kernel's limit (vm.max_map_count,
    65,530) the next compile crashed inside XLA (SIGSEGV or SIGABRT, late in the suite, in whichever test)."""
    yield
    import sys

    if "jax" in sys.modules:
        sys.modules["jax"].clear_caches()


@pytest.fixture(scope="session")
def dianping_path() -> Path:
    p = DATA_DIR / "dianping.csv"
    if not p.exists():
        pytest.skip(f"{p} not present; set JAXSENTI_DATA_DIR (see README)")
    return p


@pytest.fixture(scope="session")
def dianping(dianping_path):
    from jaxsenti.data import load_reviews

    return load_reviews(dianping_path)


@pytest.fixture
def write_csv(tmp_path):
    """Write text (or bytes) to a CSV file in tmp_path and return its path."""

    def _write(content: str | bytes, name: str = "reviews.csv") -> Path:
        p = tmp_path / name
        if isinstance(content, bytes):
            p.write_bytes(content)
        else:
            p.write_text(content, encoding="utf-8")
        return p

    return _write


POSITIVE = ["菜很好吃，服务也很好", "环境不错，味道很棒", "非常满意，下次还来", "好吃不贵，推荐", "服务热情，菜品新鲜",
            "味道正宗，很喜欢", "性价比高，很划算", "甜品好吃，环境优雅"]
NEGATIVE = ["菜很难吃，服务很差", "环境太差，味道一般", "非常失望，再也不来", "又贵又难吃", "服务态度恶劣，上菜慢",
            "味道很差，不推荐", "价格太贵，不值", "吃完拉肚子，恶心"]


@pytest.fixture
def tiny_csv(write_csv):
    """48 short synthetic reviews (balanced), enough to train a tiny model for a few steps."""
    rows = ["comment,sentiment"]
    for k in range(3):
        rows += [f"{t}{'！' * k},1" for t in POSITIVE] + [f"{t}{'。' * k},0" for t in NEGATIVE]
    # vary lengths so more than one bucket is used
    rows += [f"{POSITIVE[i]}，{POSITIVE[i + 1]}，{POSITIVE[i + 2]}{'啊' * i},1" for i in range(4)]
    rows += [f"{NEGATIVE[i]}，{NEGATIVE[i + 1]}，{NEGATIVE[i + 2]}{'唉' * i},0" for i in range(4)]
    return write_csv("\n".join(rows) + "\n")


@pytest.fixture
def corpus_txt(tmp_path):
    """300 lines of unlabeled review-like text (one per line), for tiny pretraining runs."""
    import numpy as np

    rng = np.random.default_rng(0)
    phrases = POSITIVE + NEGATIVE
    lines = ["，".join(rng.choice(phrases, size=rng.integers(1, 4))) for _ in range(300)]
    p = tmp_path / "corpus.txt"
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return p
