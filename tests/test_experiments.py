"""The accuracy experiments (experiments/): transfer.py end to end on a tiny model, and the report they feed."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from tests.test_benchmarks_smoke import parse_tables

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


def load(name: str):
    """experiments/<name>.py as a module of its own name (``report`` would otherwise be benchmarks/report.py)."""
    spec = importlib.util.spec_from_file_location(f"experiments_{name}", EXPERIMENTS / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_report_renders_the_accuracy_and_transfer_tables(tmp_path):
    summary = {k: {"mean": 0.85, "std": 0.02, "values": [0.84, 0.86]} for k in ("precision", "recall", "accuracy", "f1")}
    acc = {"summary": summary | {"runs": 2}, "config": "lstm_dianping", "split": [1600, 200, 200],
           "data": "/d/dianping.csv", "mixed_sentence_p_positive": [0.4, 0.6], "total_seconds": 12.0}
    (tmp_path / "lstm_accuracy.json").write_text(json.dumps(acc))
    (tmp_path / "unrelated_accuracy.json").write_text("{not json")  # skipped, not fatal
    md_path = tmp_path / "RESULTS.md"
    assert load("report").main(["--results", str(tmp_path), "--md", str(md_path)]) == 0
    md = md_path.read_text()
    assert "## Accuracy" in md and "Transfer learning" not in md  # no transfer JSON: no empty section
    (table,) = parse_tables(md)
    assert table[2][:8] == ["lstm_dianping", "dianping.csv", "2", "1600/200/200", "0.850 ± 0.020", "0.850 ± 0.020",
                            "0.850 ± 0.020", "0.850 ± 0.020"], table[2]


def test_transfer_runs_random_final_and_snapshots_on_one_split_scheme(tmp_path):
    transfer = load("transfer")
    from jaxsenti import config as config_lib
    from jaxsenti.pretrain import pretrain

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(["菜很好吃服务也好", "环境太差味道一般", "非常满意下次还来", "又贵又难吃"] * 40), encoding="utf-8")
    cfg = config_lib.apply_overrides(config_lib.load_config("lstm_lm"), [
        f"corpus.sources=[({str(corpus)!r}, None)]", "corpus.shopping=False", "corpus.finetune=None", "epochs=2",
        "snapshot_epochs=[1]", "model.embed_dim=8", "model.hidden_dim=8", "task.num_sampled=8", "task.min_freq=1"])
    pretrain(cfg, tmp_path / "lm", progress=False)
    out = tmp_path / "transfer.json"
    tiny = ["epochs=1", "model.embed_dim=8", "model.hidden_dim=8", "batch_size=128"]
    assert transfer.main(["lstm", "--pretrained", str(tmp_path / "lm"), "--seeds", "1", "--curve-seeds", "1",
                          *sum((["--set", s] for s in tiny), []), "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert [c["epoch"] for c in res["curve"]] == [1, 2] and res["curve"][0]["tokens_seen"] < res["curve"][1]["tokens_seen"]
    assert res["random"]["summary"]["runs"] == res["final"]["summary"]["runs"] == 1
    assert (tmp_path / "transfer.png").read_bytes()[:4] == b"\x89PNG"
    md = load("report").transfer_section({"transfer": {"transfer.json": {"result": res}}}, tmp_path, tmp_path)
    assert any(line.startswith("| random init |") for line in md) and any("pretrained, epoch 1" in line for line in md)
    assert "![lstm transfer](transfer.png)" in md


def test_report_refuses_a_folder_without_results_and_writes_nothing(tmp_path, capsys):
    md = tmp_path / "RESULTS.md"
    with pytest.raises(SystemExit) as e:
        load("report").main(["--results", str(tmp_path / "nowhere"), "--md", str(md)])
    assert e.value.code == 2 and not md.exists() and "nothing written" in capsys.readouterr().err


def test_heldout_categories_split_into_balanced_labeled_rows_and_the_rest_unlabeled(tmp_path, monkeypatch):
    import csv

    mod = load("heldout_category")
    shop = tmp_path / "shop.csv"
    with open(shop, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["cat", "label", "review"])
        for cat, n in (("水果", 30), ("衣服", 30), ("酒店", 10), ("书籍", 8)):
            w.writerows([cat, str(i % 2), f"{cat}评论{i}号很好"] for i in range(n))
    monkeypatch.setattr(mod, "resolve_dataset", lambda name: shop)
    rest, files = mod._category_files(["水果", "衣服"], 10, tmp_path)
    with open(rest, encoding="utf-8") as f:
        assert {r["cat"] for r in csv.DictReader(f)} == {"酒店", "书籍"}  # 酒店 stays for the corpus reader to drop
    for cat, (lab, unl, counts) in files.items():
        with open(lab, encoding="utf-8") as f:
            labeled = list(csv.DictReader(f))
        with open(unl, encoding="utf-8") as f:
            unlabeled = [r["review"] for r in csv.DictReader(f)]
        assert sorted(r["label"] for r in labeled) == ["0"] * 5 + ["1"] * 5 and len(unlabeled) == 20
        assert not {r["review"] for r in labeled} & set(unlabeled) and counts == {"rows": 30, "labeled": 10, "unlabeled": 20}
    with pytest.raises(SystemExit, match="more unlabeled than labeled"):
        mod._category_files(["水果"], 16, tmp_path)
    with pytest.raises(SystemExit, match="酒店 stays out"):
        mod.main(["--categories", "酒店"])


def test_heldout_summary_compares_the_best_pretrained_lstm_with_the_best_baseline_by_the_seeds_std_error():
    mod = load("heldout_category")

    def row(*acc):
        return {"summary": {"accuracy": {"mean": sum(acc) / len(acc), "values": list(acc)}}}

    rows = {"tfidf_svm": row(0.90, 0.92, 0.91), "naive_bayes": row(0.92, 0.93, 0.94), "knn": row(0.8, 0.8, 0.8),
            "random": row(0.99, 0.99, 0.99), "base": row(0.93, 0.95, 0.94), "adapted+recipe": row(0.95, 0.96, 0.97)}
    s = mod._summary(rows)  # random init is not a pretrained row, however well it did
    assert s["best_baseline"] == "naive_bayes" and s["best_pretrained_lstm"] == "adapted+recipe"
    assert s["margin"] == pytest.approx(0.03) and s["std_error"] == pytest.approx((2 * 0.01 ** 2 / 3) ** 0.5)
    assert s["goal_met"] is True
    rows["adapted+recipe"] = rows["base"] = row(0.92, 0.95, 0.94)  # ahead by 0.007, within the std error
    assert mod._summary(rows)["goal_met"] is False
