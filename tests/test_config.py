import dataclasses
import json
from pathlib import Path

import pytest

from jaxsenti import config as config_lib
from jaxsenti import registry
from jaxsenti.config import ConfigError, apply_overrides, load_config

CONFIGS = sorted(p for p in (Path(__file__).parents[1] / "configs").glob("*.py") if not p.name.startswith("_"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_every_config_loads_and_documents_its_command(path):
    cfg = load_config(path)
    assert cfg.model_name in registry.names()
    module_doc = path.read_text(encoding="utf-8").split('"""')[1]
    assert "jaxsenti train" in module_doc and "Expected" in module_doc


def test_configs_ship_with_the_package_and_load_by_name_anywhere(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no configs/ folder here
    assert set(config_lib.packaged_configs()) == {p.stem for p in CONFIGS}
    assert load_config("lstm_dianping") == load_config("lstm_dianping.py") == load_config("configs/lstm_dianping.py")
    for spec in registry.MODELS.values():  # every config the registry names exists
        for name in (spec.default_config, spec.study_config, spec.study_pretrained_config):
            assert load_config(name).model_name == spec.name
    with pytest.raises(ConfigError, match="not one of the packaged configs .*lstm_dianping"):
        load_config("no_such_config")


def test_configs_are_frozen():
    cfg = load_config(CONFIGS[0])
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.epochs = 1  # type: ignore[misc]


def test_model_name_comes_from_the_model_config_and_encoder_defaults_from_the_registry():
    cfg = load_config("lstm_dianping")
    assert cfg.model_name == "lstm" and isinstance(cfg.encoder, registry.get("lstm").encoder_config)
    assert load_config("bert_small_random").model_name == "bert"
    with pytest.raises(ConfigError, match="encoder: must be a WordPieceConfig"):
        dataclasses.replace(load_config("bert_small_random"), encoder=cfg.encoder)


def test_overrides_nested_and_typed():
    cfg = load_config("lstm_dianping")
    new = apply_overrides(cfg, ["optim.lr=3e-4", "model.hidden_dim=64", "max_len=32", "buckets=[16, 32]",
                                "model.pooling=mean", "epochs=2", "encoder.min_freq=2"])
    assert new.optim.lr == 3e-4 and new.model.hidden_dim == 64 and new.buckets == (16, 32)
    assert new.model.pooling == "mean" and new.epochs == 2 and cfg.epochs != 2 and new.encoder.min_freq == 2
    with pytest.raises(ConfigError, match="unknown config key 'optim.lrr'"):
        apply_overrides(cfg, ["optim.lrr=1"])
    with pytest.raises(ConfigError, match="key=value"):
        apply_overrides(cfg, ["epochs"])
    both = apply_overrides(cfg, ["buckets=[16, 32]", "max_len=32"])  # each alone breaks "last bucket >= max_len"
    assert both.buckets == (16, 32) and both.max_len == 32


@pytest.mark.parametrize("override, message", [
    ("epochs=abc", "config field epochs: expected int, got 'abc'"),
    ("batch_size=0", "config field batch_size: must be >= 1"),
    ("max_len=0", "config field max_len: must be >= 1"),
    ("buckets=[64, 32]", "config field buckets: must be strictly increasing"),
    ("max_len=512", r"the last bucket \(256\) must be >= max_len \(512\)"),
    ("optim.lr=0", "config field optim.lr: must be > 0"),
    ("optim.schedule=step", "config field optim.schedule"),
    ("model.dropout=1.0", r"config field model.dropout: must be in \[0.0, 1.0\), got 1.0"),
    ("model.dropout=nan", "config field model.dropout: must be a finite number, got nan"),
    ("optim.lr=1e999", "config field optim.lr: must be a finite number, got inf"),
    ("optim.lr=inf", "config field optim.lr: must be a finite number, got inf"),
    ("model.hidden_dim=1.5", "config field model.hidden_dim: expected int"),
    ("model.hidden_dim=0", "config field model.hidden_dim: must be >= 1, got 0"),
    ("model.hidden_dim=-1", "config field model.hidden_dim: must be >= 1, got -1"),
    ("model.num_layers=0", "config field model.num_layers: must be >= 1, got 0"),
    ("model.embed_dim=-3", "config field model.embed_dim: must be >= 1, got -3"),
    ("encoder.min_freq=0", "config field encoder.min_freq: must be >= 1, got 0"),
    ("seed=-1", r"config field seed: must be in \[0, 2\*\*32\), got -1"),
    ("seed=4294967296", r"config field seed: must be in \[0, 2\*\*32\)"),
    ("fsdp=1", "config field fsdp: expected bool"),
    ("data.max_chars=0", "config field data.max_chars: must be >= 1"),
    ("data.split=[1, 2]", "config field data.split"),
    ("monitor=loss", "config field monitor"),
])
def test_invalid_values_are_one_line_naming_the_field(override, message):
    with pytest.raises(ConfigError, match=message) as e:
        apply_overrides(load_config("lstm_dianping"), [override])
    assert "\n" not in str(e.value)


def test_config_round_trips_through_json(tmp_path):
    for p in CONFIGS:
        cfg = load_config(p)
        if not isinstance(cfg, config_lib.TrainConfig):
            continue  # pretraining configs are kept as pretrain_config.json, compared as dicts on --resume
        config_lib.dump(cfg, tmp_path / "config.json")
        assert config_lib.from_dict(json.loads((tmp_path / "config.json").read_text())) == cfg


def test_damaged_config_dict_names_the_missing_key():
    d = config_lib.to_dict(load_config("lstm_dianping"))
    del d["max_len"]
    with pytest.raises(ConfigError, match=r"config.json: missing key\(s\) \[.max_len.\]"):
        config_lib.from_dict(d)


def test_config_file_with_a_syntax_error_names_file_and_line(tmp_path):
    p = tmp_path / "broken.py"
    p.write_text("def get_config():\n    return (\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"broken.py: line \d+: syntax error"):
        load_config(p)


def test_a_packaged_name_never_runs_a_same_named_file_of_the_current_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    marker = tmp_path / "RAN"
    evil = f"open({str(marker)!r}, 'w').close()\nraise SystemExit('the local file ran')\n"
    (tmp_path / "lstm_dianping.py").write_text(evil, encoding="utf-8")
    (tmp_path / "lstm_dianping").write_text("not a config", encoding="utf-8")  # used to crash plain `train lstm`
    packaged = config_lib.packaged_configs()["lstm_dianping"]
    assert config_lib.resolve_config("lstm_dianping.py") == packaged
    assert config_lib.resolve_config("lstm_dianping") == packaged
    assert "pass ./lstm_dianping.py to load that file" in capsys.readouterr().err  # says which was loaded
    assert load_config("lstm_dianping").model_name == "lstm" and not marker.exists()
    assert config_lib.resolve_config("./lstm_dianping.py") == Path("./lstm_dianping.py")  # a path is a path


@pytest.mark.parametrize("name, message", [("x.txt", "is not a Python config file"), ("sub", "is a folder")])
def test_a_config_that_is_not_a_python_file_is_one_line(tmp_path, monkeypatch, capsys, name, message):
    from jaxsenti.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "x.txt").write_text("def get_config(): pass\n", encoding="utf-8")
    (tmp_path / "sub").mkdir()
    assert main(["train", "lstm", "--config", name, "--out", str(tmp_path / "m"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and not (tmp_path / "m").exists()
