"""The study's BERT fine-tuning: bert-base-chinese, [CLS] head, split 1620/180/200.

    jaxsenti train bert --config configs/bert_dianping.py                      # hub id (needs hub access or HF cache)
    jaxsenti train bert --config configs/bert_dianping.py --pretrained /path/to/bert-base-chinese

AdamW 2e-5, 10% warmup then linear decay, weight decay 0.01 (not on LayerNorm/bias), 3 epochs,
max length 128 (about 21% of dianping reviews are longer and get truncated).
Expected with the real pretrained weights: test accuracy around 0.90 (the study's range);
this cannot be measured on machines without hub access — see README.
"""

from jaxsenti.config import DataConfig, OptimConfig, TrainConfig
from jaxsenti.models.bert import BertConfig


def get_config() -> TrainConfig:
    return TrainConfig(
        name="bert_dianping",
        model=BertConfig(pooling="cls"),  # dimensions come from the checkpoint's config.json
        data=DataConfig(split=(1620, 180, 200)),
        optim=OptimConfig(name="adamw", lr=2e-5, schedule="linear", warmup_ratio=0.1, weight_decay=0.01, clip_norm=1.0),
        batch_size=32,
        eval_batch_size=64,
        epochs=3,
        patience=0,
        max_len=128,
        buckets=(32, 64, 128),
        pretrained="bert-base-chinese",
    )
