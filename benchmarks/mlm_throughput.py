"""MLM pretraining throughput: our Flax NNX BertForMaskedLM vs transformers' PyTorch BertForMaskedLM, same machine.

    python benchmarks/mlm_throughput.py                     # small: 2 layers x 128, B=128, T=64 (the issue's probe)
    python benchmarks/mlm_throughput.py --config base --json out.json     # bert-base size, B=8, T=128

Same config (vocabulary 21,128), batch and masking on both sides: one random batch of right-padded rows,
15 % of each row's positions masked (same positions and targets for every framework), one full AdamW step
(forward, backward, update) per iteration, dropout on. Three runners, timed in alternating rounds:

* ``jax``: ``BertForMaskedLM`` with the ``MaskedLM`` objective, ``jaxsenti.training.steps.train_step``
  compiled ahead of time, state donated. Logits only at the masked positions (gathered before the
  vocabulary projection).
* ``torch``: ``transformers.BertForMaskedLM(input_ids, attention_mask, labels)`` as users call it, labels
  -100 off the masked positions: it projects every position onto the vocabulary.
* ``torch_masked``: the same PyTorch model, but its head applied to the gathered masked positions only,
  as ours does (what a careful PyTorch user would write; the issue's PyTorch probe did this).

Train FLOPs/step = 6 N B T + 12 L B T^2 H (encoder, as in bert_throughput.py) + 6 (H^2 + H V) B P (the
head at the P masked positions of each row); ``torch`` does the head at every position, more FLOPs for
the same work, so its MFU is not shown. MFU against the best of a few large float32 ``jnp.dot`` runs.
"""

from __future__ import annotations

import time

import numpy as np
from flax import nnx

from bert_throughput import JaxRunner, measure_peak, time_runners, train_flops
from common import base_argparser, finish, parse_args, show_throughput, throughput_result
from jaxsenti.models.bert import BertConfig
from jaxsenti.models.bert_mlm import BertForMaskedLM
from jaxsenti.objectives.masked_lm import MaskedLM

CONFIGS = {
    # name: (layers, hidden, heads, intermediate, batch, seq, timed steps)
    "small": (2, 128, 2, 512, 128, 64, 10),
    "base": (12, 768, 12, 3072, 8, 128, 3),
}
LR, WD, MASK_ID = 1e-3, 0.01, 103


def make_batch(B: int, T: int, vocab: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Random rows of lengths T/2..T with 15 % of their real tokens (never [CLS]) masked; P slots per row."""
    rng = np.random.default_rng(seed)
    P = max(1, round(0.15 * (T - 1)))
    lengths = rng.integers(T // 2, T + 1, size=B).astype(np.int32)
    lengths[0] = T
    tokens = rng.integers(1000, vocab, size=(B, T)).astype(np.int32)
    tokens[:, 0] = 101
    tokens[np.arange(T)[None] >= lengths[:, None]] = 0
    positions = np.zeros((B, P), np.int32)
    weights = np.zeros((B, P), np.float32)
    for b in range(B):
        k = max(1, round(0.15 * (lengths[b] - 1)))
        positions[b, :k] = np.sort(rng.choice(np.arange(1, lengths[b]), size=k, replace=False))
        weights[b, :k] = 1.0
    targets = tokens[np.arange(B)[:, None], positions] * (weights > 0)
    masked = tokens.copy()
    masked[np.arange(B)[:, None], positions] = np.where(weights > 0, MASK_ID, masked[np.arange(B)[:, None], positions])
    return {"tokens": masked, "lengths": lengths, "positions": positions, "targets": targets.astype(np.int32),
            "target_weights": weights, "weights": np.ones(B, np.float32)}


class TorchRunner:
    """``masked_only``: the head on the gathered masked positions; otherwise HF's own forward with labels."""

    def __init__(self, cfg: BertConfig, batch: dict, *, masked_only: bool):
        import torch
        import transformers

        torch.manual_seed(0)
        hc = transformers.BertConfig(
            vocab_size=cfg.vocab_size, hidden_size=cfg.hidden_size, num_hidden_layers=cfg.num_hidden_layers,
            num_attention_heads=cfg.num_attention_heads, intermediate_size=cfg.intermediate_size,
            max_position_embeddings=cfg.max_position_embeddings)
        self.torch, self.masked_only = torch, masked_only
        self.model = transformers.BertForMaskedLM(hc).train()
        self.attention = self.model.config._attn_implementation
        self.n_params = sum(p.numel() for p in self.model.parameters())
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=LR, weight_decay=WD)
        B, T = batch["tokens"].shape
        self.ids = torch.tensor(batch["tokens"], dtype=torch.long)
        self.mask = torch.tensor((np.arange(T)[None] < batch["lengths"][:, None]).astype(np.int64))
        self.pos = torch.tensor(batch["positions"], dtype=torch.long)
        self.targets = torch.tensor(batch["targets"], dtype=torch.long)
        self.w = torch.tensor(batch["target_weights"])
        labels = np.full((B, T), -100, np.int64)
        keep = batch["target_weights"] > 0
        labels[np.nonzero(keep)[0], batch["positions"][keep]] = batch["targets"][keep]
        self.labels = torch.tensor(labels)
        t = time.perf_counter()
        self.step()
        self.first_step_s = time.perf_counter() - t

    def step(self, _i=None):
        torch = self.torch
        self.opt.zero_grad(set_to_none=True)
        if self.masked_only:
            seq = self.model.bert(input_ids=self.ids, attention_mask=self.mask).last_hidden_state
            h = seq[torch.arange(seq.shape[0])[:, None], self.pos]
            logits = self.model.cls(h)
            ce = torch.nn.functional.cross_entropy(logits.flatten(0, 1), self.targets.flatten(), reduction="none")
            loss = (ce * self.w.flatten()).sum() / self.w.sum()
        else:
            loss = self.model(input_ids=self.ids, attention_mask=self.mask, labels=self.labels).loss
        loss.backward()
        self.opt.step()
        self.loss = loss.detach()


def main(argv=None) -> int:
    ap = base_argparser(__doc__)
    ap.add_argument("--config", choices=sorted(CONFIGS), default="small")
    ap.add_argument("--batch", type=int, default=None)
    ap.add_argument("--seq", type=int, default=None)
    ap.add_argument("--steps", type=int, default=None, help="timed steps per runner (quick: 2)")
    ap.add_argument("--rounds", type=int, default=2, help="alternate the runners this many times (quick: 1)")
    ap.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32", help="JAX compute dtype")
    ap.add_argument("--skip-torch", action="store_true")
    a = parse_args(ap, argv, quick=dict(steps=2, rounds=1))

    L, H, A, I, B0, T0, S0 = CONFIGS[a.config]
    B, T, steps = a.batch or B0, a.seq or T0, a.steps or S0
    cfg = BertConfig(vocab_size=21128, hidden_size=H, num_hidden_layers=L, num_attention_heads=A, intermediate_size=I,
                     max_position_embeddings=max(128, T), dtype=a.dtype)
    batch = make_batch(B, T, cfg.vocab_size)
    P = batch["positions"].shape[1]
    flops = train_flops(cfg, B, T) + 6.0 * (H * H + H * cfg.vocab_size) * B * P
    print(f"# MLM pretraining throughput: {a.config} (L={L}, H={H}, vocab={cfg.vocab_size}), B={B}, T={T}, P={P}, "
          f"JAX dtype {a.dtype}", flush=True)
    peak = measure_peak()
    runners = {"jax": JaxRunner(BertForMaskedLM(cfg, rngs=nnx.Rngs(0)), MaskedLM(), batch, lr=LR, weight_decay=WD)}
    if not a.skip_torch:
        runners["torch"] = TorchRunner(cfg, batch, masked_only=False)
        runners["torch_masked"] = TorchRunner(cfg, batch, masked_only=True)
    fws = time_runners(runners, steps=steps, rounds=a.rounds, warmup=1)  # one more warm-up step each
    res = throughput_result(
        fws, setup=f"MLM {L}x{H}, B={B}, T={T}, P={P}, {a.dtype}", batch=B, seq=T, flops=flops, peak_flops=peak,
        note="tokens/s counts padded B*T; torch projects every position (HF's BertForMaskedLM with labels), "
             "torch_masked only the masked ones, like ours; one process, so the peak RSS is of all together.",
        args={k: v for k, v in vars(a).items() if k != "json"} | {"batch": B, "seq": T, "steps": steps},
        config=a.config, layers=L, hidden=H, vocab=cfg.vocab_size, predictions_per_row=P,
        flops_formula="6*N*B*T + 12*L*B*T^2*H + 6*(H^2 + H*V)*B*P")
    res["frameworks"]["torch"]["mfu"] = None  # it does more FLOPs than counted (the head at every position)
    if "torch_masked" in res["frameworks"]:
        res["jax_over_torch_masked"] = res["frameworks"]["jax"]["tokens_per_s"] / res["frameworks"]["torch_masked"]["tokens_per_s"]
    return finish(res, a, argv, show_throughput)


if __name__ == "__main__":
    raise SystemExit(main())
