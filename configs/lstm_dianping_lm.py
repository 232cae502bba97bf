"""The study's LSTM, started from the language model this project pretrains (ULMFiT/ELMo-style transfer).

    jaxsenti pretrain lstm --config lstm_lm --out runs/pretrain/lstm_lm
    jaxsenti train lstm --config lstm_dianping_lm --pretrained runs/pretrain/lstm_lm

`jaxsenti study` uses this config for its `lstm_pretrained` row, with the pretrained LM shipped in the
package (or one it pretrains within its time budget when the data differ). Everything else is
lstm_dianping's: split 1600/200/200, vocabulary of the training split (its words that the LM knows
start from the LM's vectors), best epoch on validation loss.
Expected: test accuracy 0.873 ± 0.027 over 5 seeds from the shipped LM (0.840 ± 0.016 from random init, same
splits; `python benchmarks/transfer.py lstm ...`, benchmarks/RESULTS.md "Transfer learning").
"""

from jaxsenti.config import DataConfig, OptimConfig, TrainConfig
from jaxsenti.models.lstm import LSTMConfig


def get_config() -> TrainConfig:
    return TrainConfig(
        name="lstm_dianping_lm",
        model=LSTMConfig(embed_dim=400, hidden_dim=256, num_layers=2, dropout=0.5, embed_dropout=0.3, pooling="last"),
        data=DataConfig(split=(1600, 200, 200)),
        optim=OptimConfig(name="adam", lr=1e-3, clip_norm=5.0),
        batch_size=64,
        epochs=10,
        patience=3,
        max_len=256,
        buckets=(32, 64, 128, 256),
        pretrained=None,  # the study fills this in; `jaxsenti train` takes --pretrained
    )
