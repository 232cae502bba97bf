"""The small BERT of bert_small_random, fine-tuned from masked-LM pretraining done by this project.

    jaxsenti pretrain bert --config bert_mlm_small --out runs/pretrain/bert_mlm_small
    jaxsenti train bert --config bert_small_mlm --pretrained runs/pretrain/bert_mlm_small

`jaxsenti study` uses this config for its `bert_pretrained` row, with the pretrained checkpoint shipped
in the package (or one it pretrains within its time budget when the data differ). Same architecture,
tokenizer, split (1620/180/200) and fine-tuning settings as bert_small_random: the two rows differ only in
the starting weights.
Expected: see benchmarks/RESULTS.md, "Transfer learning", for the measured accuracy over 5 seeds.
"""

from jaxsenti.config import DataConfig, OptimConfig, TrainConfig
from jaxsenti.models.bert import BertConfig


def get_config() -> TrainConfig:
    return TrainConfig(
        name="bert_small_mlm",
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
        pretrained=None,  # the study fills this in; `jaxsenti train` takes --pretrained
    )
