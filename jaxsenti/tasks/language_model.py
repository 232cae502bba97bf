"""The LSTM's pretraining task: a next-word language model over jieba words (ULMFiT/ELMo-style transfer).

Same architecture as the study's classifier (embedding 400, 2×LSTM 256), trained to predict each next
word of each review; the output layer is tied to the input embedding through a 256→400 projection,
with a sampled softmax in training (a full one for the held-out loss: see ``NextWordLM``). The
exported folder (config.json, vocab.json, params.npz) is what ``jaxsenti train lstm --pretrained
FOLDER`` starts the classifier from: embedding rows of the words both vocabularies share and every
LSTM weight are copied, words new to the LM keep fresh vectors (``models.lstm_transfer``).
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

from flax import nnx

from jaxsenti.data.corpus import Corpus
from jaxsenti.data.csv_reader import DataError
from jaxsenti.data.lm_corpus import DEFAULT_BUCKETS, EOS, LMBatches, extend_vocab, lm_vocab
from jaxsenti.data.text import Vocab, segment_many
from jaxsenti.fields import check_fields, ranged
from jaxsenti.models.lstm import LSTMConfig
from jaxsenti.models.lstm_lm import LSTMLanguageModel, LSTMLMConfig
from jaxsenti.models.lstm_transfer import extend_lm, load_lm, load_pretrained_lstm, read_lm_config, save_lm
from jaxsenti.objectives.language_model import NextWordLM


@dataclasses.dataclass(frozen=True)
class LMTaskConfig:
    min_freq: int = ranged(2, ge=1)  # words seen fewer times in the training texts map to <unk>
    max_size: int = ranged(30000, ge=4)  # vocabulary cap (<pad>, <unk>, <eos> included)
    num_sampled: int = ranged(1024, ge=0)  # sampled-softmax candidates in training (0: full softmax; ~8x slower at 30k words)
    buckets: tuple = DEFAULT_BUCKETS  # padded lengths in words; longer reviews are cut into chunks of the last

    def __post_init__(self):
        check_fields(self)
        b = self.buckets
        if not (b and all(isinstance(x, int) and not isinstance(x, bool) and x >= 2 for x in b)
                and all(x < y for x, y in zip(b, b[1:]))):
            raise ValueError(f"buckets must be strictly increasing word counts >= 2, got {b}")


@dataclasses.dataclass
class Prepared:
    model: nnx.Module
    objective: NextWordLM
    train: LMBatches
    val: LMBatches
    tokens_per_batch: int  # predicted words per training batch, on average
    vocab: Vocab
    vocab_report: dict | None = None  # starting from a checkpoint: its words kept, the corpus's words added


@dataclasses.dataclass(frozen=True)
class LanguageModelTask:
    config: type = LMTaskConfig
    model_config: type = LSTMLMConfig
    module: type = LSTMLanguageModel

    def init_model_config(self, folder, model_cfg: LSTMLMConfig) -> LSTMLMConfig:
        """``model_cfg`` with the sizes of the LM in ``folder`` (its dropout and dtype stay the config's)."""
        saved = read_lm_config(folder)
        return dataclasses.replace(model_cfg, vocab_size=saved.vocab_size, embed_dim=saved.embed_dim,
                                   hidden_dim=saved.hidden_dim, num_layers=saved.num_layers)

    def prepare(self, cfg, corpus: Corpus, train_idx, heldout_idx, init: str | None = None) -> Prepared:
        """Segment (cached), build the vocabulary from the training texts, batch, build the model.

        ``init``: an LM folder to continue from. Its vocabulary is kept, every word at its index, and the
        words the training texts' own vocabulary (``task.min_freq``, ``task.max_size``) has beyond it are
        appended (:func:`extend_vocab`; their vectors start at the mean of the known ones'); every weight
        is the folder's."""
        if cfg.task.buckets[-1] != cfg.max_len:
            raise ValueError(f"task.buckets must end at max_len ({cfg.max_len}), got {cfg.task.buckets}")
        words = segment_many(corpus.texts)
        train_words = [words[i] for i in train_idx]
        vocab = lm_vocab(train_words, min_freq=cfg.task.min_freq, max_size=cfg.task.max_size)
        if init is None and len(vocab) < 4:  # [PAD], [UNK], <eos> and at least one word
            raise DataError(f"the pretraining corpus has {len(corpus.texts):,} text(s) and no word seen "
                            f"{cfg.task.min_freq}+ times in its training part: too little text for a language model "
                            "(give more, or lower task.min_freq)")
        report = None
        if init is not None:
            lm, base = load_lm(init)
            vocab, added = extend_vocab(base, vocab)
            model = extend_lm(lm, len(vocab), dataclasses.replace(cfg.model, vocab_size=len(vocab)))
            report = {"from": str(init), "kept": len(base), "added": len(added), "examples": added[:10]}

        def batches(docs, batch_size, shuffle):
            return LMBatches([vocab.encode(d) for d in docs], eos_id=vocab.stoi[EOS], batch_size=batch_size,
                             buckets=cfg.task.buckets, shuffle=shuffle, seed=cfg.seed)

        train = batches(train_words, cfg.batch_size, True)
        val = batches([words[i] for i in heldout_idx], cfg.eval_batch_size, False)
        if init is None:
            model = LSTMLanguageModel(dataclasses.replace(cfg.model, vocab_size=len(vocab)), rngs=nnx.Rngs(params=cfg.seed))
        return Prepared(model, NextWordLM(num_sampled=cfg.task.num_sampled), train, val,
                        max(1, train.num_targets // max(len(train), 1)), vocab, report)

    def export(self, prepared: Prepared, model, folder) -> None:
        save_lm(folder, model, prepared.vocab)


def load_pretrained_classifier(path, cfg: LSTMConfig, encoder, rngs: nnx.Rngs):
    """The model registry's loader: an LSTM classifier started from a pretrained LM folder."""
    cfg = dataclasses.replace(cfg, vocab_size=encoder.vocab_size)
    model, report = load_pretrained_lstm(path, encoder.vocab, cfg, rngs)
    print(f"[jaxsenti] {path}: {report.copied} of {len(encoder.vocab)} word vectors and {report.layers} LSTM layer(s) "
          f"from the pretrained LM; {report.fresh} words new to it start fresh", file=sys.stderr)
    return model, cfg


def check_pretrained(path) -> None:
    """The folder holds an LM (config.json, vocab.json, params.npz); nothing is loaded."""
    from jaxsenti.folders import check_kind

    check_kind(path, "lstm_lm", "--pretrained")  # a BERT checkpoint or a trained model: say what it is
    missing = [n for n in ("config.json", "vocab.json", "params.npz") if not (Path(path) / n).is_file()]
    if missing:
        raise FileNotFoundError(f"{path}: no {', '.join(missing)}; not a pretrained LSTM LM folder (jaxsenti pretrain lstm)")


__all__ = ["LMTaskConfig", "LanguageModelTask", "check_pretrained", "load_pretrained_classifier"]
