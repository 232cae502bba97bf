"""Maintainer's step: copy a finished pretraining run into the package as the study's pretrained default.

    python tools/package_pretrained.py bert runs/pretrain/bert_mlm_small
    python tools/package_pretrained.py lstm runs/pretrain/lstm_lm
    python tools/package_pretrained.py lstm --keys-only     # only (re)write corpus_keys.npy of the shipped one

Writes ``jaxsenti/assets/pretrained/<config name>/``: the weights as float16 (half the size; they are read
back as float32, so fine-tuning starts within float16 rounding of the run's weights) plus the files the
loader needs and ``pretraining.json`` (command, corpus hash and size, tokens, held-out loss, wall time, and
the key ``jaxsenti.pretrain.find_pretrained`` matches, computed now from the packaged config), and
``corpus_keys.npy``: a 64-bit hash of every text the run read (the corpus rebuilt from the packaged config, checked
against the run's corpus sha256), so the study can tell, without the corpus, whether a user's validation or test
reviews were among them before it continues this checkpoint on their data. The BERT folder is a
complete Hugging Face model: with the run's tokenizer files (``AutoTokenizer``/``pipeline("fill-mask")`` load it).
Refuses a folder over 15 MB.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file

from jaxsenti import atomic
from jaxsenti import config as config_lib
from jaxsenti import registry
from jaxsenti.models.hf_bert import TOKENIZER_FILES
from jaxsenti.pretrain import CORPUS_KEYS, build_corpus, corpus_keys, packaged_pretrained_dir, pretrained_key

ROOT = Path(__file__).resolve().parents[1]
LIMIT_BYTES = 15 * 10**6


def _half_safetensors(src: Path, dst: Path) -> None:
    weights = {k: v.astype(np.float16) if v.dtype == np.float32 else v for k, v in load_file(src).items()}
    save_file(weights, dst, metadata={"format": "pt"})


def _half_npz(src: Path, dst: Path) -> None:
    with np.load(src) as z:
        np.savez(dst, **{k: z[k].astype(np.float16) if z[k].dtype == np.float32 else z[k] for k in z.files})


def write_corpus_keys(cfg, folder: Path, expected_sha256: str) -> int:
    """``folder/corpus_keys.npy`` for the corpus ``cfg`` pretrains on, rebuilt and checked against the run's sha256."""
    corpus = build_corpus(cfg.corpus, cfg.seed)
    if corpus.sha256 != expected_sha256:
        raise SystemExit(f"the corpus rebuilt from {cfg.name} (sha256 {corpus.sha256[:12]}…) is not the one the run read "
                         f"({expected_sha256[:12]}…): the data or the corpus rules changed since")
    keys = corpus_keys(corpus.texts)
    np.save(folder / CORPUS_KEYS, keys)
    return len(keys)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", choices=[n for n, s in registry.MODELS.items() if s.pretraining is not None])
    ap.add_argument("folder", type=Path, nargs="?", help="a finished `jaxsenti pretrain` output folder")
    ap.add_argument("--keys-only", action="store_true", help="only write corpus_keys.npy into the shipped folder")
    a = ap.parse_args(argv)
    cfg = config_lib.load_config(registry.get(a.model).pretrain_config)
    if a.keys_only:
        dst = packaged_pretrained_dir(cfg.name)
        info = json.loads((dst / "pretraining.json").read_text(encoding="utf-8"))
        print(f"{dst / CORPUS_KEYS}: {write_corpus_keys(cfg, dst, info['corpus']['sha256']):,} texts")
        return 0
    if a.folder is None:
        ap.error("give the pretraining output folder to package (or --keys-only)")
    saved = json.loads((a.folder / "pretrain_config.json").read_text(encoding="utf-8"))
    if diff := config_lib.changed_fields(saved, config_lib.to_dict(cfg)):
        raise SystemExit(f"{a.folder} was not made with the packaged {cfg.name} config: {diff}")
    info = json.loads((a.folder / "pretraining.json").read_text(encoding="utf-8"))
    info = {k: v for k, v in info.items() if k != "machine"} | {"key": pretrained_key(cfg, None),
        "packaged_from": str(a.folder), "stored_as": "float16 (read back as float32)",
        "history": json.loads((a.folder / "history.json").read_text(encoding="utf-8"))}
    dst = packaged_pretrained_dir(cfg.name)
    # Staged beside the package's folder and swapped in complete: the old checkpoint stays until then.
    with atomic.staged_dir(dst, overwrite=True) as staged:
        if (a.folder / "model.safetensors").is_file():
            shutil.copy(a.folder / "config.json", staged / "config.json")
            _half_safetensors(a.folder / "model.safetensors", staged / "model.safetensors")
            for name in TOKENIZER_FILES:  # the export wrote them: the folder loads as a Hugging Face model
                if (a.folder / name).is_file():
                    shutil.copy(a.folder / name, staged / name)
        else:
            for name in ("config.json", "vocab.json"):
                shutil.copy(a.folder / name, staged / name)
            _half_npz(a.folder / "params.npz", staged / "params.npz")
        (staged / "pretraining.json").write_text(json.dumps(info, indent=2, ensure_ascii=False), encoding="utf-8")
        write_corpus_keys(cfg, staged, info["corpus"]["sha256"])
        size = sum(p.stat().st_size for p in staged.iterdir())
        if size > LIMIT_BYTES:
            raise SystemExit(f"{dst} would be {size / 1e6:.1f} MB, over the {LIMIT_BYTES / 1e6:.0f} MB the package allows")
    print(f"{dst}: {size / 1e6:.1f} MB, key {info['key']}")
    if f'"jaxsenti.assets.pretrained.{cfg.name}"' not in (ROOT / "pyproject.toml").read_text(encoding="utf-8"):
        print(f"add \"jaxsenti.assets.pretrained.{cfg.name}\" to pyproject.toml's packages, or the wheel leaves it out")
    return 0


if __name__ == "__main__":
    from jaxsenti.cli import script_main

    script_main(main)
