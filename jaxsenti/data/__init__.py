"""Input side: loading and validating review CSVs, Chinese text preprocessing, splits, batching.

The names below are imported on first use (PEP 562): ``jaxsenti.data.csv_reader`` and friends stay cheap to
import for the command line, without numpy, scikit-learn or jieba.
"""

import importlib

_WHERE = {
    "DataError": "io", "LoadReport": "io", "Reviews": "io", "load_reviews": "io", "resolve_dataset": "io",
    "Split": "splits", "stratified_split": "splits",
    "PAD": "text", "UNK": "text", "Vocab": "text", "cjk_only": "text", "segment": "text", "segment_many": "text",
}

__all__ = list(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    globals()[name] = value
    return value
