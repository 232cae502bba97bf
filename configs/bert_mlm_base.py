"""Masked-language-model pretraining of a bert-base-size model (12 layers, 768 wide) on unlabeled reviews, for a GPU/TPU.

    jaxsenti pretrain bert --config bert_mlm_base --out runs/pretrain/bert_mlm_base --set model.dtype=bfloat16
    jaxsenti train bert --config bert_dianping --pretrained runs/pretrain/bert_mlm_base

Same corpus and masking as bert_mlm_small; sequences of 128 tokens, batch 256, bf16 compute
recommended on an accelerator. Far too slow for a 2-core CPU (tens of hours).
Expected: not measured yet (no GPU was lent while it was written; see benchmarks/RESULTS-gpu.md).
"""

from jaxsenti.config import CorpusConfig, OptimConfig, PretrainConfig
from jaxsenti.models.bert import BertConfig


def get_config() -> PretrainConfig:
    return PretrainConfig(
        name="bert_mlm_base",
        model=BertConfig(max_position_embeddings=512),
        corpus=CorpusConfig(finetune="bert_dianping", exclude_seeds=5),
        optim=OptimConfig(name="adamw", lr=2e-4, schedule="linear", warmup_ratio=0.06, weight_decay=0.01, clip_norm=1.0),
        batch_size=256,
        eval_batch_size=256,
        epochs=20,
        max_len=128,
        checkpoint_every=500,
    )
