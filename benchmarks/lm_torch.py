"""The LSTM language-model case's PyTorch side: our ``LSTMLanguageModel`` + ``NextWordLM`` ported to torch.

Same model, objective and batch on both sides (embedding 400, 2 x LSTM 256, tied output
``logits = proj(h) @ E^T + b`` through the 256 -> 400 projection, vocabulary 30,000; dropout 0.1 on the
embeddings, 0.2 between the LSTM layers and on the last layer's output; Adam lr 2e-3 after global-norm
clipping to 1.0, as configs/lstm_lm.py trains). The sampled softmax of ``jaxsenti/models/lstm_lm.py`` is ported
line by line (:func:`torch_lm_loss`): S candidates shared by the batch, log-uniform proposal, logits corrected by
-log(S * Q(id)), accidental hits and ``<pad>`` masked, target in column 0; the exact tied softmax when S=0.
``tests/test_benchmarks_smoke.py`` checks that losses and gradients agree for the same weights and candidates.
Both start from our initial weights. Padding is masked, not packed: a unidirectional LSTM's outputs before a
row's length do not depend on what follows, so both frameworks run all T steps, the same work.

FLOPs per train step (3x forward), every padded position counted:
  LSTM   sum over layers of 3 * 2*B*T*4H*(D_in + H)        (benchmarks/gemm_floor.py's lstm_gemms)
  proj   3 * 2*B*T*H*E;   output 3 * 2*B*T*E*(S + 1) sampled, 3 * 2*B*T*E*V full
"""

from __future__ import annotations

import math

import numpy as np

from gemm_floor import flops as gemm_flops
from gemm_floor import lstm_gemms

LR, CLIP, DROPOUT, EMBED_DROPOUT = 2e-3, 1.0, 0.2, 0.1
NEG = -1e30  # lstm_lm._NEG: the masked logit


def make_batch(B: int, T: int, vocab: int, seed: int = 0) -> dict[str, np.ndarray]:
    """One ``LMBatches``-shaped batch: log-uniform ids in 3..V-1, lengths T/2..T (row 0: T), 0-padded."""
    rng = np.random.default_rng(seed)
    ids = 2 + np.floor(np.exp(rng.random((B, T + 1)) * math.log(vocab - 2))).astype(np.int64)
    ids = np.clip(ids, 3, vocab - 1).astype(np.int32)
    lengths = rng.integers(max(1, T // 2), T + 1, size=B).astype(np.int32)
    lengths[0] = T
    valid = np.arange(T)[None] < lengths[:, None]
    return {"tokens": np.where(valid, ids[:, :T], 0).astype(np.int32), "lengths": lengths,
            "targets": np.where(valid, ids[:, 1:], 0).astype(np.int32),
            "target_weights": valid.astype(np.float32), "weights": np.ones(B, np.float32)}


def train_flops(B: int, T: int, V: int, E: int, H: int, L: int, S: int) -> float:
    """FLOPs of one train step, every padded position counted (see the module docstring)."""
    out = (S + 1) if S else V
    return float(gemm_flops(*lstm_gemms(B, T, E, H, L)) + 3 * 2 * B * T * H * E + 3 * 2 * B * T * E * out)


# --- JAX side ---


def jax_model(spec: dict):
    from flax import nnx

    from jaxsenti.models.lstm_lm import LSTMLanguageModel, LSTMLMConfig

    cfg = LSTMLMConfig(vocab_size=spec["vocab"], embed_dim=spec["embed"], hidden_dim=spec["hidden"],
                       num_layers=spec["layers"], dropout=spec.get("dropout", DROPOUT),
                       embed_dropout=spec.get("embed_dropout", EMBED_DROPOUT))
    return LSTMLanguageModel(cfg, rngs=nnx.Rngs(spec.get("seed", 0)))


def jax_params_numpy(model) -> dict[str, np.ndarray]:
    """Our LM's parameters as :func:`torch_model`'s ``state_dict``, in numpy (``jaxsenti.models.torch_export``)."""
    from jaxsenti.models.torch_export import lstm_lm_state_dict

    return lstm_lm_state_dict(model)


# --- PyTorch side ---


def torch_model(spec: dict):
    """``nn.Embedding`` -> dropout -> ``nn.LSTM`` (dropout between layers) -> dropout -> ``nn.Linear(H, E)``; plus
    ``out_bias`` [V]. ``forward(tokens [B, T])`` -> query vectors z [B*T, E] (batch-major)."""
    import torch
    from torch import nn

    V, E, H, L = spec["vocab"], spec["embed"], spec["hidden"], spec["layers"]
    dropout = spec.get("dropout", DROPOUT)

    class TorchLM(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(V, E)
            self.embed_drop = nn.Dropout(spec.get("embed_dropout", EMBED_DROPOUT))
            self.lstm = nn.LSTM(E, H, num_layers=L, batch_first=True, dropout=dropout if L > 1 else 0.0)
            self.drop = nn.Dropout(dropout)
            self.proj = nn.Linear(H, E)
            self.out_bias = nn.Parameter(torch.zeros(V))

        def forward(self, tokens):
            out, _ = self.lstm(self.embed_drop(self.embed(tokens)))
            return self.proj(self.drop(out)).reshape(-1, E)

    return TorchLM()


def load_into_torch(model, params: dict[str, np.ndarray]) -> None:
    """:func:`jax_params_numpy`'s arrays into :func:`torch_model` (strict: every name must match)."""
    import torch

    model.load_state_dict({k: torch.tensor(np.asarray(v)) for k, v in params.items()})  # copies


def torch_log_expected_count(ids, num_sampled: int, vocab: int):
    """lstm_lm.log_expected_count: log(S * P(id)), P(k) = log((k+2)/(k+1)) / log(V+1)."""
    import torch

    p = torch.log1p(1.0 / (ids.float() + 1.0)) / math.log(vocab + 1.0)
    return torch.log(num_sampled * p)


def torch_log_uniform_sample(num_sampled: int, vocab: int, device="cpu", u=None):
    """lstm_lm.log_uniform_sample with torch's generator (or the uniforms ``u`` in [0, 1) given): S ids with
    replacement and log(S * P(id))."""
    import torch

    u = torch.rand(num_sampled, device=device) if u is None else u
    ids = torch.clamp(torch.floor(torch.exp(u * math.log(vocab + 1.0))).long() - 1, 0, vocab - 1)
    return ids, torch_log_expected_count(ids, num_sampled, vocab)


def torch_lm_loss(model, z, targets, w, candidates=None):
    """NextWordLM's loss (sum of w * cross-entropy / max(sum w, 1)) for z [N, E], targets [N], w [N].

    ``candidates`` (ids [S], log_q [S]): lstm_lm.sampled_logits' sampled softmax; None: the full tied softmax.
    """
    import torch
    import torch.nn.functional as F

    table, bias = model.embed.weight, model.out_bias
    if candidates is None:
        logits = torch.addmm(bias, z, table.t())
        logits[:, 0] = NEG  # <pad> gets no probability (addmm's backward does not need its output)
        labels = targets
    else:
        ids, log_q = candidates
        S, V = ids.shape[0], table.shape[0]
        true_logit = (z * table[targets]).sum(-1) + bias[targets] - torch_log_expected_count(targets, S, V)
        cand = torch.addmm(bias[ids] - log_q, z, table[ids].t())
        cand = cand.masked_fill((ids[None, :] == targets[:, None]) | (ids[None, :] == 0), NEG)
        logits = torch.cat([true_logit[:, None], cand], dim=1)
        labels = torch.zeros_like(targets)  # the target is column 0
    ce = F.cross_entropy(logits, labels, reduction="none")
    return (ce * w).sum() / w.sum().clamp(min=1.0)


def torch_side(spec: dict, params: dict[str, np.ndarray] | None):
    """(build, loss_fn) for ``harness.TorchStep``: the batch holds tokens [B, T], targets [B*T], w [B*T]."""
    import torch

    S, V = spec["sampled"], spec["vocab"]

    def build():
        model = torch_model(spec)
        if params is not None:  # ours; else PyTorch's default init
            load_into_torch(model, params)
        return model, torch.optim.Adam(model.parameters(), lr=LR)

    def loss_fn(model, b):
        cand = torch_log_uniform_sample(S, V, b["tokens"].device) if S else None
        return torch_lm_loss(model, model(b["tokens"].long()), b["targets"].long(), b["w"], cand)

    return build, loss_fn
