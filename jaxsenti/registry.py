"""The model registry: one entry per model name, read by the pipeline, the CLI and the study.

An entry says everything the rest of the code needs to know about a model: its hyperparameter
class, its module, the encoder that turns reviews into its input, how to start it from pretrained
weights, the experiment configs the study uses, and optional analyses. Adding a model is one new
entry here and nothing else.

Entries name their classes and functions as ``"module:attribute"`` strings, imported the first time they are
read: the command line lists the models without importing JAX, Flax or PyTorch (a fast ``--help``).
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from typing import Any


class Ref(str):
    """``"package.module:attribute"`` (``attribute()``: an instance of it), imported when the entry's field is read."""

    @property
    def attribute(self) -> str:
        return self.partition(":")[2].removesuffix("()")

    def load(self):
        module, _, attr = self.partition(":")
        obj = getattr(importlib.import_module(module), attr.removesuffix("()"))
        return obj() if attr.endswith("()") else obj


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    name: str
    config: type  # frozen dataclass of hyperparameters; ``vocab_size`` is filled from the encoder
    module: type  # ``module(config, rngs=nnx.Rngs(...))`` → ``model(tokens, lengths, deterministic=, rngs=) -> logits[B]``
    encoder: type  # see jaxsenti.data.encoders
    encoder_config: type
    # (pretrained path, config, fitted encoder, rngs) -> (module, config as loaded); None: no pretrained weights
    load_pretrained: Callable[..., tuple[Any, Any]] | None = None
    check_pretrained: Callable[[str], Any] | None = None  # fails fast (seconds) when the weights are not there
    default_config: str = ""  # packaged experiment config of `jaxsenti train NAME`
    study_config: str = ""  # packaged experiment config the study trains from random initialisation
    study_pretrained_config: str = ""  # ... and from pretrained weights the user gives
    study_pretrained_here_config: str = ""  # ... and from this project's own pretraining (its `pretraining` task)
    random_init_note: str = ""  # said in the study report when the model starts from random weights
    pretraining: Any = None  # its pretraining task (jaxsenti.tasks): unlabeled text -> pretrained weights
    pretrain_config: str = ""  # packaged config of `jaxsenti pretrain NAME`
    # (trained module, its fitted encoder, its TrainConfig, folder) -> writes a folder other frameworks load
    # (`jaxsenti export`); None: cannot be exported
    export: Callable[..., Any] | None = None
    export_note: str = ""  # how the exported folder is used, printed after `jaxsenti export`
    # a parameter's path (names) -> its layer group's depth, 0 nearest the input: the groups of ULMFiT's
    # discriminative rates and gradual unfreezing (optim.layer_lr_decay, optim.unfreeze_every); None: no groups
    layer_group: Callable[[tuple[str, ...]], int] | None = None

    def __getattribute__(self, name: str):
        value = object.__getattribute__(self, name)
        if type(value) is Ref:  # first read: import it, and keep it (frozen dataclass, hence object.__setattr__)
            value = value.load()
            object.__setattr__(self, name, value)
        return value

    def declares(self, name: str) -> bool:
        """Whether the field is set, without importing it."""
        return object.__getattribute__(self, name) is not None

    def class_name(self, name: str = "config") -> str:
        """The name of the class in the field, without importing it."""
        value = object.__getattribute__(self, name)
        return value.attribute if type(value) is Ref else value.__name__


_BERT_RANDOM_NOTE = (
    "**BERT here is NOT the study's pretrained `bert-base-chinese`**: no pretrained weights were given, so it is a "
    "{cfg.model.num_hidden_layers}-layer, {cfg.model.hidden_size}-wide BERT trained from random initialisation on the "
    "training split only (the real bert-base-chinese tokenizer). Pass `--pretrained PATH_OR_ID` for the study's model.")

def export_lstm(model, encoder, cfg, folder):
    from jaxsenti.models.torch_export import save_lstm

    save_lstm(model, encoder.vocab.itos, folder, max_len=cfg.max_len)


def export_bert(model, encoder, cfg, folder):
    from jaxsenti.models.hf_export import save_classifier

    save_classifier(model, folder, encoder.tokenizer, max_len=cfg.max_len)


MODELS: dict[str, ModelSpec] = {
    "lstm": ModelSpec("lstm", Ref("jaxsenti.models.lstm:LSTMConfig"), Ref("jaxsenti.models.lstm:LSTMClassifier"),
                      Ref("jaxsenti.data.encoders:WordEncoder"), Ref("jaxsenti.data.encoders:WordVocabConfig"),
                      load_pretrained=Ref("jaxsenti.tasks.language_model:load_pretrained_classifier"),
                      check_pretrained=Ref("jaxsenti.tasks.language_model:check_pretrained"),
                      default_config="lstm_dianping", study_config="lstm_dianping", study_pretrained_config="lstm_dianping",
                      pretraining=Ref("jaxsenti.tasks.language_model:LanguageModelTask()"), pretrain_config="lstm_lm",
                      study_pretrained_here_config="lstm_dianping_lm", export=Ref("jaxsenti.registry:export_lstm"),
                      layer_group=Ref("jaxsenti.training.optim:stacked_layer_group"),
                      export_note="PyTorch without JAX: `import sentiment_lstm; sentiment_lstm.load(DIR).predict([...])` "
                                  "(needs torch, jieba, safetensors)"),
    "bert": ModelSpec("bert", Ref("jaxsenti.models.bert:BertConfig"), Ref("jaxsenti.models.bert:BertClassifier"),
                      Ref("jaxsenti.data.encoders:WordPieceEncoder"), Ref("jaxsenti.data.encoders:WordPieceConfig"),
                      load_pretrained=Ref("jaxsenti.models.hf_bert:load_pretrained_classifier"),
                      check_pretrained=Ref("jaxsenti.models.hf_bert:check_checkpoint"),
                      default_config="bert_dianping",
                      study_config="bert_small_random",
                      study_pretrained_config="bert_dianping", random_init_note=_BERT_RANDOM_NOTE,
                      pretraining=Ref("jaxsenti.tasks.masked_lm:MaskedLMTask()"), pretrain_config="bert_mlm_small",
                      study_pretrained_here_config="bert_small_mlm", export=Ref("jaxsenti.registry:export_bert"),
                      layer_group=Ref("jaxsenti.training.optim:stacked_layer_group"),
                      export_note="Hugging Face: `transformers.pipeline(\"text-classification\", model=DIR, top_k=None)"
                                  "(texts, truncation=True)`"),
}


def names() -> tuple[str, ...]:
    return tuple(MODELS)


PRETRAINED_SUFFIX = "_pretrained"  # study row of a model fine-tuned from the project's own pretraining


def study_names() -> tuple[str, ...]:
    """Neural rows the study can run: every model, and ``<model>_pretrained`` for models with a pretraining task."""
    return tuple(x for n, s in MODELS.items() for x in (n, n + PRETRAINED_SUFFIX) if x == n or s.declares("pretraining"))


def study_variant(name: str) -> tuple[ModelSpec, bool]:
    """(the model's entry, whether the row starts from the project's own pretraining) for a study row name."""
    if name.endswith(PRETRAINED_SUFFIX) and name[: -len(PRETRAINED_SUFFIX)] in MODELS:
        spec = MODELS[name[: -len(PRETRAINED_SUFFIX)]]
        if spec.declares("pretraining"):
            return spec, True
    return get(name), False


def get(name: str) -> ModelSpec:
    """The entry for ``name`` (a model name or the name of its config class, as saved in config.json)."""
    if name in MODELS:
        return MODELS[name]
    for spec in MODELS.values():
        if spec.class_name("config") == name:
            return spec
    raise ValueError(f"unknown model {name!r}; known models: {', '.join(MODELS)}")


def spec_for(model_config) -> ModelSpec:
    """The entry whose hyperparameter class (or pretraining model's, e.g. the LSTM's LM) ``model_config`` is."""
    for spec in MODELS.values():
        if type(model_config) is spec.config or (spec.pretraining and type(model_config) is spec.pretraining.model_config):
            return spec
    raise ValueError(f"{type(model_config).__name__} is not the config of a registered model "
                     f"({', '.join(s.config.__name__ for s in MODELS.values())})")
