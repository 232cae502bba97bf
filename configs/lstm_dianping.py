"""The study's LSTM on dianping: embedding 400 → 2×LSTM(256) → last valid state → logit.

    jaxsenti train lstm --config configs/lstm_dianping.py
    jaxsenti train lstm --config configs/lstm_dianping.py --set model.pooling=mean   # mean over valid steps

Split 1600/200/200 (stratified, seed 0); best epoch chosen on validation loss.
Expected: test accuracy 0.840 ± 0.016 (5 seeds, experiments/RESULTS.md, from
`python experiments/accuracy.py lstm_dianping --seeds 5`; the same again in `experiments/transfer.py lstm`), 129 s per
seed on a 2-core CPU that two other training jobs shared (644 s for 5 seeds; a quiet machine is faster).
That is below the 0.85 the LSTM issue hoped for. Dropout 0.3 on the embedded tokens was chosen on
*validation* accuracy (5 seeds) over no embedding dropout, 0.5, lr 5e-4, min_freq 2 and a
bidirectional LSTM (`--set model.embed_dropout=...`, `optim.lr=`, `min_freq=`, `model.bidirectional=`); their
validation means differed by about as much as seeds do (±0.01). With it, the study's last-state head
and mean pooling score the same within noise (mean: 0.834 ± 0.024), so the default is the study's.
"""

from jaxsenti.config import DataConfig, OptimConfig, TrainConfig
from jaxsenti.models.lstm import LSTMConfig


def get_config() -> TrainConfig:
    return TrainConfig(
        name="lstm_dianping",
        model=LSTMConfig(embed_dim=400, hidden_dim=256, num_layers=2, dropout=0.5, embed_dropout=0.3, pooling="last"),
        data=DataConfig(split=(1600, 200, 200)),
        optim=OptimConfig(name="adam", lr=1e-3, clip_norm=5.0),
        batch_size=64,
        epochs=10,
        patience=3,
        max_len=256,
        buckets=(32, 64, 128, 256),
    )
