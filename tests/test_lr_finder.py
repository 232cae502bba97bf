"""Learning-rate range test: the library function on toy data, and `jaxsenti lr-find` end to end."""

import numpy as np
import pytest
from flax import nnx
from tests.test_cli import TINY_LSTM
from tests.test_training_loop import BUCKETS, TINY, _data

from jaxsenti.cli import main
from jaxsenti.config import OptimConfig
from jaxsenti.models.lstm import LSTMClassifier
from jaxsenti.objectives import Classification
from jaxsenti.training.batching import LabelledBatches
from jaxsenti.training.lr_finder import find_lr, plot_lr_finder


def test_find_lr_sweeps_exponentially_and_suggests_a_rate_inside_the_range(tmp_path):
    train = LabelledBatches(_data(40, 0), 8, BUCKETS, shuffle=True)  # 5 batches: the sweep wraps over epochs
    res = find_lr(LSTMClassifier(TINY, rngs=nnx.Rngs(0)), OptimConfig(name="adam"), Classification(), train,
                  lr_min=1e-5, lr_max=10.0, steps=30)
    assert len(res.lrs) == len(res.losses) == 30
    np.testing.assert_allclose(res.lrs[[0, -1]], [1e-5, 10.0])
    assert np.all(np.diff(np.log(res.lrs)) > 0) and np.allclose(np.diff(np.log(res.lrs)), np.diff(np.log(res.lrs))[0])
    assert np.isfinite(res.losses[:10]).all()
    assert 1e-5 <= res.suggestion <= 10.0
    assert plot_lr_finder(res, tmp_path / "lr.png").read_bytes()[:4] == b"\x89PNG"


def test_find_lr_rejects_a_backwards_range():
    with pytest.raises(ValueError, match="lr_min < lr_max"):
        find_lr(LSTMClassifier(TINY, rngs=nnx.Rngs(0)), OptimConfig(), Classification(),
                LabelledBatches(_data(8, 0), 8, BUCKETS), lr_min=1.0, lr_max=1e-3)


def test_lr_find_command_writes_plot_and_suggestion(tiny_csv, tmp_path, capsys):
    cfg = tmp_path / "tiny.py"
    cfg.write_text(TINY_LSTM, encoding="utf-8")
    out = tmp_path / "lr.png"
    assert main(["lr-find", "lstm", "--config", str(cfg), "--data", str(tiny_csv), "--steps", "12", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "suggested learning rate:" in printed and out.read_bytes()[:4] == b"\x89PNG"
    suggested = float(printed.split("suggested learning rate:")[1].split()[0])
    assert 1e-7 <= suggested <= 1.0
