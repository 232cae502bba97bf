import dataclasses
from pathlib import Path

import pytest

from jaxsenti.config import apply_overrides, load_config

CONFIGS = sorted((Path(__file__).parents[1] / "configs").glob("*.py"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_every_config_loads_and_documents_its_command(path):
    cfg = load_config(path)
    assert cfg.model_name in ("lstm", "bert")
    module_doc = path.read_text(encoding="utf-8").split('"""')[1]
    assert "jaxsenti train" in module_doc and "Expected" in module_doc


def test_configs_are_frozen():
    cfg = load_config(CONFIGS[0])
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.epochs = 1  # type: ignore[misc]


def test_overrides_nested_and_typed():
    cfg = load_config(Path(__file__).parents[1] / "configs" / "lstm_dianping.py")
    new = apply_overrides(cfg, ["optim.lr=3e-4", "model.hidden_dim=64", "buckets=[16, 32]", "model.pooling=mean", "epochs=2"])
    assert new.optim.lr == 3e-4 and new.model.hidden_dim == 64 and new.buckets == (16, 32)
    assert new.model.pooling == "mean" and new.epochs == 2 and cfg.epochs != 2
    with pytest.raises(KeyError, match="unknown config key 'optim.lrr'"):
        apply_overrides(cfg, ["optim.lrr=1"])
    with pytest.raises(ValueError, match="key=value"):
        apply_overrides(cfg, ["epochs"])
