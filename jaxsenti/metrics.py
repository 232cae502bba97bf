"""Classification metrics (scikit-learn) and mean ± std summaries over seeds."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_score, recall_score

METRICS = ("precision", "recall", "accuracy", "f1")


def classification_metrics(y_true, y_pred) -> dict:
    """Precision/recall/F1 of the positive class (label 1), accuracy, and the 2×2 confusion matrix."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    return {
        "precision": float(precision_score(y_true, y_pred, zero_division=0)),
        "recall": float(recall_score(y_true, y_pred, zero_division=0)),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "f1": float(f1_score(y_true, y_pred, zero_division=0)),
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=[0, 1]).tolist(),
        "n": int(len(y_true)),
    }


def summarize(runs: list[dict]) -> dict:
    """Mean and (sample) std of each metric over runs, plus the summed confusion matrix."""
    out = {}
    for k in METRICS:
        vals = np.array([r[k] for r in runs], float)
        out[k] = {"mean": float(vals.mean()), "std": float(vals.std(ddof=1)) if len(vals) > 1 else 0.0, "values": vals.tolist()}
    out["confusion_matrix"] = np.sum([r["confusion_matrix"] for r in runs], axis=0).tolist()
    out["runs"] = len(runs)
    return out


def fmt_mean_std(m: dict) -> str:
    """``mean ± std``; a single run has no spread to show, so just its value."""
    if len(m.get("values", ())) == 1:
        return f"{m['mean']:.3f}"
    return f"{m['mean']:.3f} ± {m['std']:.3f}"
