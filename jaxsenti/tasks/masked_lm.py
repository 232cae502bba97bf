"""BERT's pretraining task: whole-word masked-language modelling, exported as a Hugging Face checkpoint.

The output folder is what ``transformers.BertForMaskedLM.from_pretrained`` loads (config.json,
model.safetensors with HF key names, tokenizer files) and what ``jaxsenti train bert --pretrained
FOLDER`` fine-tunes from.

Compact vocabulary: bert-base-chinese has 21,128 tokens, but the review corpus uses about 6k of them,
and the vocabulary-sized work of a step (the tied output projection, the softmax over it, the
embedding gradient and its Adam update) was most of a small model's step on CPU. So the model trains
over the tokens that occur in the corpus (plus the special tokens) and is expanded back to the full
vocabulary on export: the rows of tokens the corpus never shows keep a fresh initialisation (in a
full-vocabulary run they would only have been pushed down by the softmax) and get the lowest output
bias. The tokenizer, the checkpoint and everything downstream use the standard ids.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxsenti.data.corpus import Corpus, TokenizedCorpus, VocabInfo, tokenize_corpus
from jaxsenti.data.encoders import tokenizer_source
from jaxsenti.data.masking import MaskedLMBatches, pack
from jaxsenti.fields import check_fields, ranged
from jaxsenti.models.bert import BertConfig
from jaxsenti.models.bert_mlm import BertForMaskedLM
from jaxsenti.models.hf_bert import check_checkpoint, load_tokenizer
from jaxsenti.models.hf_export import load_mlm, save_pretrained
from jaxsenti.objectives.masked_lm import MaskedLM


@dataclasses.dataclass(frozen=True)
class MaskingConfig:
    """Whole-word masking (Chinese-BERT-wwm): 15 % of the tokens, 80 % [MASK] / 10 % random / 10 % kept."""

    tokenizer: str | None = None  # None: $JAXSENTI_BERT_TOKENIZER_DIR, else the packaged bert-base-chinese tokenizer
    mask_rate: float = ranged(0.15, gt=0.0, lt=1.0)
    max_predictions: int | None = ranged(None, ge=1)  # prediction slots per sequence; None: round(mask_rate · (max_len - 1))

    def __post_init__(self):
        check_fields(self)


@dataclasses.dataclass
class Prepared:
    model: nnx.Module
    objective: MaskedLM
    train: MaskedLMBatches
    val: MaskedLMBatches
    tokens_per_batch: int  # real (non-pad) tokens the model reads per training batch, on average
    tokenizer: object
    model_config: object  # the full-vocabulary config the export has
    active_ids: np.ndarray  # full-vocabulary id of each compact id
    base: object = None  # the full-vocabulary model it started from (``init``): rows of unused tokens come from it
    vocab_report: dict | None = None  # starting from a checkpoint: its vocabulary, kept whole (WordPiece adds none)


@dataclasses.dataclass(frozen=True)
class MaskedLMTask:
    config: type = MaskingConfig
    model_config: type = BertConfig
    module: type = BertForMaskedLM

    def init_model_config(self, folder, model_cfg: BertConfig) -> BertConfig:
        """``model_cfg`` with the architecture of the checkpoint in ``folder`` (its dropout, dtype, attention stay)."""
        saved = BertConfig.from_hf(check_checkpoint(folder))
        keep = ("hidden_dropout_prob", "attention_probs_dropout_prob", "dtype", "attention", "pooling")
        return dataclasses.replace(saved, **{k: getattr(model_cfg, k) for k in keep})

    def prepare(self, cfg, corpus: Corpus, train_idx, heldout_idx, init: str | None = None) -> Prepared:
        """Tokenize (cached), pack ``max_len`` sequences, build the model with the tokenizer's vocabulary.

        ``init``: a BertForMaskedLM checkpoint to continue from, with its own tokenizer (WordPiece covers any
        text, so no token is added; the report counts the [UNK] tokens); every weight is the checkpoint's,
        and tokens the corpus does not use keep their rows on export."""
        if cfg.max_len > cfg.model.max_position_embeddings:
            raise ValueError(f"config field max_len: {cfg.max_len} exceeds model.max_position_embeddings "
                             f"{cfg.model.max_position_embeddings}")
        tokenizer = load_tokenizer(tokenizer_source(cfg.task.tokenizer, init))
        full_tokens = tokenize_corpus(corpus.texts, tokenizer, corpus_sha256=corpus.sha256)
        tokens, active = compact_vocabulary(full_tokens)
        train_packed = pack(tokens, cfg.max_len, seed=cfg.seed, reviews=train_idx)
        val_packed = pack(tokens, cfg.max_len, seed=None, reviews=heldout_idx)
        model_cfg = dataclasses.replace(cfg.model, vocab_size=len(tokenizer))
        base = report = None
        if init is None:
            model = BertForMaskedLM(dataclasses.replace(model_cfg, vocab_size=len(active)), rngs=nnx.Rngs(params=cfg.seed))
        else:
            base = load_mlm(init, **{k: getattr(cfg.model, k) for k in ("hidden_dropout_prob",
                                                                         "attention_probs_dropout_prob", "dtype")})
            if base.cfg.vocab_size != len(tokenizer):
                raise ValueError(f"{init}: the checkpoint has {base.cfg.vocab_size} token rows but its tokenizer "
                                 f"{len(tokenizer)} tokens")
            model = compact_model(base, active)
            unk = int(np.sum(full_tokens.ids == tokenizer.unk_token_id))
            report = {"from": str(init), "kept": base.cfg.vocab_size, "added": 0, "unk_tokens": unk}
        kw = dict(max_predictions=cfg.task.max_predictions, mask_rate=cfg.task.mask_rate)
        train = MaskedLMBatches(train_packed, cfg.batch_size, seed=cfg.seed, shuffle=True, **kw)
        val = MaskedLMBatches(val_packed, cfg.eval_batch_size, seed=cfg.seed + 1, shuffle=False, **kw)
        per_batch = int(train_packed.lengths.sum()) / max(len(train), 1)
        return Prepared(model, MaskedLM(), train, val, int(per_batch), tokenizer, model_cfg, active, base, report)

    def export(self, prepared: Prepared, model, folder) -> None:
        """The trained model, expanded to the full vocabulary, as a Hugging Face BertForMaskedLM checkpoint
        (with the tokenizer) in ``folder``."""
        save_pretrained(expand_vocabulary(model, prepared.model_config, prepared.active_ids, prepared.base), folder,
                        tokenizer=prepared.tokenizer)


def compact_vocabulary(tokens: TokenizedCorpus) -> tuple[TokenizedCorpus, np.ndarray]:
    """The corpus over the ids it uses (special tokens always kept), and the full id of each compact id."""
    v = tokens.vocab
    active = np.union1d(np.unique(tokens.ids), np.asarray(v.special_ids + (v.cls_id, v.sep_id, v.pad_id, v.mask_id)))
    remap = np.full(v.vocab_size, -1, np.int64)
    remap[active] = np.arange(len(active))
    pool = remap[np.intersect1d(v.replacement_ids, active)].astype(np.int32)
    compact = VocabInfo(len(active), int(remap[v.cls_id]), int(remap[v.sep_id]), int(remap[v.pad_id]),
                        int(remap[v.mask_id]), tuple(int(remap[i]) for i in v.special_ids), pool)
    return TokenizedCorpus(remap[tokens.ids].astype(np.int32), tokens.word_start, tokens.offsets, compact), active


_EMB_KEY = ("bert", "embeddings", "word_embeddings", "embedding")
_BIAS_KEY = ("cls", "bias")


def compact_model(full: BertForMaskedLM, active_ids: np.ndarray) -> BertForMaskedLM:
    """A copy of ``full`` over the token ids ``active_ids`` only (the rows of the word embeddings and output bias)."""
    compact = BertForMaskedLM(dataclasses.replace(full.cfg, vocab_size=len(active_ids)), rngs=nnx.Rngs(params=0))
    source = dict(nnx.to_flat_state(nnx.state(full, nnx.Param)))
    for key, var in nnx.to_flat_state(nnx.state(compact, nnx.Param)):
        value = source[key].get_value()
        var.set_value(value[active_ids] if key in (_EMB_KEY, _BIAS_KEY) else value)
    return compact


def expand_vocabulary(model: BertForMaskedLM, full_cfg, active_ids: np.ndarray, base: BertForMaskedLM | None = None
                      ) -> BertForMaskedLM:
    """A full-vocabulary copy of a compact-vocabulary model (see the module docstring). Rows of tokens outside
    ``active_ids`` come from ``base`` (the checkpoint a run continued from), else they are a fresh initialisation
    and an output bias below every trained one."""
    full = BertForMaskedLM(full_cfg, rngs=nnx.Rngs(params=0))
    _, full_params = nnx.split(full, nnx.Param)
    _, params = nnx.split(model, nnx.Param)
    flat_full, flat = dict(nnx.to_flat_state(full_params)), dict(nnx.to_flat_state(params))
    rows = dict(nnx.to_flat_state(nnx.state(base, nnx.Param))) if base is not None else {}
    for key, var in flat.items():
        value = var.get_value()
        if key in (_EMB_KEY, _BIAS_KEY):
            if key in rows:
                start = rows[key].get_value()
            elif key == _EMB_KEY:
                start = flat_full[key].get_value()
            else:
                start = jnp.full(full_cfg.vocab_size, jnp.min(value), value.dtype)
            value = start.at[active_ids].set(value)
        flat_full[key].set_value(value)
    return full
