"""The small BERT of bert_small_random, fine-tuned from masked-LM pretraining done by this project.

    jaxsenti pretrain bert --config bert_mlm_small --out runs/pretrain/bert_mlm_small
    jaxsenti train bert --config bert_small_mlm --pretrained runs/pretrain/bert_mlm_small

`jaxsenti study` uses this config for its `bert_pretrained` row, with the pretrained checkpoint shipped
in the package (or one it pretrains within its time budget when the data differ). Same architecture,
tokenizer, split (1620/180/200) and fine-tuning settings as bert_small_random: the two rows differ only in
the starting weights.
Expected: test accuracy 0.829 ± 0.019 over 5 seeds from the 24-epoch pretraining, against 0.837 ± 0.030 from
random init on the same splits: no transfer gain at this scale (`python experiments/transfer.py bert ...`,
experiments/RESULTS.md "Transfer learning", with the curve over pretraining tokens).
"""

import dataclasses

from jaxsenti.config import TrainConfig, load_config


def get_config() -> TrainConfig:
    # Derived, not copied: the two rows must differ only in the starting weights.
    # `pretrained` stays None: the study fills it in; `jaxsenti train` takes --pretrained.
    return dataclasses.replace(load_config("bert_small_random"), name="bert_small_mlm")
