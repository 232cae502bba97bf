"""Behaviour of the benchmark helpers and a tiny end-to-end run of two benchmarks (no timing thresholds)."""

from __future__ import annotations

import json
import math
import os
import re
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))

import common  # noqa: E402
import harness  # noqa: E402
import report  # noqa: E402
import run_all  # noqa: E402


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


# ----------------------------------------------------------------------------------------------
# timing helpers
# ----------------------------------------------------------------------------------------------


def test_time_calls_separates_first_call_and_warmup_on_fake_clock():
    clock = FakeClock()
    # call 0: compile (10 s); calls 1-2: warm-up; calls 3..102: durations 1..100 ms
    durations = [10.0, 7.0, 7.0] + [i / 1000 for i in range(1, 101)]
    seen = []

    def fn(i):
        seen.append(i)
        clock.now += durations[i]

    cleared = []
    r = harness.time_calls(fn, repeats=100, warmup=2, clock=clock, before=cleared.append)
    assert seen == list(range(103)) and cleared == list(range(103))
    assert r["first_call_s"] == pytest.approx(10.0)
    assert r["n"] == 100
    timed = durations[3:]
    assert r["median_s"] == pytest.approx(0.0505)
    assert r["p50_s"] == pytest.approx(np.percentile(timed, 50))
    assert r["p99_s"] == pytest.approx(np.percentile(timed, 99))  # 99.01 ms
    assert r["min_s"] == pytest.approx(0.001) and r["max_s"] == pytest.approx(0.1)
    assert len(r["times_s"]) == 100


def test_time_calls_without_first_call():
    clock = FakeClock()
    r = harness.time_calls(lambda i: setattr(clock, "now", clock.now + 2.0), repeats=3, warmup=0, first_call=False, clock=clock)
    assert "first_call_s" not in r and r["median_s"] == pytest.approx(2.0) and r["n"] == 3


def test_write_json_is_strict_and_maps_nonfinite_to_null(tmp_path):
    p = common.write_json(tmp_path / "sub" / "x.json", {"a": float("nan"), "b": [np.float32(1.5), float("inf")],
                                                         "c": np.arange(3), "d": tmp_path})
    d = json.loads(p.read_text())  # strict: would fail on NaN literals with a strict parser below
    json.loads(p.read_text(), parse_constant=lambda c: pytest.fail(f"non-standard constant {c}"))
    assert d["a"] is None and d["b"] == [1.5, None] and d["c"] == [0, 1, 2] and d["d"] == str(tmp_path)


def test_machine_info_is_the_projects_and_has_cpu_and_versions():
    from jaxsenti.machine import machine_info

    assert common.machine_info is machine_info
    m = common.machine_info()
    assert m["cpu_model"] and m["cpu_count"] >= 1
    assert {"jax", "flax", "torch", "numpy"} <= set(m["versions"])


def test_alternate_takes_turns_round_by_round():
    calls = []
    times = harness.alternate({k: (lambda j, k=k: calls.append((k, j))) for k in ("a", "b")}, [2, 1])
    assert calls == [("a", 0), ("a", 1), ("b", 0), ("b", 1), ("a", 2), ("b", 2)]
    assert [len(v) for v in times.values()] == [3, 3]


def test_parse_args_quick_defaults_yield_to_explicit_options():
    ap = common.base_argparser("x")
    ap.add_argument("--steps", type=int, default=12)
    assert common.parse_args(ap, [], quick={"steps": 4}).steps == 12
    assert common.parse_args(ap, ["--quick"], quick={"steps": 4}).steps == 4
    assert common.parse_args(ap, ["--quick", "--steps", "7"], quick={"steps": 4}).steps == 7
    ap = common.base_argparser("x", profile=True)
    assert ap.parse_args(["--profile", "3:2"]).profile == (3, 2) and ap.parse_args([]).profile is None
    for bad in ("3", "a:1", "1:0", "-1:2"):
        with pytest.raises(SystemExit):
            ap.parse_args(["--profile", bad])


def test_throughput_result_layout():
    fws = {"jax": {"compile_s": 3.0, "first_step_s": 0.5, "step_times_s": [0.2, 0.4, 0.3], "peak_rss_mib": 10.0},
           "torch": {"first_step_s": 0.6, "step_times_s": [0.6, 0.6], "peak_rss_mib": 9.0}}
    r = harness.throughput_result(fws, setup="s", note="n", batch=4, seq=8, flops=1e9, peak_flops=1e10)
    j, t = r["frameworks"]["jax"], r["frameworks"]["torch"]
    assert set(j) == set(t) and t["compile_s"] is None
    assert j["median_step_s"] == 0.3 and j["tokens_per_s"] == pytest.approx(32 / 0.3) and j["seq_per_s"] == pytest.approx(4 / 0.3)
    assert j["mfu"] == pytest.approx(1e9 / 0.3 / 1e10) and j["steps_timed"] == 3 and j["min_step_s"] == 0.2
    assert r["jax_over_torch"] == pytest.approx(2.0) and r["tokens_per_step"] == 32


# ----------------------------------------------------------------------------------------------
# RESULTS.md writer
# ----------------------------------------------------------------------------------------------


def _timing(med, first=None):
    r = {"n": 5, "median_s": med, "p50_s": med, "p90_s": med * 1.1, "p99_s": med * 1.2, "mean_s": med, "min_s": med,
         "max_s": med * 1.2}
    if first is not None:
        r["first_call_s"] = first
    return r


def fake_results(tmp_path: Path) -> dict:
    out = tmp_path / "results"
    out.mkdir(exist_ok=True)
    (out / "scaling_batch.png").write_bytes(b"png")
    cpu = {"devices": ["cpu: cpu"]}
    lstm = harness.throughput_result(
        {"jax": {"first_step_s": 2.5, "step_times_s": [0.5] * 3, "peak_rss_mib": 800.0},
         "torch": {"first_step_s": 0.6, "step_times_s": [0.45] * 3, "peak_rss_mib": 700.0}},
        setup="emb 400, 2x256, B=64, T=128, float32", note="full length rows.", batch=64, seq=128) | {"machine": cpu}
    bert = harness.throughput_result(
        {"jax": {"compile_s": 7.0, "first_step_s": 1.0, "step_times_s": [1.8] * 3, "peak_rss_mib": 2000.0},
         "torch": {"first_step_s": 1.2, "step_times_s": [4.0] * 3, "peak_rss_mib": 2000.0}},
        setup="4x256, B=32, T=128, float32", note="padded tokens.", batch=32, seq=128, flops=7.2e10,
        peak_flops=8e10) | {"machine": cpu}
    lm = {S: harness.throughput_result(
        {"jax": {"compile_s": 3.0, "first_step_s": 0.4 * k, "step_times_s": [0.3 * k] * 3, "peak_rss_mib": 900.0 * k},
         "torch": {"first_step_s": 0.5 * k, "step_times_s": [0.4 * k] * 3, "peak_rss_mib": 800.0 * k}},
        setup=f"LM emb 400, 2x256, V=30000, {v}, B=64, T=64", note="predicted words.", batch=64, seq=64,
        variant=v) | {"machine": cpu} for S, k, v in ((1024, 1, "sampled softmax, S=1024"), (0, 8, "full softmax"))}
    model = {"n_params": 5_000_000, "config_file": "configs/lstm_dianping.py", "buckets": [32, 64, 128, 256],
             "weights": "random init", "single": _timing(0.002, 0.6),
             "batch": _timing(2.0, 7.0) | {"batch_size": 256, "jitted_calls_per_predict": 4, "buckets_used": [32, 64],
                                           "reviews_per_s": 128.0},
             "encode_batch": _timing(0.1) | {"reviews_per_s": 2560.0},
             "model_only": {"b1": _timing(0.01, 0.1) | {"compile_s": 0.5, "batch": 1, "seq": 128, "seq_per_s": 100.0},
                            "b256": _timing(1.4, 2.0) | {"compile_s": 1.5, "batch": 256, "seq": 128, "seq_per_s": 180.0}}}
    stage = _timing(0.5) | {"n_reviews": 2000, "reviews_per_s": 4000.0}
    pre = {"datasets": {"dianping": {"rows_read": 2000, "rows_kept": 2000, "n_reviews": 2000, "jieba_init_s": 0.9,
                                     **{k: dict(stage) for k, _ in report.PRE_STAGES},
                                     "cjk_jieba": dict(stage, words_per_s=1e5)}}}
    scaling = {"batch": {"model": "LSTM", "seq": 128, "steps": 3, "rows": [
        {"batch": b, "jax_over_torch": 1.0, "frameworks": {
            "jax": {"median_step_s": 0.1 * b / 16, "tokens_per_s": 2e4, "seq_per_s": 160.0, "peak_rss_mib": 700.0},
            "torch": {"median_step_s": 0.1, "tokens_per_s": 2e4, "seq_per_s": 160.0, "peak_rss_mib": 600.0}}}
        for b in (16, 32)]},
        "dataset": {"model": {"embed_dim": 128, "hidden_dim": 128, "num_layers": 1, "batch_size": 64, "max_len": 128,
                              "buckets": [32, 64, 128], "vocab_cap": 30000},
                    "rows": [{"n_reviews": n, "data": "dianping", "vocab_size": 5000, "n_steps": n // 64,
                              "preprocess_s": n / 3000, "compile_s": 9.0 if n == 2000 else 0.1, "epoch_s": n / 800,
                              "train_reviews_per_s": 800.0, "real_tokens_per_s": 3e4} for n in (2000, 10000)]}}
    part = lambda name, r, rss=900.0: [{"file": str(out / f"{name}.json"), "command": f"python benchmarks/{name}.py",  # noqa: E731
                                        "wall_s": 10.0, "peak_rss_mib": rss, "result": r}]
    return {
        "command": "python benchmarks/run_all.py --quick", "quick": True, "machine": common.machine_info(),
        "wall_s": 123.0, "skipped": ["bert_base"], "errors": {},
        "parts": {"lstm": part("lstm_throughput", lstm), "bert": part("bert_throughput_small", bert),
                  "lm": part("lm_throughput", lm[1024]) + part("lm_throughput_full", lm[0]),
                  "latency": part("inference_latency_lstm", {"models": {"lstm": model}, "peak_rss_mib": 1000.0,
                                                             "machine": cpu}),
                  "preprocessing": part("preprocessing", pre), "scaling": part("scaling", scaling),
                  "gemm_floor": part("gemm_floor", {"results": {"lstm": {
                      "gemm_flops": 5.9e10, "n_products": 520, "jax_gemm_ms": 400.0, "jax_gflops": 147.0,
                      "torch_gemm_ms": 380.0, "torch_gflops": 155.0}}}),
                  "dropout": part("dropout_masks", {"shape": [2, 4], "elements": 8, "rate": 0.1,
                                                    "median_ms": {"threefry": 10.0, "hash": 0.5},
                                                    "ns_per_element": {"threefry": 5.0, "hash": 0.25},
                                                    "speedup_hash_over_threefry": 20.0})},
    }


def parse_tables(md: str) -> list[list[list[str]]]:
    tables, cur = [], []
    for line in md.splitlines() + [""]:
        if line.startswith("|"):
            cur.append([c.strip() for c in re.split(r"(?<!\\)\|", line.strip()[1:-1])])
        elif cur:
            tables.append(cur)
            cur = []
    return tables


def test_render_markdown_tables_parse_and_numbers_are_finite(tmp_path):
    res = fake_results(tmp_path)
    md = report.render_markdown(res, tmp_path / "RESULTS.md", tmp_path / "results")
    assert "python benchmarks/run_all.py --quick" in md
    assert "**All numbers are CPU numbers** (jax saw no accelerator)" in md and "| devices jax saw | cpu: cpu |" in md
    for title in ("Machine", "Training throughput", "How much of a step is GEMMs",
                  "Dropout masks",
                  "Inference latency",
                  "Preprocessing throughput", "Scaling"):
        assert f"## {title}" in md, title
    assert "![train-step throughput vs batch size](results/scaling_batch.png)" in md
    assert "scaling_dataset.png" not in md  # not on disk, so not embedded
    tables = parse_tables(md)
    assert len(tables) >= 7
    n_numbers = 0
    for t in tables:
        header, sep, rows = t[0], t[1], t[2:]
        assert all(set(c) <= set("-") and c for c in sep) and len(sep) == len(header)
        assert rows
        for r in rows:
            assert len(r) == len(header), (header, r)
            for c in r:
                s = c.replace(",", "")
                try:
                    x = float(s)
                except ValueError:
                    assert "nan" not in c.lower() and "inf" not in c.lower().replace("info", ""), c
                    continue
                assert math.isfinite(x)
                n_numbers += 1
    assert n_numbers > 50
    # the JAX/PyTorch ratio and the latency p99 made it into the tables
    assert "0.9" in md and "2.4" in md  # p99 of the single review: 2 ms * 1.2
    # GEMM ceiling = PyTorch's whole LSTM step (450 ms) / JAX's GEMMs (400 ms)
    gemm = next(t for t in tables if "JAX GEMMs (ms)" in t[0])
    assert gemm[2][-1] == "1.12"
    # one step table for every case: MFU, the ratio, compile apart from the first step
    assert "- MFU against a measured 80 GFLOP/s fp32 matmul peak" in md
    assert "| BERT small | 4x256, B=32, T=128, float32 | jax | 1,800 | 2,276 | 50.0% | 2.22x | 7 | 1 | 2,000 |" in md
    assert "| LSTM | emb 400, 2x256, B=64, T=128, float32 | torch | 450.0 | 18,204 | – | 1.00x | – | 0.6 | 700.0 |" in md
    # a part with two runs (lm: sampled and full softmax) shows both, each named by its variant
    assert "- LSTM LM pretraining (sampled softmax, S=1024): predicted words." in md
    assert "- LSTM LM pretraining (full softmax): predicted words." in md
    train = next(t for t in tables if "MFU" in t[0])
    assert [r[1] for r in train if r[0] == "LSTM LM pretraining"] == [
        "LM emb 400, 2x256, V=30000, sampled softmax, S=1024, B=64, T=64"] * 2 + [
        "LM emb 400, 2x256, V=30000, full softmax, B=64, T=64"] * 2


def test_render_names_the_accelerator_jax_saw(tmp_path):
    res = fake_results(tmp_path)
    res["parts"]["lstm"][0]["result"]["machine"] = {"devices": ["gpu: NVIDIA H100 80GB HBM3"]}
    md = report.render_markdown(res, tmp_path / "RESULTS.md", tmp_path / "results")
    assert "JAX ran on gpu: NVIDIA H100 80GB HBM3, PyTorch on the CPU" in md and "All numbers are CPU numbers" not in md


def test_render_only_cli_rewrites_results_md(tmp_path):
    res = fake_results(tmp_path)
    common.write_json(tmp_path / "results" / "results.json", res)
    md_path = tmp_path / "RESULTS.md"
    assert run_all.main(["--render-only", "--out", str(tmp_path / "results"), "--md", str(md_path)]) == 0
    assert "## Training throughput" in md_path.read_text()
    assert json.loads((tmp_path / "results" / "results.json").read_text())["command"] == res["command"]


def test_render_only_without_a_results_json_is_one_line_and_exit_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        run_all.main(["--render-only", "--out", str(tmp_path), "--md", str(tmp_path / "R.md")])
    assert e.value.code == 2 and "run the suite first" in capsys.readouterr().err and not (tmp_path / "R.md").exists()


def test_render_only_reads_a_part_run_alone_and_refreshes_it(tmp_path):
    out = tmp_path / "results"
    common.write_json(out / "results.json", fake_results(tmp_path))
    xla = {"options": {"baseline": {"flags": "", "cases": {"lstm float32": {
        "jax_step_s": 0.2, "torch_step_s": 0.25, "jax_over_torch": 1.25, "jax_vs_baseline": 1.0, "loss_rel_diff": 0.0,
        "within_tolerance": True, "dtype": "float32"}}}}, "tolerance": {"float32": 1e-4}, "machine": {"date": "D1"}}
    common.write_json(out / "xla_cpu_flags.json", xla)
    md_path = tmp_path / "RESULTS.md"
    assert run_all.main(["--render-only", "--out", str(out), "--md", str(md_path)]) == 0
    md = md_path.read_text()
    assert "## XLA CPU options" in md and "| baseline | (none) | lstm float32 |" in md
    assert "python benchmarks/xla_cpu_flags.py (a separate run, D1)" in md
    xla["machine"]["date"] = "D2"  # run alone again: the next render reads the new file, not results.json's copy
    common.write_json(out / "xla_cpu_flags.json", xla)
    assert run_all.main(["--render-only", "--out", str(out), "--md", str(md_path)]) == 0
    assert "(a separate run, D2)" in md_path.read_text()


def test_plan_quick_skips_bert_base_and_honours_skip(tmp_path):
    parts = [p for p, _ in run_all.plan(True, tmp_path, {"bert"})]
    assert parts == ["lstm", "lstm_bf16", "bert_bf16", "mlm", "lm", "gemm_floor", "xla_flags", "dropout", "latency",
                     "preprocessing", "scaling", "startup"]
    lm = dict(run_all.plan(True, tmp_path, set()))["lm"]  # sampled (the config's) and full softmax
    assert [cmd[2:-2] for _, cmd in lm] == [["lm", "--quick"], ["lm_full", "--quick"]]
    full = dict(run_all.plan(False, tmp_path, set(), study=True))
    assert "bert_base" in full and full["study_time"][0][1][2:] == ["--study", "--json", str(tmp_path / "study_time.json")]
    for jobs in full.values():
        for json_path, cmd in jobs:
            assert cmd[-2:] == ["--json", str(json_path)]


def test_gemm_floor_counts_the_same_flops_as_the_harness():
    import gemm_floor

    assert gemm_floor.flops(*gemm_floor.bert_gemms()) == harness.bert_flops(harness.CASES["bert_small"]["dims"], 32, 128)
    # LSTM: forward 2*T*B*4H*(D+H) per layer, backward twice that (dx and dW), D = 400 then 256
    T, B, H = 128, 64, 256
    assert gemm_floor.flops(*gemm_floor.lstm_gemms()) == sum(3 * 2 * T * B * 4 * H * (d + H) for d in (400, H))


def test_gemm_floor_runs_tiny_shapes_in_both_frameworks(tmp_path):
    import gemm_floor

    big, chains, batched = [(8, 4, 16)], [(3, 2, 4, 16), (3, 2, 16, 4)], [(2, 3, 4, 5)]
    for runner in (gemm_floor.jax_runner, gemm_floor.torch_runner):
        for dtype in ("float32", "bfloat16"):
            assert math.isfinite(float(runner(big, chains, batched, dtype)()))


def test_scaling_plots_from_results(tmp_path):
    import scaling

    res = fake_results(tmp_path)["parts"]["scaling"][0]["result"]
    for f in (scaling.plot_batch(res["batch"], tmp_path / "b.png"), scaling.plot_dataset(res["dataset"], tmp_path / "d.png")):
        assert f.is_file() and f.stat().st_size > 1000


# ----------------------------------------------------------------------------------------------
# tiny end-to-end runs
# ----------------------------------------------------------------------------------------------


def _all_finite(obj) -> bool:
    if isinstance(obj, dict):
        return all(_all_finite(v) for v in obj.values())
    if isinstance(obj, list):
        return all(_all_finite(v) for v in obj)
    return not isinstance(obj, float) or math.isfinite(obj)


TEXTS = ["这家店的菜很好吃，服务也很热情", "太难吃了，再也不来了", "环境一般，价格偏贵", "非常满意，下次还来",
         "排队时间太长，体验很差", "味道不错，分量也足"]


def test_preprocessing_tiny_end_to_end(tmp_path, write_csv):
    import preprocessing

    rows = "\n".join(f"{t}{i},{i % 2}" for i, t in enumerate(TEXTS * 5))
    path = write_csv("comment,sentiment\n" + rows + "\n")
    tok = os.environ.get("JAXSENTI_BERT_TOKENIZER_DIR")
    tok = tok if tok and Path(tok).is_dir() else None
    res = preprocessing.run({"tiny": (path, "comment", "sentiment")}, repeats=2, tokenizer_dir=tok)
    p = common.write_json(tmp_path / "pre.json", res)
    d = json.loads(p.read_text())["datasets"]["tiny"]
    assert d["rows_read"] == 30 and d["n_reviews"] == 30
    for st in ("load_validate", "cjk_filter", "cjk_jieba", "vocab_build", "vocab_encode") + (("bert_tokenize",) if tok else ()):
        assert d[st]["reviews_per_s"] > 0 and d[st]["n"] == 2
    assert _all_finite(d)


def test_inference_latency_tiny_end_to_end(tmp_path):
    import inference_latency

    texts = [f"{t}{'好' * (i % 3)}" for i, t in enumerate(TEXTS * 3)]
    res = inference_latency.run(["lstm"], texts=texts, single_repeats=3, batch_repeats=2, batch_size=8,
                                model_only_repeats=3, tiny=True, workdir=tmp_path)
    p = common.write_json(tmp_path / "lat.json", res)
    m = json.loads(p.read_text())["models"]["lstm"]
    assert m["tiny"] and "random init" in m["weights"]
    assert m["single"]["n"] == 3 and m["batch"]["n"] == 2 and m["batch"]["batch_size"] == 8
    assert m["single"]["first_call_s"] > 0 and m["batch"]["first_call_s"] > 0
    assert m["model_only"]["b8"]["compile_s"] > 0 and m["model_only"]["b1"]["seq"] == 128
    assert (tmp_path / "lstm_random" / "config.json").is_file()
    assert _all_finite(m)


def test_dropout_masks_benchmark_tiny(tmp_path, capsys):
    import dropout_masks

    out = tmp_path / "d.json"
    assert dropout_masks.main(["--shape", "8,16", "--rounds", "1", "--reps", "2", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["elements"] == 128 and set(res["median_ms"]) == {"threefry", "hash"}
    assert res["speedup_hash_over_threefry"] > 0
    assert res["machine"]["devices"]  # jax is loaded, so the machine lists its devices


def _check_throughput_layout(res: dict, steps: int, tokens_per_step: int) -> None:
    j, t = res["frameworks"]["jax"], res["frameworks"]["torch"]
    assert {"compile_s", "first_step_s", "median_step_s", "tokens_per_s", "seq_per_s", "peak_rss_mib", "mfu",
            "first_loss"} <= set(j) & set(t)
    assert j["steps_timed"] == t["steps_timed"] == steps and j["first_step_s"] > 0 and t["first_step_s"] > 0
    assert j["compile_s"] > 0 and t["compile_s"] is None and j["traces"] == 1
    assert res["tokens_per_step"] == tokens_per_step and res["setup"] and res["note"]
    assert res["jax_over_torch"] == pytest.approx(j["tokens_per_s"] / t["tokens_per_s"])
    assert _all_finite(res)


@pytest.mark.parametrize("case", ["lstm", "bert_small", "mlm", "lm"])
def test_every_harness_case_runs_both_frameworks_in_process(case):
    for dtype in ("float32", "bfloat16") if case in ("lstm", "bert_small") else ("float32",):
        spec = harness.spec_for(case, dtype=dtype, smoke=True, steps=3, rounds=2)
        res = harness.measure(spec)
        B, T = spec["batch"], spec["seq"]
        _check_throughput_layout(res, 3, res["tokens_per_step"])
        assert res["dtype"] == dtype and (dtype in res["setup"] or case == "lm") and res["flops_per_step"] > 0
        assert [len(r["round_medians_s"]) for r in res["frameworks"].values()] == [2] * len(res["frameworks"])
        if case == "mlm":
            assert set(res["frameworks"]) == {"jax", "torch", "torch_masked"} and res["jax_over_torch_masked"] > 0
            assert res["hf_flops_per_step"] > res["flops_per_step"] and res["frameworks"]["torch"]["mfu"] is None
        elif case != "lm":
            assert res["tokens_per_step"] == B * T
        if dtype == "bfloat16":
            assert res["frameworks"]["torch"]["autocast"] == "bfloat16"


def test_mlm_batches_mask_the_same_positions_for_every_framework():
    b = harness.mlm_batches(1, 4, 16, 21128, 3, mask_id=103)[0]
    assert (b["tokens"][np.arange(4)[:, None], b["positions"]] == 103).all() and (b["positions"] >= 1).all()
    assert (b["positions"] < b["lengths"][:, None]).all() and (b["targets"] != 103).all()


def test_harness_cli_runs_each_framework_in_its_own_process_and_profiles(tmp_path):
    out = tmp_path / "lstm.json"
    assert harness.main(["lstm", "--smoke", "--dtype", "bfloat16", "--profile", "1:1", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    _check_throughput_layout(res, 2, 16)
    assert res["isolated"] and res["machine"]["devices"]  # (peak RSS per framework needs a light parent, not pytest)
    # --profile START:N: the jax worker traced its second timed step into profile/ beside the JSON
    assert res["spec"]["profile"] == [1, 1, str(tmp_path / "profile")]
    assert list((tmp_path / "profile").rglob("*.xplane.pb"))


def test_a_cpu_without_a_bf16_onednn_lstm_runs_pytorchs_native_kernel_and_says_so(tmp_path):
    """oneDNN has no bfloat16 LSTM without AVX-512 (issue 24: the smoke tests failed on such a CPU);
    ONEDNN_MAX_CPU_ISA=AVX2 makes this CPU one of them."""
    import subprocess

    out = tmp_path / "lstm.json"
    env = os.environ | {"ONEDNN_MAX_CPU_ISA": "AVX2"}
    p = subprocess.run([sys.executable, str(BENCH / "harness.py"), "lstm", "--smoke", "--dtype", "bfloat16",
                        "--json", str(out)], env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    res = json.loads(out.read_text())
    assert res["frameworks"]["torch"]["onednn"] is False and math.isfinite(res["frameworks"]["torch"]["first_loss"])
    assert "oneDNN has no bfloat16 LSTM on this CPU" in res["note"] and "PyTorch limitation" in res["note"]
    # on this machine's own ISA the row says what ran
    spec = harness.spec_for("lstm", dtype="bfloat16", smoke=True)
    assert harness.measure(spec)["frameworks"]["torch"]["onednn"] is harness.onednn_runs_lstm("bfloat16")


def test_xla_cpu_flags_smoke_compares_options_with_the_baseline(tmp_path):
    import xla_cpu_flags

    out = tmp_path / "xla.json"
    assert xla_cpu_flags.main(["--smoke", "--options", "baseline,ynn_dot", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert list(res["options"]) == ["baseline", "ynn_dot", "baseline_again"]  # the baseline's spread is the noise
    for name, opt in res["options"].items():
        assert set(opt["cases"]) == set(res["cases"]), name
        for c in opt["cases"].values():
            assert c["jax_over_torch"] > 0 and math.isfinite(c["first_loss"]) and c["within_tolerance"] in (True, False)
    assert all(c["loss_rel_diff"] == 0 for c in res["options"]["baseline"]["cases"].values())
    md = report.xla_section({"parts": {"xla_flags": [{"result": res}]}})
    assert any(line.startswith("| ynn_dot | --xla_cpu_experimental_ynn_fusion_type=dot | lstm bfloat16 |") for line in md)
    assert any(line.startswith("- The same baseline in two processes (first and last) differed by ") for line in md)
    assert "- Adopted by default (`jaxsenti/xla_options.py`, now): none." in md


def test_study_time_records_a_timeout_and_renders_the_shares(tmp_path):
    import startup

    with pytest.raises(ValueError, match=r"^jaxsenti: error: unrecognized arguments: --no-such-flag"):
        startup.run_study(tmp_path / "bad", timeout=120, args=["--no-such-flag"])  # its one line, no log dump
    r = startup.run_study(tmp_path / "s", timeout=0.5)
    assert r["timed_out"] and not r["finished"] and "-m jaxsenti study" in r["command"]
    done = {"finished": True, "command": "python -m jaxsenti study", "wall_s": 100.0,
            "steps": {"jieba segmentation": 10.0, "baselines": 60.0, "other (start-up, data, figures, report)": 30.0}}
    done["shares"] = {k: v / 100.0 for k, v in done["steps"].items()}
    md = "\n".join(report.study_section({"parts": {"study_time": [{"result": done}]}}))
    assert "| baselines | 60 | 60 |" in md and "| total (wall) | 100.0 | 100.0 |" in md


# ----------------------------------------------------------------------------------------------
# LSTM LM pretraining: the PyTorch side optimises the same objective as ours
# ----------------------------------------------------------------------------------------------


def _lm_params_and_grads(S: int):
    """Our loss and gradients (the objective inside the real train step) and PyTorch's, same weights, same
    candidates, dropout 0; as {name: array} in ``lm_throughput.jax_params_numpy``'s names."""
    import jax
    import optax
    import torch
    from flax import nnx

    import lm_torch as lm
    from jaxsenti.models.lstm_lm import log_expected_count, log_uniform_sample
    from jaxsenti.objectives.language_model import NextWordLM
    from jaxsenti.training.steps import create_train_state, loss_fn

    V, B, T = 50, 3, 7
    spec = {"vocab": V, "embed": 8, "hidden": 6, "layers": 2, "dropout": 0.0, "embed_dropout": 0.0}
    model = lm.jax_model(spec)
    rng = np.random.default_rng(3)  # non-zero biases, so that every parameter matters
    for v in [model.out_bias, model.proj.bias] + [layer.fwd.b for layer in model.layers]:
        v[...] = rng.normal(0.0, 0.5, v[...].shape).astype(np.float32)
    batch = lm.make_batch(B, T, V, seed=1)
    assert (batch["tokens"][batch["target_weights"] > 0] > 0).all() and batch["target_weights"][1:].sum() < (B - 1) * T
    state = create_train_state(model, optax.sgd(0.1), NextWordLM(num_sampled=S))
    key = jax.random.PRNGKey(7)
    (loss, _), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, state, batch, key)
    ours = {"loss": float(loss)} | {k: v for k, v in lm.jax_params_numpy(nnx.merge(state.graphdef, grads)).items()
                                     if "bias_hh" not in k}  # our one bias b is torch's bias_ih + bias_hh

    tm = lm.torch_model(spec)
    lm.load_into_torch(tm, lm.jax_params_numpy(model))
    cand = None
    if S:  # the candidates our step drew: the first key of its dropout stream (no dropout consumed one)
        ids, log_q = log_uniform_sample(nnx.Rngs(dropout=key).dropout(), S, V)
        ids_t = torch.tensor(np.asarray(ids), dtype=torch.long)
        hits = np.isin(np.asarray(ids), batch["targets"][batch["target_weights"] > 0])
        assert (ids_t == 0).any() and hits.any()  # both masks are exercised: a <pad> candidate, an accidental hit
        cand = (ids_t, lm.torch_log_expected_count(ids_t, S, V))
        np.testing.assert_allclose(cand[1].numpy(), np.asarray(log_q), rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(lm.torch_log_expected_count(torch.arange(V), S, V).numpy(),
                                   np.asarray(log_expected_count(np.arange(V), S, V)), rtol=1e-6, atol=1e-6)
    w = batch["target_weights"] * batch["weights"][:, None]
    z = tm.train()(torch.from_numpy(batch["tokens"]).long())
    loss_t = lm.torch_lm_loss(tm, z, torch.from_numpy(batch["targets"]).long().reshape(-1),
                              torch.from_numpy(w).reshape(-1), cand)
    loss_t.backward()
    named = dict(tm.named_parameters())
    for k in range(spec["layers"]):
        assert torch.equal(named[f"lstm.bias_ih_l{k}"].grad, named[f"lstm.bias_hh_l{k}"].grad)
    g = {n: p.grad.numpy() for n, p in named.items() if "bias_hh" not in n}
    return ours, {"loss": float(loss_t.detach())} | g


@pytest.mark.parametrize("S", [16, 0], ids=["sampled", "full"])
def test_lm_torch_loss_and_grads_equal_ours(S):
    ours, theirs = _lm_params_and_grads(S)
    assert set(ours) == set(theirs)
    assert math.isfinite(ours["loss"]) and theirs["loss"] == pytest.approx(ours["loss"], rel=1e-5)
    for k in sorted(set(ours) - {"loss"}):
        assert np.abs(ours[k]).max() > 0, k  # every parameter gets a gradient
        np.testing.assert_allclose(theirs[k], ours[k], rtol=1e-4, atol=1e-6, err_msg=k)


def test_lm_torch_sampler_is_ours():
    import jax
    import torch

    import lm_torch as lm
    from jaxsenti.models.lstm_lm import log_uniform_sample

    key, S, V = jax.random.PRNGKey(5), 4096, 30000
    ids, _ = log_uniform_sample(key, S, V)
    u = jax.random.uniform(key, (S,), np.float32)  # the uniforms log_uniform_sample maps to ids
    ids_t = lm.torch_log_uniform_sample(S, V, u=torch.tensor(np.asarray(u)))[0].numpy()
    off = ids_t != np.asarray(ids)
    assert off.mean() < 0.01 and np.abs(ids_t - np.asarray(ids)).max() <= 1  # exp may differ by an ulp at a floor
    drawn, _ = lm.torch_log_uniform_sample(S, V)
    assert 0 <= int(drawn.min()) and int(drawn.max()) < V and (drawn < 100).float().mean() > 0.3  # frequent ids favoured


def test_lm_case_runs_both_frameworks_on_the_same_batch_from_our_weights():
    import lm_torch

    batch = lm_torch.make_batch(4, 8, 50)
    w = batch["target_weights"]
    assert (w.sum(1) == batch["lengths"]).all() and batch["lengths"][0] == 8 and (batch["lengths"] >= 4).all()
    assert (batch["tokens"][w > 0] >= 3).all() and (batch["targets"][w > 0] >= 3).all()  # never <pad>/<unk>/<eos>
    assert (batch["tokens"][w == 0] == 0).all() and (batch["tokens"][:, 1:] == batch["targets"][:, :-1])[w[:, 1:] > 0].all()
    res = harness.measure(harness.spec_for("lm", smoke=True), isolate=True)
    fr = res["frameworks"]
    assert set(fr) == {"jax", "torch"} and res["num_sampled"] == 6 and res["variant"] == "sampled softmax, S=6"
    assert res["tokens_per_step"] == int(w.sum()) and res["padded_tokens_per_step"] == 32
    for fw, r in fr.items():
        assert r["tokens_per_s"] == pytest.approx(int(w.sum()) / r["median_step_s"])
        assert r["padded_tokens_per_s"] == pytest.approx(32 / r["median_step_s"])
        assert 0 < r["final_loss"] < 2 * math.log(50), fw
    assert fr["torch"]["n_params"] == fr["jax"]["n_params"] + 4 * 8 * 2  # torch's LSTM keeps two bias vectors
    assert res["initial_weights"] == "ours on both sides" and _all_finite(res)


def test_startup_section_renders_what_startup_py_measures():
    run = lambda s: {"median_s": s, "min_s": s, "runs": [s]}  # noqa: E731
    res = {"help": run(0.16), "usage_error": run(0.15), "predict": {"lstm": run(4.4), "bert": run(4.9)},
           "compile_cache": {"first_run_first_step_s": 2.4, "second_run_first_step_s": 0.8},
           "logging": {"default": run(9.9), "none": run(10.8), "overhead": 9.9 / 10.8 - 1}}
    text = "\n".join(report.startup_section({"parts": {"startup": [{"result": res}]}}))
    assert "`jaxsenti --help` | 0.16" in text and "predict --model bert" in text
    assert "2.4 s in a fresh compilation cache, 0.8 s in the second" in text and "-8.3 %" in text
