"""The study's LSTM, started from the language model this project pretrains (ULMFiT/ELMo-style transfer).

    jaxsenti pretrain lstm --config lstm_lm --out runs/pretrain/lstm_lm
    jaxsenti train lstm --config lstm_dianping_lm --pretrained runs/pretrain/lstm_lm

`jaxsenti study` uses this config for its `lstm_pretrained` row, with the pretrained LM shipped in the
package (or one it pretrains within its time budget when the data differ). Everything else is
lstm_dianping's: split 1600/200/200, vocabulary of the training split (its words that the LM knows
start from the LM's vectors), best epoch on validation loss.
Expected: test accuracy 0.873 ± 0.027 over 5 seeds from the shipped LM (0.840 ± 0.016 from random init, same
splits; `python experiments/transfer.py lstm ...`, experiments/RESULTS.md "Transfer learning").
"""

import dataclasses

from jaxsenti.config import TrainConfig, load_config


def get_config() -> TrainConfig:
    # Derived, not copied: the two rows must differ only in the starting weights.
    # `pretrained` stays None: the study fills it in; `jaxsenti train` takes --pretrained.
    return dataclasses.replace(load_config("lstm_dianping"), name="lstm_dianping_lm")
