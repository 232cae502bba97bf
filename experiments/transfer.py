"""The transfer-learning result: fine-tuning accuracy from random init vs from this project's pretraining,
and how it grows with the amount of pretraining (the snapshots a pretraining run exported along the way).

    python experiments/transfer.py bert --pretrained runs/pretrain/bert_mlm_small --seeds 5 --curve-seeds 3 \\
        --json experiments/results/transfer_bert.json
    python experiments/transfer.py lstm --pretrain --seeds 5 --json experiments/results/transfer_lstm.json

MODEL is a registered model with a pretraining task. ``--pretrain`` first runs ``jaxsenti pretrain MODEL`` with
its packaged pretraining config (into ``--pretrained``, default runs/pretrain/<config>); otherwise
``--pretrained`` names a finished pretraining folder. Then, same splits and seeds (seed i = split i and
init i): the model's random-init study config, its pretrained-here config started from the final
checkpoint (``--seeds`` seeds), and from each snapshot (``--curve-seeds`` seeds). The JSON holds every
run, the pretraining record (corpus, tokens, held-out loss/accuracy, wall time) and the curve; the
"Transfer learning" section of RESULTS.md and the plot next to the JSON are made from it.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))  # benchmarks/common.py: shared script helpers

from common import ROOT, base_argparser, check_results_file, finish, shown  # noqa: E402
from jaxsenti import config as config_lib  # noqa: E402
from jaxsenti import registry  # noqa: E402
from jaxsenti.data import load_reviews, resolve_dataset, segment_many  # noqa: E402
from jaxsenti.metrics import fmt_mean_std  # noqa: E402
from jaxsenti.plotting import new_figure, save_figure  # noqa: E402
from jaxsenti.pretrain import pretrain  # noqa: E402
from jaxsenti.study import run_neural  # noqa: E402


def _accuracy(cfg, reviews, words, seeds: int, out: Path, label: str) -> dict:
    t0 = time.perf_counter()
    res = run_neural(cfg, reviews, words, seeds, out / label, progress=sys.stderr.isatty())
    s = res["summary"]
    print(f"  {label:28s} test accuracy {fmt_mean_std(s['accuracy'])}  ({seeds} seeds, {time.perf_counter() - t0:.0f} s)",
          flush=True)
    return {"label": label, "config": cfg.name, "pretrained": cfg.pretrained, "summary": s, "runs": res["runs"],
            "mixed_sentence_p_positive": res["mixed_sentence_p_positive"], "seconds": time.perf_counter() - t0}


def plot_curve(res: dict, path: Path) -> Path:
    """Test accuracy (mean ± std over seeds) against pretraining tokens; random init drawn at 0 tokens."""
    fig, ax = new_figure(figsize=(7, 4.5))
    pts = [(0, res["random"]["summary"]["accuracy"])] + [(c["tokens_seen"], c["summary"]["accuracy"]) for c in res["curve"]]
    xs = [p[0] / 1e6 for p in pts]
    ax.errorbar(xs, [p[1]["mean"] for p in pts], yerr=[p[1]["std"] for p in pts], marker="o", capsize=3,
                label=f"{res['model']} fine-tuned (mean ± std over seeds)")
    ax.set_xlabel("pretraining tokens seen (millions; 0 = random initialisation)")
    ax.set_ylabel("dianping test accuracy")
    ax.set_title(f"{res['model']}: accuracy vs amount of pretraining")
    ax.legend(loc="lower right", fontsize="small")
    return save_figure(fig, path)


def main(argv=None) -> int:
    ap = base_argparser(__doc__, quick=False)
    ap.add_argument("model", choices=[n for n, s in registry.MODELS.items() if s.pretraining is not None])
    ap.add_argument("--pretrained", help="pretraining folder (default: runs/pretrain/<pretraining config name>)")
    ap.add_argument("--pretrain", action="store_true", help="run the pretraining first (into --pretrained)")
    ap.add_argument("--seeds", type=int, default=5, help="seeds for random init and the final checkpoint")
    ap.add_argument("--curve-seeds", type=int, default=3, help="seeds for each snapshot along the pretraining run (0: skip the snapshots)")
    ap.add_argument("--out", help="where model folders go (default: a temporary folder)")
    ap.add_argument("--set", action="append", default=[], help="override KEY=VALUE in both fine-tuning configs")
    a = ap.parse_args(argv)
    if a.json:  # its figure goes beside it: the same rule as the JSON's (base_argparser)
        from jaxsenti.plotting import written_by_jaxsenti
        check_results_file(Path(a.json).with_suffix(".png"), written_by_jaxsenti, flag="")
    spec = registry.get(a.model)
    pcfg = config_lib.load_config(spec.pretrain_config)
    folder = Path(a.pretrained or ROOT / "runs" / "pretrain" / pcfg.name)
    if a.pretrain:
        pretrain(pcfg, folder, overwrite=True, progress=sys.stderr.isatty(),
                 command=f"python experiments/transfer.py {a.model} --pretrain")
    info = json.loads((folder / "pretraining.json").read_text(encoding="utf-8"))
    random_cfg = config_lib.apply_overrides(config_lib.load_config(spec.study_config), a.set)
    tuned_cfg = config_lib.apply_overrides(config_lib.load_config(spec.study_pretrained_here_config), a.set)
    path = resolve_dataset(tuned_cfg.data.path)
    reviews = load_reviews(path, tuned_cfg.data.text_column, tuned_cfg.data.label_column)
    words = segment_many(reviews.texts) if spec.encoder.uses_words else None
    out = Path(a.out or tempfile.mkdtemp(prefix="jaxsenti-transfer-"))
    t0 = time.perf_counter()
    print(f"# {a.model}: random init vs pretrained here ({folder}), {a.seeds} seeds; curve over snapshots, "
          f"{a.curve_seeds} seeds", flush=True)
    res = {"model": a.model, "pretrained_folder": shown(folder), "pretraining": info, "data": str(path),
           "random": _accuracy(random_cfg, reviews, words, a.seeds, out, "random init"),
           "final": _accuracy(dataclasses.replace(tuned_cfg, pretrained=str(folder)), reviews, words, a.seeds, out,
                              f"pretrained, {info['epochs_run']} epochs")}
    curve = []
    snapshots = sorted((folder / "snapshots").glob("epoch*"), key=lambda p: int(p.name[5:])) if a.curve_seeds > 0 else []
    for snap in snapshots:  # --curve-seeds 0: the final checkpoint only
        meta = json.loads((snap / "snapshot.json").read_text(encoding="utf-8"))
        r = _accuracy(dataclasses.replace(tuned_cfg, pretrained=str(snap)), reviews, words, a.curve_seeds, out,
                      f"pretrained, {snap.name}")
        curve.append(r | {"epoch": meta["epoch"], "tokens_seen": meta["tokens_seen"], "val_loss": meta["val_loss"],
                          "val_accuracy": meta["val_accuracy"]})
    final = info["final"]
    curve.append(res["final"] | {"epoch": info["epochs_run"], "tokens_seen": info["tokens_seen"],
                                 "val_loss": final["val_loss"], "val_accuracy": final["val_accuracy"]})
    res |= {"curve": curve, "total_seconds": time.perf_counter() - t0,
            "command": shown(["python", "experiments/transfer.py", *(sys.argv[1:] if argv is None else argv)])}
    if a.json:
        res["plot"] = shown(plot_curve(res, Path(a.json).with_suffix(".png")))
    return finish(res, a, argv, lambda r: None)


if __name__ == "__main__":
    from jaxsenti.cli import script_main

    script_main(main)
