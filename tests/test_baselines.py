"""Baselines on dianping with the study's split: segmented TF-IDF models reach the issue's bar."""

import numpy as np
import pytest

from jaxsenti.baselines import baseline_specs, evaluate_baseline, fit_unsegmented_svm, join_words
from jaxsenti.data import segment_many, stratified_split


@pytest.fixture(scope="module")
def split_docs(dianping):
    docs = join_words(segment_many(dianping.texts))
    sp = stratified_split(dianping.labels, (1600, 200, 200), seed=0)
    fit_idx = np.concatenate([sp.train, sp.val])
    return ([docs[i] for i in fit_idx], dianping.labels[fit_idx], [docs[i] for i in sp.test], dianping.labels[sp.test],
            [dianping.texts[i] for i in fit_idx], [dianping.texts[i] for i in sp.test])


@pytest.mark.parametrize("name", ["tfidf_svm", "naive_bayes"])
def test_segmented_baselines_reach_085(split_docs, name):
    d_fit, y_fit, d_test, y_test, *_ = split_docs
    res = evaluate_baseline(name, d_fit, y_fit, d_test, y_test, seed=0)
    assert res["accuracy"] >= 0.85
    assert set(res["best_params"]) >= {"tfidf__ngram_range"}


def test_unsegmented_is_clearly_worse(split_docs):
    d_fit, y_fit, d_test, y_test, raw_fit, raw_test = split_docs
    seg = evaluate_baseline("tfidf_svm", d_fit, y_fit, d_test, y_test, seed=0)["accuracy"]
    raw = float(np.mean(fit_unsegmented_svm(raw_fit, y_fit).predict(raw_test) == y_test))
    assert raw < seg - 0.1


def test_knn_grid_capped_for_small_data():
    _, grid = baseline_specs(0, n_train=20)["knn"]
    assert max(grid["clf__n_neighbors"]) <= 15
