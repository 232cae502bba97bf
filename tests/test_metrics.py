import pytest

from jaxsenti.metrics import classification_metrics, summarize


def test_classification_metrics():
    m = classification_metrics([1, 1, 0, 0], [1, 0, 0, 1])
    assert m["accuracy"] == 0.5 and m["precision"] == 0.5 and m["recall"] == 0.5
    assert m["confusion_matrix"] == [[1, 1], [1, 1]]
    m = classification_metrics([1, 1, 0, 0], [1, 1, 1, 0])
    assert m["precision"] == pytest.approx(2 / 3) and m["recall"] == 1.0 and m["f1"] == pytest.approx(0.8)


def test_summarize_mean_std():
    runs = [classification_metrics([1, 0], [1, 0]), classification_metrics([1, 0], [0, 0])]
    s = summarize(runs)
    assert s["accuracy"]["mean"] == 0.75 and s["accuracy"]["std"] == pytest.approx(0.3535534, abs=1e-6)
    assert s["confusion_matrix"] == [[2, 0], [1, 1]] and s["runs"] == 2
