"""A jaxsenti LSTM sentiment model in plain PyTorch: serve it without JAX (``jaxsenti export`` writes this file).

    pip install torch jieba safetensors
    python -c "import sentiment_lstm as s; m = s.load('.'); print(m.predict(['这家的菜很好吃', '太难吃了']))"

The folder ``jaxsenti export --model runs/lstm_dianping --out DIR`` writes holds ``config.json`` (sizes,
pooling, ``max_len``, labels), ``vocab.json`` (word list; ``<pad>`` = 0, ``<unk>`` = 1), ``model.safetensors``
(the ``state_dict`` of :class:`SentimentLSTM`: ``nn.Embedding`` + ``nn.LSTM`` + ``nn.Linear``) and this file.
It gives the P(positive) that ``jaxsenti predict`` gives, to float32 rounding (tests/test_export.py checks
1e-4). The preprocessing is the study's: keep the CJK Unified Ideographs U+4E00-U+9FFF, segment with jieba,
map words to ids (unknown words to ``<unk>``), keep the first ``max_len`` words.

This file imports only torch, jieba and safetensors: copy it anywhere.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from torch import nn

_NON_CJK = re.compile(r"[^\u4e00-\u9fff]+")


class SentimentLSTM(nn.Module):
    """Embedding -> LSTM (``num_layers``, optionally bidirectional) -> pooled features -> one logit.

    Pooling ``last``: the final hidden state of the last layer (both directions' for a bidirectional LSTM);
    ``mean``/``max``: over the valid time steps; ``concat``: [last, max, mean] side by side (ULMFiT). An empty review (length 0) has all-zero features, so its
    logit is the head's bias. Dropout is not applied: this is for inference.
    """

    def __init__(self, vocab_size: int, embed_dim: int, hidden_dim: int, num_layers: int, bidirectional: bool,
                 pooling: str = "last"):
        super().__init__()
        self.pooling = pooling
        self.embedding = nn.Embedding(vocab_size, embed_dim)
        self.lstm = nn.LSTM(embed_dim, hidden_dim, num_layers, batch_first=True, bidirectional=bidirectional)
        self.head = nn.Linear(hidden_dim * (2 if bidirectional else 1) * (3 if pooling == "concat" else 1), 1)

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """tokens int64[B, T] (0 = pad), lengths int64[B] -> logits float32[B]."""
        valid = lengths > 0
        packed = nn.utils.rnn.pack_padded_sequence(self.embedding(tokens), lengths.clamp(min=1).cpu(), batch_first=True,
                                                   enforce_sorted=False)
        out, (h_n, _) = self.lstm(packed)
        dirs = 2 if self.lstm.bidirectional else 1
        pooled = {"last": torch.cat([h_n[-dirs + d] for d in range(dirs)], dim=-1)}
        if self.pooling != "last":
            seq, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=tokens.shape[1])
            mask = (torch.arange(tokens.shape[1])[None, :] < lengths[:, None]).unsqueeze(-1)
            pooled["mean"] = (seq * mask).sum(1) / lengths.clamp(min=1)[:, None]
            pooled["max"] = seq.masked_fill(~mask, float("-inf")).max(1).values
        feats = torch.cat([pooled["last"], pooled["max"], pooled["mean"]], -1) if self.pooling == "concat" else pooled[self.pooling]
        feats = torch.where(valid[:, None], feats, torch.zeros_like(feats))
        return self.head(feats)[:, 0]


class Predictor:
    """Texts -> P(positive), with the model's preprocessing."""

    def __init__(self, model: SentimentLSTM, vocab: list[str], max_len: int, labels: list[str]):
        self.model, self.max_len, self.labels = model.eval(), max_len, labels
        self.stoi = {w: i for i, w in enumerate(vocab)}

    def encode(self, text: str) -> list[int]:
        import jieba

        return [self.stoi.get(w, 1) for w in jieba.lcut(_NON_CJK.sub("", text))][: self.max_len]

    @torch.no_grad()
    def predict(self, texts: list[str]) -> list[float]:
        ids = [self.encode(t) for t in texts]
        lengths = torch.tensor([len(x) for x in ids])
        tokens = torch.zeros(len(ids), max(1, int(lengths.max())), dtype=torch.long)
        for i, x in enumerate(ids):
            tokens[i, : len(x)] = torch.tensor(x, dtype=torch.long)
        return torch.sigmoid(self.model(tokens, lengths)).tolist()


def load(folder: str | Path) -> Predictor:
    """The exported model in ``folder``, ready to score texts."""
    from safetensors.torch import load_file

    folder = Path(folder)
    cfg = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    vocab = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
    model = SentimentLSTM(len(vocab), cfg["embed_dim"], cfg["hidden_dim"], cfg["num_layers"], cfg["bidirectional"],
                          cfg["pooling"])
    model.load_state_dict(load_file(folder / "model.safetensors"))
    return Predictor(model, vocab, cfg["max_len"], cfg["labels"])
