"""Next-word language-model pretraining of the study's LSTM (embedding 400, 2×256) on unlabeled reviews.

    jaxsenti pretrain lstm --config lstm_lm --out runs/pretrain/lstm_lm
    jaxsenti train lstm --config lstm_dianping_lm --pretrained runs/pretrain/lstm_lm

Corpus: the 52,774 online-shopping reviews outside 酒店 plus the dianping reviews that are in no
validation or test split of seeds 0-4 (split 1600/200/200, lstm_dianping's), 2 % held out. jieba words
(the classifier's segmentation), vocabulary of the training texts (min count 2, the 15,000 most frequent),
sampled softmax over 1,024 candidates in training (full softmax for the held-out perplexity).
Expected: held-out perplexity 197 (next-word accuracy 18.4 %) after 6 epochs, 7.9M predicted words, 39 min on a
2-core CPU shared with another pretraining run; fine-tuning lstm_dianping_lm from it: 0.873 ± 0.027 test accuracy
over 5 seeds against 0.840 ± 0.016 from random init (experiments/RESULTS.md, "Transfer learning").
"""

from jaxsenti.config import CorpusConfig, OptimConfig, PretrainConfig
from jaxsenti.models.lstm_lm import LSTMLMConfig
from jaxsenti.tasks.language_model import LMTaskConfig


def get_config() -> PretrainConfig:
    return PretrainConfig(
        name="lstm_lm",
        model=LSTMLMConfig(embed_dim=400, hidden_dim=256, num_layers=2, dropout=0.2, embed_dropout=0.1),
        # 15,000 words: the embedding (400 wide) then fits the package as float16 (see tools/package_pretrained.py)
        task=LMTaskConfig(min_freq=2, max_size=15000, num_sampled=1024),
        corpus=CorpusConfig(finetune="lstm_dianping", exclude_seeds=5),
        optim=OptimConfig(name="adam", lr=2e-3, schedule="linear", warmup_ratio=0.02, clip_norm=1.0),
        batch_size=64,
        eval_batch_size=128,
        epochs=6,
        max_len=64,
        checkpoint_every=300,
        snapshot_epochs=(1, 2, 4),
    )
