"""The study's LSTM on dianping: embedding 400 → 2×LSTM(256) → mean over valid steps → logit.

    jaxsenti train lstm --config configs/lstm_dianping.py
    jaxsenti train lstm --config configs/lstm_dianping.py --set model.pooling=last   # the study's last-state head

Split 1600/200/200 (stratified, seed 0); best epoch chosen on validation loss.
Expected: test accuracy 0.838 ± 0.025 (5 seeds, benchmarks/RESULTS.md, from
`python benchmarks/accuracy.py configs/lstm_dianping.py --seeds 5`), 1–2 minutes per run on a 2-core CPU.
Mean pooling is the default because the last valid state scored lower: 0.824 ± 0.021 over the
same 5 seeds with `--set model.pooling=last`.
"""

from jaxsenti.config import DataConfig, OptimConfig, TrainConfig
from jaxsenti.models.lstm import LSTMConfig


def get_config() -> TrainConfig:
    return TrainConfig(
        name="lstm_dianping",
        model_name="lstm",
        model=LSTMConfig(embed_dim=400, hidden_dim=256, num_layers=2, dropout=0.5, pooling="mean"),
        data=DataConfig(split=(1600, 200, 200)),
        optim=OptimConfig(name="adam", lr=1e-3, clip_norm=5.0),
        batch_size=64,
        epochs=10,
        patience=3,
        max_len=256,
        buckets=(32, 64, 128, 256),
        min_freq=1,
    )
