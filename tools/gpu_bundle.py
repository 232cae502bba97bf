"""What the prepared GPU check carries to a lent device machine and how much travels (the tool's limit: 64 MiB),
and what comes back from it (:func:`copy_back`, :func:`check_out_dir`).

    python tools/gpu_bundle.py --data ../shared/data        # builds .gpu_bundle/ here, prints the sizes

The device tool copies the working tree (tracked files and untracked files git does not ignore) plus the
folders named in ``carry``; together they must stay under 64 MiB. This builds the one carried folder,
``.gpu_bundle/`` (git-ignored):

* ``jieba-<version>-py3-none-any.whl``: the GPU image has no jieba and no network. Built from the jieba
  installed here (no download), without what jaxsenti never imports: ``lac_small/`` (the 10 MB PaddlePaddle
  model of ``use_paddle=True``), ``analyse/`` (keyword extraction) and ``posseg/`` (part-of-speech tagging).
* ``test-wheels/``: pytest and what it imports, built the same way, for the GPU-only tests where the image
  has no pytest (for Python >= 3.11, as here).
* ``data/dianping.csv.gz``, ``data/online_shopping_10_cats.csv.gz``: the datasets, gzipped (the machine cannot
  see ``../shared``); ``benchmarks/gpu_check.sh`` unpacks them. They are whole: the corpus rules read the 酒店 rows to
  remove their texts from the other categories, so a trimmed file would make another corpus.
* ``data/cache/mlm-tokens-*.npz``: the ``bert_mlm_small`` corpus already segmented and tokenized (about a
  minute of device time saved), stored compressed (``np.load`` reads it the same).

Total against the margin (:data:`MARGIN_MIB`, below the limit so the tree can grow) is checked here and by
``tests/test_gpu_bundle.py`` from a clean clone. Exit status 1 when the bundle is over the margin.
"""

from __future__ import annotations

import argparse
import base64
import gzip
import hashlib
import importlib.metadata
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BUNDLE = ".gpu_bundle"
LIMIT_MIB = 64  # the device tool's limit on the tree plus what is carried
MARGIN_MIB = 56  # what the bundle must stay under, so the tree and the check can grow
JIEBA_UNUSED = ("jieba/lac_small/", "jieba/analyse/", "jieba/posseg/")
DATASETS = ("dianping.csv", "online_shopping_10_cats.csv")
TEST_WHEELS = ("pytest", "pluggy", "iniconfig", "packaging", "pygments")  # the GPU-only tests run there (pytest -m gpu)
_INSTALL_ONLY = ("INSTALLER", "REQUESTED", "direct_url.json")  # written by pip at install time, not part of a wheel


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def wheel_of(name: str, dest: Path, drop: tuple[str, ...] = ()) -> Path:
    """A wheel of the distribution ``name`` installed here, without the files under ``drop`` (its RECORD lists
    what it holds; scripts outside site-packages are left out: the check runs ``python -m``)."""
    dist = importlib.metadata.distribution(name)
    info = next(str(f).split("/")[0] for f in dist.files if ".dist-info/" in str(f))
    members = []
    for f in dist.files:
        path = str(f)
        if (path.startswith(drop + ("..",)) or "__pycache__" in path or path.endswith(".pyc")
                or path.split("/")[-1] in _INSTALL_ONLY or path == f"{info}/RECORD"):
            continue
        members.append((path, Path(dist.locate_file(f)).read_bytes()))
    record = [f"{path},{_record_hash(data)},{len(data)}" for path, data in members] + [f"{info}/RECORD,,"]
    dest.mkdir(parents=True, exist_ok=True)
    wheel = dest / f"{info.removesuffix('.dist-info')}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        for path, data in members:
            z.writestr(path, data)
        z.writestr(f"{info}/RECORD", "\n".join(record) + "\n")
    return wheel


def _gzip(src: Path, dest: Path) -> None:
    with open(src, "rb") as f, open(dest, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=9, mtime=0) as g:
        shutil.copyfileobj(f, g)


def tokenization_cache(dest: Path, data_dir: Path) -> list[Path]:
    """The ``bert_mlm_small`` corpus tokenized as ``gpu_check.sh`` will pretrain it, written compressed into ``dest``."""
    import numpy as np

    os.environ["JAXSENTI_DATA_DIR"] = str(data_dir)
    os.environ.pop("JAXSENTI_BERT_TOKENIZER_DIR", None)  # the packaged tokenizer, as there
    scratch = dest.parent / ".cache-scratch"
    os.environ["JAXSENTI_CACHE"] = str(scratch)
    from jaxsenti import config
    from jaxsenti.data.corpus import tokenize_corpus
    from jaxsenti.data.encoders import tokenizer_source
    from jaxsenti.models.hf_bert import load_tokenizer
    from jaxsenti.pretrain import build_corpus

    cfg = config.load_config("bert_mlm_small", config.PretrainConfig)
    corpus = build_corpus(cfg.corpus, cfg.seed)
    tokenize_corpus(corpus.texts, load_tokenizer(tokenizer_source(cfg.task.tokenizer, None)), corpus_sha256=corpus.sha256)
    dest.mkdir(parents=True, exist_ok=True)
    out = []
    for npz in scratch.glob("mlm-tokens-*.npz"):
        with np.load(npz) as z:
            np.savez_compressed(dest / npz.name, **{k: z[k] for k in z.files})
        out.append(dest / npz.name)
    shutil.rmtree(scratch, ignore_errors=True)
    return out


def build(root: Path, data_dir: Path) -> Path:
    """``root/.gpu_bundle`` made afresh from ``data_dir`` (which holds the two datasets)."""
    bundle = root / BUNDLE
    shutil.rmtree(bundle, ignore_errors=True)
    (bundle / "data").mkdir(parents=True)
    wheel_of("jieba", bundle, JIEBA_UNUSED)
    for name in TEST_WHEELS:  # installed there only where the image lacks pytest
        wheel_of(name, bundle / "test-wheels")
    for name in DATASETS:
        _gzip(data_dir / name, bundle / "data" / f"{name}.gz")
    tokenization_cache(bundle / "data" / "cache", data_dir)
    return bundle


def tree_bytes(root: Path) -> int:
    """Bytes of what the device tool copies of the working tree: tracked files and untracked ones git does not ignore."""
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=root,
                         capture_output=True, check=True).stdout
    return sum((root / p).stat().st_size for p in out.decode().split("\0") if p and (root / p).is_file())


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def report(root: Path) -> tuple[int, list[str]]:
    """(bytes that travel, lines saying of what)."""
    tree, bundle = tree_bytes(root), folder_bytes(root / BUNDLE)
    lines = [f"{p.relative_to(root)}: {p.stat().st_size / 2**20:.1f} MiB"
             for p in sorted((root / BUNDLE).rglob("*")) if p.is_file()]
    total = tree + bundle
    lines.append(f"travels: {total / 2**20:.1f} MiB (tree {tree / 2**20:.1f} + carried {bundle / 2**20:.1f}; "
                 f"margin {MARGIN_MIB}, limit {LIMIT_MIB})")
    return total, lines


# --- what comes back: the device tool returns $OUT's plain files within these limits ---

OUT_LIMITS = {"files": 8, "file_mib": 16, "depth": 2}


def copy_back(src: Path, dest: Path, names, *, reserved: int) -> tuple[list[str], dict[str, str]]:
    """Copy ``names`` of ``src`` into ``dest`` (in $OUT), in order, while the limits allow beside ``reserved``
    other files: (copied, {name: why left out})."""
    dest.mkdir(parents=True, exist_ok=True)
    copied, left_out = [], {}
    for name in names:
        if not (src / name).is_file():
            continue
        mib = (src / name).stat().st_size / 2**20
        if mib > OUT_LIMITS["file_mib"]:
            left_out[name] = f"{mib:.1f} MiB > {OUT_LIMITS['file_mib']} MiB"
        elif len(copied) + reserved >= OUT_LIMITS["files"]:
            left_out[name] = f"the device tool returns {OUT_LIMITS['files']} files"
        else:
            shutil.copyfile(src / name, dest / name)
            copied.append(name)
    return copied, left_out


def check_out_dir(out: Path) -> list[str]:
    """What in ``out`` would not come back from the device tool (file count, size, depth, names)."""
    files = [p for p in out.rglob("*") if p.is_file()]
    bad = [f"{len(files)} files > {OUT_LIMITS['files']}"] if len(files) > OUT_LIMITS["files"] else []
    for f in files:
        rel = f.relative_to(out)
        if len(rel.parts) - 1 > OUT_LIMITS["depth"]:
            bad.append(f"{rel}: more than {OUT_LIMITS['depth']} folders down")
        if f.stat().st_size > OUT_LIMITS["file_mib"] * 2**20:
            bad.append(f"{rel}: over {OUT_LIMITS['file_mib']} MiB")
        if any(not all(c.isalnum() or c in "._-" for c in part) for part in rel.parts):
            bad.append(f"{rel}: a name with characters other than letters, digits, '.', '_', '-'")
    return bad


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=os.environ.get("JAXSENTI_DATA_DIR", str(REPO.parent / "shared" / "data")),
                   help="folder holding dianping.csv and online_shopping_10_cats.csv (default: $JAXSENTI_DATA_DIR)")
    p.add_argument("--root", default=str(REPO), help="the checkout the GPU session is started from (default: this one)")
    a = p.parse_args(argv)
    root = Path(a.root)
    missing = [n for n in DATASETS if not (Path(a.data) / n).is_file()]
    if missing:
        print(f"gpu_bundle: error: {a.data} lacks {', '.join(missing)} (--data)", file=sys.stderr)
        return 2
    build(root, Path(a.data))
    total, lines = report(root)
    print("\n".join(lines))
    return 0 if total <= MARGIN_MIB * 2**20 else 1


if __name__ == "__main__":
    from jaxsenti.cli import script_main

    script_main(main)
