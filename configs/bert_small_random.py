"""A small BERT trained from random initialisation (no pretrained weights), split 1620/180/200.

    jaxsenti train bert --config bert_small_random

This is what machines without Hugging Face hub access can run: the real bert-base-chinese
tokenizer with a 2-layer, 128-wide encoder learned from the 1620 training reviews only.
It is NOT transfer learning and says nothing about the study's BERT result.
Expected: test accuracy 0.837 ± 0.030 over 5 seeds (`python experiments/transfer.py bert ...`, experiments/RESULTS.md;
seeds 0-2 alone gave 0.855 ± 0.018 earlier), 73 s per seed on a 2-core CPU that two other training jobs shared
(366 s for 5 seeds).
"""

from jaxsenti.config import DataConfig, OptimConfig, TrainConfig
from jaxsenti.models.bert import BertConfig


def get_config() -> TrainConfig:
    return TrainConfig(
        name="bert_small_random",
        model=BertConfig(hidden_size=128, num_hidden_layers=2, num_attention_heads=2, intermediate_size=512,
                         max_position_embeddings=128, pooling="cls"),
        data=DataConfig(split=(1620, 180, 200)),
        optim=OptimConfig(name="adamw", lr=5e-4, schedule="linear", warmup_ratio=0.1, weight_decay=0.01, clip_norm=1.0),
        batch_size=32,
        eval_batch_size=64,
        epochs=8,
        patience=3,
        max_len=128,
        buckets=(32, 64, 128),
        pretrained=None,
    )
