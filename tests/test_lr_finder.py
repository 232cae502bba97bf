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


@pytest.mark.parametrize("lr_min, lr_max", [(1.0, 1e-3), (1e-3, float("inf")), (float("nan"), 1.0), (0.0, 1.0)])
def test_find_lr_rejects_a_backwards_or_non_finite_range(lr_min, lr_max):
    with pytest.raises(ValueError, match="finite with 0 < lr-min < lr-max"):
        find_lr(LSTMClassifier(TINY, rngs=nnx.Rngs(0)), OptimConfig(), Classification(),
                LabelledBatches(_data(8, 0), 8, BUCKETS), lr_min=lr_min, lr_max=lr_max)


def test_a_divergence_ends_the_usable_range_and_an_edge_suggestion_is_flagged():
    """Steps whose update is non-finite leave the weights as they were, so their loss looks fine: lr-find must
    count them as divergence. A rate that diverges at once gives no suggestion; a suggestion at an edge a warning."""
    train = LabelledBatches(_data(40, 0), 8, BUCKETS, shuffle=True)
    model = lambda: LSTMClassifier(TINY, rngs=nnx.Rngs(0))  # noqa: E731
    blown = find_lr(model(), OptimConfig(name="sgd", clip_norm=None), Classification(), train, lr_min=1e30,
                    lr_max=1e38, steps=10)
    assert blown.suggestion is None and "diverged within the first" in blown.warning
    assert not np.isfinite(blown.losses).all()
    edge = find_lr(model(), OptimConfig(name="adam"), Classification(), train, lr_min=1e-9, lr_max=1e-8, steps=10)
    assert edge.suggestion is not None and np.isfinite(edge.losses).all()
    assert edge.warning is None or "outside the range" in edge.warning


def test_lr_find_command_refuses_inf_and_says_when_nothing_can_be_suggested(tiny_csv, tmp_path, capsys):
    cfg = tmp_path / "tiny.py"
    cfg.write_text(TINY_LSTM, encoding="utf-8")
    out = tmp_path / "lr.png"
    with pytest.raises(SystemExit) as e:
        main(["lr-find", "lstm", "--config", str(cfg), "--data", str(tiny_csv), "--lr-max", "inf", "--out", str(out)])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "must be a finite number > 0, got inf" in err and len(err.strip().splitlines()) == 1
    argv = ["lr-find", "lstm", "--config", str(cfg), "--data", str(tiny_csv), "--steps", "6", "--out", str(out),
            "--lr-min", "1e30", "--lr-max", "1e38", "--set", "optim.name=sgd", "--set", "optim.clip_norm=None"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "no suggestion can be made" in err and "Traceback" not in err and out.is_file()


def test_lr_find_command_writes_plot_and_suggestion(tiny_csv, tmp_path, capsys):
    cfg = tmp_path / "tiny.py"
    cfg.write_text(TINY_LSTM, encoding="utf-8")
    out = tmp_path / "lr.png"
    assert main(["lr-find", "lstm", "--config", str(cfg), "--data", str(tiny_csv), "--steps", "12", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "suggested learning rate:" in printed and out.read_bytes()[:4] == b"\x89PNG"
    suggested = float(printed.split("suggested learning rate:")[1].split()[0])
    assert 1e-7 <= suggested <= 1.0
