"""Damaged or tampered inputs (weights, vocabularies) end in exit 2 and one line that says the file is damaged or
unsafe; a pickle is never run, and nothing suggests `weights_only=False`."""

import json
import os
import pickle
import shutil

import numpy as np
import pytest

from jaxsenti.cli import main
from tests.test_user_errors import _one_error_line


def _weights(kind: str, path):
    """A weights file at ``path`` damaged in the way ``kind`` names."""
    if path.suffix == ".safetensors":
        from safetensors.numpy import save_file

        save_file({"a": np.zeros((64, 64), np.float32)}, str(path))
    else:
        torch = pytest.importorskip("torch")
        torch.save({"a": torch.zeros(64, 64)}, path)
    whole = path.read_bytes()
    if kind == "zero":
        path.write_bytes(b"")
    elif kind == "random":
        path.write_bytes(np.random.default_rng(0).bytes(4096))
    elif kind == "truncated":
        path.write_bytes(whole[: len(whole) // 2])
    elif kind == "pickle":  # a plain pickle whose loading would run a shell command
        class Evil:
            def __reduce__(self):
                return (os.system, (f"touch {path.parent / 'PWNED'}",))

        path.write_bytes(pickle.dumps(Evil()))
    elif kind == "torch_global":  # a torch zip archive that names a global beyond tensors
        torch = pytest.importorskip("torch")

        class Evil:
            def __reduce__(self):
                return (os.system, (f"touch {path.parent / 'PWNED'}",))

        torch.save({"a": Evil()}, path)


@pytest.mark.parametrize("name, kind", [
    ("model.safetensors", "zero"), ("model.safetensors", "random"), ("model.safetensors", "truncated"),
    ("pytorch_model.bin", "zero"), ("pytorch_model.bin", "random"), ("pytorch_model.bin", "truncated"),
    ("pytorch_model.bin", "pickle"), ("pytorch_model.bin", "torch_global"),
])
def test_damaged_or_unsafe_pretrained_weights_are_one_line(tiny_csv, tmp_path, capsys, name, kind):
    from jaxsenti.assets import bert_tokenizer_dir

    folder = tmp_path / "hf"
    shutil.copytree(bert_tokenizer_dir(), folder)
    _weights(kind, folder / name)
    out = tmp_path / "m"
    argv = ["train", "bert", "--pretrained", str(folder), "--data", str(tiny_csv), "--out", str(out),
            "--split", "0.6/0.2/0.2", "--quiet"]
    assert main(argv) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert str(folder / name) in line
    assert ("cannot be loaded safely" if kind in ("pickle", "torch_global", "random") and name.endswith(".bin")
            else "is damaged") in line, line
    assert "weights_only" not in line and "trusted source" not in line
    assert not (folder / "PWNED").exists()  # nothing of the pickle ran
    assert not out.exists()


def test_pretrain_init_from_a_truncated_checkpoint_is_one_line(tmp_path, capsys):
    from jaxsenti.pretrain import packaged_pretrained_dir

    base = tmp_path / "base"
    shutil.copytree(packaged_pretrained_dir("bert_mlm_small"), base)
    w = base / "model.safetensors"
    w.write_bytes(w.read_bytes()[:100_000])
    corpus = tmp_path / "c.txt"
    corpus.write_text("\n".join("".join(chr(0x4E00 + (7 * i + j) % 3000) for j in range(12)) for i in range(200)),
                      encoding="utf-8")
    out = tmp_path / "x"
    assert main(["pretrain", "bert", "--init-from", str(base), "--corpus", str(corpus), "--out", str(out), "--quiet"]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert str(w) in line and "is damaged" in line
    assert not out.exists()


@pytest.mark.parametrize("edit", ["swap", "duplicate"])
def test_a_tampered_vocabulary_of_a_pretrained_lm_is_refused(tiny_csv, tmp_path, capsys, edit):
    from jaxsenti.pretrain import packaged_pretrained_dir

    lm = tmp_path / "lm"
    shutil.copytree(packaged_pretrained_dir("lstm_lm"), lm)
    words = json.loads((lm / "vocab.json").read_text(encoding="utf-8"))
    if edit == "swap":  # still parses, same length, same words: only the recorded hash tells
        words[10], words[11] = words[11], words[10]
    else:
        words[11] = words[10]
    (lm / "vocab.json").write_text(json.dumps(words, ensure_ascii=False), encoding="utf-8")
    out = tmp_path / "m"
    argv = ["train", "lstm", "--config", "lstm_dianping_lm", "--pretrained", str(lm), "--data", str(tiny_csv),
            "--out", str(out), "--split", "0.6/0.2/0.2", "--quiet"]
    assert main(argv) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert str(lm / "vocab.json") in line
    assert ("was changed after jaxsenti wrote it" if edit == "swap" else "is listed twice") in line
    assert not out.exists()


def test_a_tampered_vocabulary_of_a_trained_model_is_refused_by_predict(tiny_csv, tmp_path, capsys):
    from tests.test_cli import TINY_LSTM

    cfg = tmp_path / "tiny.py"
    cfg.write_text(TINY_LSTM, encoding="utf-8")
    model = tmp_path / "model"
    assert main(["train", "lstm", "--config", str(cfg), "--data", str(tiny_csv), "--out", str(model), "--quiet"]) == 0
    assert main(["predict", "--model", str(model), "好吃"]) == 0
    capsys.readouterr()
    words = json.loads((model / "vocab.json").read_text(encoding="utf-8"))
    words[3], words[4] = words[4], words[3]
    (model / "vocab.json").write_text(json.dumps(words, ensure_ascii=False), encoding="utf-8")
    assert main(["predict", "--model", str(model), "好吃"]) == 2
    assert "vocab.json differ from what training wrote" in _one_error_line(capsys.readouterr().err)


@pytest.mark.parametrize("text", ["", "   ", "\u3000"])
def test_predict_gives_no_label_for_an_empty_text(made_lstm, capsys, text):
    assert main(["predict", "--model", str(made_lstm), text]) == 0
    row = json.loads(capsys.readouterr().out.strip())
    assert row["label"] is None and row["p_positive"] is None and row["note"] == "empty text: not scored"


def test_every_exported_file_gets_the_umasks_mode(made_lstm, tmp_path):
    old = os.umask(0o022)
    try:
        assert main(["export", "--model", str(made_lstm), "--out", str(tmp_path / "e")]) == 0
    finally:
        os.umask(old)
    modes = {p.name: p.stat().st_mode & 0o777 for p in (tmp_path / "e").iterdir()}
    assert modes["model.safetensors"] == 0o644 and set(modes.values()) == {0o644}, modes


def test_a_read_only_or_full_target_is_named_not_its_temporary_sibling(tmp_path, monkeypatch):
    import errno

    from jaxsenti import atomic
    from jaxsenti.cli import _error_line

    target = tmp_path / "p.csv"
    with pytest.raises(OSError) as e:
        with atomic.atomic_path(target) as tmp:
            raise OSError(errno.EROFS, "Read-only file system", str(tmp))
    assert str(e.value) == f"cannot write {target} (Read-only file system); choose another file or folder"
    assert not list(tmp_path.iterdir())
    # a full disk whose error names no file (the checkpoint library's) names the command's output
    line = _error_line(OSError(errno.ENOSPC, "No space left on device"), "/data/run")
    assert "no space left on device writing /data/run" in line


@pytest.fixture(scope="module")
def made_lstm(tmp_path_factory):
    from tests.test_cli import train_tiny_folder

    return train_tiny_folder(tmp_path_factory.mktemp("lstm"))[2]
