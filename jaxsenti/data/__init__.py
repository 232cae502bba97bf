"""Input side: loading and validating review CSVs, Chinese text preprocessing, splits, batching."""

from jaxsenti.data.io import DataError, LoadReport, Reviews, load_reviews, resolve_dataset
from jaxsenti.data.splits import Split, stratified_split
from jaxsenti.data.text import PAD, UNK, Vocab, cjk_only, segment, segment_many

__all__ = [
    "DataError", "LoadReport", "Reviews", "load_reviews", "resolve_dataset",
    "Split", "stratified_split",
    "PAD", "UNK", "Vocab", "cjk_only", "segment", "segment_many",
]
