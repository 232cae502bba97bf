"""benchmarks/accelerator.py --smoke: every part of the GPU check runs on a CPU at tiny sizes, so it cannot rot
between GPU sessions (one run of about a minute, shared by the tests below; no timing thresholds)."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
sys.path.insert(0, str(BENCH))

import accelerator  # noqa: E402
import report  # noqa: E402


def _all_finite(obj) -> bool:
    if isinstance(obj, dict):
        return all(_all_finite(v) for v in obj.values())
    if isinstance(obj, list):
        return all(_all_finite(v) for v in obj)
    return not isinstance(obj, float) or math.isfinite(obj)


def _tables(md: str) -> list[list[str]]:
    """Each markdown table as a list of rows of cells."""
    tables, cur = [], []
    for line in md.splitlines() + [""]:
        if line.startswith("|"):
            cur.append([c.strip() for c in re.split(r"(?<!\\)\|", line.strip()[1:-1])])
        elif cur:
            tables.append(cur)
            cur = []
    return tables


def _run(out: Path, *args: str, data_dir: Path, cache: Path, timeout: float = 900) -> subprocess.CompletedProcess:
    env = dict(
        os.environ,
        JAXSENTI_DATA_DIR=str(data_dir),
        JAXSENTI_CACHE=str(cache),
        MPLBACKEND="Agg",
        JAXSENTI_NO_DOWNLOAD="1",
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    )
    env.pop("XLA_PYTHON_CLIENT_PREALLOCATE", None)
    return subprocess.run(
        [sys.executable, str(BENCH / "accelerator.py"), "--out", str(out), *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def smoke(tmp_path_factory, dianping_path):
    out = tmp_path_factory.mktemp("accelerator")
    before = accelerator.RESULTS_MD.read_bytes()
    proc = _run(out, "--smoke", data_dir=dianping_path.parent, cache=tmp_path_factory.mktemp("cache"))
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    res = json.loads((out / "accelerator.json").read_text())
    return {"out": out, "res": res, "stdout": proc.stdout, "results_md_before": before}


def test_every_part_ran_without_error(smoke):
    res = smoke["res"]
    assert res["smoke"] and not res["on_gpu"] and res["status"] == 0
    assert list(res["parts"]) == list(accelerator.PARTS)
    for name, part in res["parts"].items():
        assert "error" not in part and "skipped" not in part, (name, part)
    assert "no GPU" in res["note"] and "lstm_ref" in res["note"]
    assert res["machine"]["devices"] and _all_finite(res)


def test_device_part_measures_the_matrix_rates(smoke):
    dev = smoke["res"]["parts"]["device"]
    rates = dev["matmul"]["flops_per_s"]
    assert set(rates) == {"jax_bfloat16", "jax_float32", "torch_bfloat16", "torch_float32"}
    assert all(r > 0 for r in rates.values())
    assert dev["peak_flops"] == max(rates["jax_bfloat16"], rates["torch_bfloat16"])
    assert dev["lstm_cudnn_kernel"] is False and dev["versions"]["jax"]


def _rows(part):
    return {k: v for k, v in part.items() if isinstance(v, dict) and "frameworks" in v}


def test_lstm_three_implementations_and_the_cpu_fallback_is_said(smoke):
    lstm = _rows(smoke["res"]["parts"]["lstm"])
    assert lstm and all(set(r["frameworks"]) == {"jax", "jax_cudnn", "torch"} for r in lstm.values())
    for r in lstm.values():
        j, c, t = (r["frameworks"][k] for k in ("jax", "jax_cudnn", "torch"))
        assert j["compile_s"] > 0 and c["compile_s"] > 0 and t["compile_s"] is None
        assert j["steps_timed"] == len(j["step_times_s"]) >= 1 and j["traces"] == 1
        assert "CPU fallback" in c["kernel"] and "lstm_ref" in c["kernel"]
        assert any("no CUDA GPU" in w for w in c["warnings"])
        assert j["compiled_mib"] > 0 and r["cudnn_over_torch"] > 0 and r["jax_over_torch"] > 0


def test_the_gpu_only_tests_ran_through_pytest_and_skip_here(smoke):
    t = smoke["res"]["parts"]["gpu_tests"]
    assert t["passed"] and t["rc"] == 0 and "-m gpu" in t["command"]
    names = " ".join(o["test"] for o in t["outcomes"])
    assert {o["outcome"] for o in t["outcomes"]} == {"SKIPPED"} and "needs a CUDA GPU" in names  # a CPU
    assert "skipped" in t["summary"] and "deselected" in t["summary"]


def test_bert_and_mlm_rows(smoke):
    parts = smoke["res"]["parts"]
    bert, mlm = _rows(parts["bert"]), _rows(parts["mlm"])
    assert set(bert) == {"float32", "bfloat16"} and set(mlm) == {"bfloat16"}
    for r in [*bert.values(), *mlm.values()]:
        assert set(r["frameworks"]) == {"jax", "torch"} and r["frameworks"]["jax"]["mfu"] > 0
        assert r["frameworks"]["jax"]["compile_s"] > 0 and r["flops_per_step"] > 0
    assert bert["float32"]["frameworks"]["torch"]["attention"] == "sdpa"
    assert bert["bfloat16"]["frameworks"]["jax"]["attention"] in ("einsum", "xla", "cudnn")
    m = mlm["bfloat16"]
    assert m["hf_flops_per_step"] > m["flops_per_step"]
    assert m["frameworks"]["jax"]["head_positions"] < m["frameworks"]["torch"]["head_positions"] == m["seq"]


def test_pretraining_exported_and_copied_within_the_device_tools_limits(smoke, tmp_path):
    pre, out = smoke["res"]["parts"]["pretrain"], smoke["out"]
    assert pre["run"]["rc"] == 0 and "--config bert_mlm_small" in pre["run"]["command"]
    assert "time_budget_s=5" in pre["overrides"] and "corpus.max_texts=64" in pre["overrides"]
    assert pre["steps"] >= 1 and pre["history"] and "val_loss" in pre["final"]
    copied = set(pre["copied"])
    assert {"config.json", "model.safetensors", "pretraining.json"} <= copied <= set(accelerator.EXPORT_FILES)
    assert copied & {"tokenizer.json", "vocab.txt"}  # the tokenizer the model was pretrained with
    assert {p.name for p in (out / "bert_mlm_small").iterdir()} == copied
    # what a GPU run adds beside these: the wrapper's log and RESULTS-gpu.md; still within the tool's limits
    extras = [out / f for f in accelerator.OTHER_OUT_FILES if not (out / f).exists()]
    for f in extras:
        f.write_text("x")
    try:
        assert accelerator.check_out_dir(out) == []
    finally:
        for f in extras:
            f.unlink()
    from jaxsenti.models.hf_export import load_mlm

    model = load_mlm(out / "bert_mlm_small")
    assert model.cfg.num_hidden_layers == 2 and model.cfg.vocab_size == 21128


def test_study_ran_as_a_subprocess_and_its_timeout_is_recorded(smoke):
    st = smoke["res"]["parts"]["study"]
    assert "-m jaxsenti study" in st["command"] and st["timeout_s"] == pytest.approx(3.0, abs=0.5)
    assert st["timed_out"] and not st["finished"]


def test_smoke_writes_json_only_and_leaves_results_gpu_md_alone(smoke):
    assert accelerator.RESULTS_MD.read_bytes() == smoke["results_md_before"]
    assert "Not measured on a GPU yet" in accelerator.RESULTS_MD.read_text()
    assert not (smoke["out"] / "RESULTS-gpu.md").exists()
    assert "not writing RESULTS-gpu.md: --smoke" in smoke["stdout"]
    with pytest.raises(RuntimeError, match="GPU measurements only"):
        accelerator.write_markdown(smoke["res"], smoke["out"])


def test_markdown_renders_every_part(smoke):
    md = report.render_gpu_markdown(smoke["res"])
    for title in (
        "## Device",
        "## LSTM train step",
        "## GPU-only tests",
        "## BERT fine-tune step",
        "## BERT masked-LM pretraining step",
        "## Pretraining `bert_mlm_small`",
        "## Whole study",
    ):
        assert title in md, title
    assert "**Passed**" in md and "timed out" in md and "Not measured in this run" not in md
    tables = _tables(md)
    assert len(tables) == 6
    for t in tables:
        assert all(len(r) == len(t[0]) for r in t) and len(t) > 2
    assert "nan" not in md.lower()


def test_check_out_dir_flags_what_would_not_come_back(tmp_path):
    (tmp_path / "a" / "b" / "c").mkdir(parents=True)
    (tmp_path / "a" / "b" / "c" / "deep.txt").write_text("x")
    (tmp_path / "bad name.txt").write_text("x")
    for i in range(7):
        (tmp_path / f"f{i}.txt").write_text("x")
    bad = accelerator.check_out_dir(tmp_path)
    assert any("9 files" in b for b in bad) and any("deep.txt" in b for b in bad) and any("bad name" in b for b in bad)
    assert accelerator.check_out_dir(tmp_path / "a" / "b") == []


def test_parts_that_do_not_fit_the_deadline_are_skipped_and_merge_keeps_the_earlier_ones(
    smoke, tmp_path, dianping_path
):
    proc = _run(
        tmp_path,
        "--smoke",
        "--deadline",
        "0",
        "--parts",
        "lstm,study",
        "--merge",
        str(smoke["out"] / "accelerator.json"),
        data_dir=dianping_path.parent,
        cache=tmp_path / "cache",
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    res = json.loads((tmp_path / "accelerator.json").read_text())
    assert res["parts"]["lstm"]["skipped"].startswith("deadline") and "skipped" in res["parts"]["study"]
    assert res["parts"]["bert"] == smoke["res"]["parts"]["bert"]  # kept from the merged run
    assert res["merged_from"]["parts"] == sorted(set(accelerator.PARTS) - {"lstm", "study"})
    assert "Not measured in this run" in report.render_gpu_markdown(res)
