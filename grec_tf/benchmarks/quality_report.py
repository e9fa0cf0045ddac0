"""The Markdown page of the ``quality`` benchmark, written from its JSON report alone."""
from __future__ import annotations

import math
from typing import Dict, List, Optional

from grec_tf.benchmarks.seed_comparison import WIN_STANDARD_ERRORS, format_statistics

CEILING_PARAGRAPH = ("The Bayes ceiling is the posterior expectation of each row's label given only that row's "
                     "features, computed exactly from the generator (`grec_tf/data/telecom/ceiling.py`). Its gap to "
                     "the oracle comes from hidden variables (session intent, wanted brand and category, customer "
                     "taste): no model that scores a row from its features alone can close that part.")


def _fmt(value: Optional[float], digits: int = 4, sign: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"


def verdict_words(verdict: str, model: str) -> str:
    """A :func:`~grec_tf.benchmarks.seed_comparison.compare` verdict from GRec's side, in words."""
    return {"win": "GRec wins", "loss": f"{model} wins", "tie": "tie"}[verdict]


def _header(report: Dict) -> List[str]:
    c, options, env = report["config"], report["options"], report["environment"]
    data, train, model = c["data"], c["train"], c["model"]
    seeds = options["seeds"]
    where = (f"{data['rows']:,} impressions (generator seed {data['seed']})" if data["source"] == "telecom"
             else f"`{data['path']}`, split seed {data['seed']}")
    lines = [f"# `quality` benchmark: {report['dataset']}", "",
             f"Data: `{data['source']}`, {where}; the split is the same for every model and seed. "
             f"Options: `{options}`.",
             f"Seeds: {len(seeds)} ({', '.join(map(str, seeds))}): `train.seed` for GRec-TF and DeepCTR (initial "
             "weights and shuffle), LightGBM's `seed` (row and feature subsampling).",
             f"Budget shared by the networks: {train['epochs']} epochs max, early stopping on the valid loss "
             f"(patience {train['early_stopping_patience']}, best weights restored), batch {data['batch_size']} "
             f"(GRec-TF: long rows, one per task; DeepCTR: persons), {optimizer_words(train)}; GRec-TF "
             f"d_model {model['d_model']}, expert hidden {model['expert_hidden']}. LightGBM: one model over every task "
             "sentence, 63 leaves, lr 0.05, 80% row/feature subsampling, up to 2000 rounds, early stopping after 50 "
             "on the valid log-loss. Nothing was tuned on test.",
             f"Machine: {env['machine']}, {env['cores']} cores; load average (1/5/15 min) before "
             f"{env['load_average_before']}, after {env['load_average_after']}.", ""]
    return lines + [f"- Note: {note}" for note in report["notes"]] + ([""] if report["notes"] else [])


def optimizer_words(train: Dict) -> str:
    """The shared optimizer of a config's ``train`` dict as a report states it, e.g. "Adam lr 0.002, warm-up +
    cosine decay (5% warm-up)" (the quality and throughput reports)."""
    words = f"{'AdamW' if train.get('weight_decay') else 'Adam'} lr {train['learning_rate']}"
    if train.get("weight_decay"):
        words += f", weight decay {train['weight_decay']}"
    if train.get("learning_rate_schedule", "constant") == "warmup_cosine":
        words += f", warm-up + cosine decay ({train['warmup_fraction']:.0%} warm-up)"
    return words


def _summary(report: Dict) -> List[str]:
    summary, vs = report["summary"], report["comparisons"]["vs_grec"]
    lines = ["## Summary", "",
             f"Cells: mean ± std over seeds; SE = std / sqrt(seeds). A difference is a win only when it exceeds "
             f"{WIN_STANDARD_ERRORS:g} standard errors of the difference (sqrt(SE_a² + SE_b²)); otherwise it is "
             "written as a tie.", "",
             "| model | seeds | mean AUC | SE | GRec - model (2 SE) | verdict | mean AUC CVR/CTCVR | mean AP CVR/CTCVR "
             "| gap to oracle | gap to Bayes ceiling | params | train s |",
             "|---" * 12 + "|"]
    ceiling = report.get("bayes_ceiling_summary")
    if ceiling:
        lines.append(f"| Bayes ceiling (row features, generator known) | - | {_fmt(ceiling['mean_auc'])} | - | - | - | "
                     f"{_fmt(ceiling['mean_auc_sparse'])} | {_fmt(ceiling['mean_ap_sparse'])} | "
                     f"{_fmt(ceiling.get('mean_auc_gap_to_oracle'))} | 0 | - | - |")
    for name, s in summary.items():
        versus = vs.get(name, {}).get("mean_auc")
        difference = f"{_fmt(versus['difference'], sign=True)} ({_fmt(versus['limit'])})" if versus else "-"
        cells = [format_statistics(s[key]) if key in s else "-" for key in
                 ("mean_auc", "mean_auc_sparse", "mean_ap_sparse", "mean_auc_gap_to_oracle", "mean_auc_gap_to_ceiling")]
        params = "-" if s["params"] is None else f"{s['params']:,}"
        lines.append(f"| {name} | {s['mean_auc']['n']} | {cells[0]} | {_fmt(s['mean_auc']['se'])} | {difference} | "
                     f"{verdict_words(versus['verdict'], name) if versus else '-'} | {' | '.join(cells[1:])} | "
                     f"{params} | {s['train_seconds']['mean']:.0f} |")
    return lines + ([""] + [CEILING_PARAGRAPH] if ceiling else []) + [""]


def _sparse_lift(report: Dict) -> List[str]:
    """One line per sparse task sentence: GRec's AUC lift over single-task (absent: why)."""
    lift = report["comparisons"]["sparse_lift_over_single_task"]
    lines = ["## Sparse task sentences (CVR, CTCVR): GRec's lift over single-task", ""]
    if not lift:
        return lines + ["Not measured: this run has no `single_task` (or no `grec`) row, or no sparse task "
                        "sentence.", ""]
    for sentence, row in lift.items():
        lines.append(f"- {sentence}: GRec AUC {_fmt(row['grec_auc'])} vs single-task {_fmt(row['single_task_auc'])}: "
                     f"{_fmt(row['difference'], sign=True)} ({_fmt(row['relative_lift_percent'], 1, sign=True)}%), "
                     f"2 SE {_fmt(row['limit'])}: {verdict_words(row['verdict'], 'single-task')}")
    return lines + [""]


def _targets(report: Dict) -> List[str]:
    lines = ["## Targets", ""]
    for name, target in report["targets"].items():
        verdict = {True: "pass", False: "FAIL", None: "not measured"}[target["pass"]]
        lines.append(f"- {name}: **{verdict}** (value {_fmt(target['value'], sign=True)}, limit "
                     f"{_fmt(target['limit'])}; {target['detail']})")
    ceiling = report.get("bayes_ceiling_summary")
    if ceiling and "mean_auc_gap_to_oracle" in ceiling:
        bound, limit = ceiling["mean_auc_gap_to_oracle"], report["gap_target"]
        lines.append(f"- Reachable? The Bayes ceiling's own mean AUC gap to the oracle is {bound:.4f}: a model that "
                     f"scores each row from its features cannot get below it"
                     + (f", so a gap target of {limit} is out of reach on this data." if bound > limit else "."))
    return lines + [""]


def _per_sentence(report: Dict) -> List[str]:
    names, oracle, ceiling = list(report["summary"]), report["oracle"], report.get("bayes_ceiling")
    references = [("oracle", oracle)] * bool(oracle) + [("ceiling", ceiling)] * bool(ceiling)
    header = ["task sentence", "test rows"] + [f"{r} AUC" for r, _ in references] + [f"{n} AUC" for n in names] + \
        [f"{r} AP" for r, _ in references] + [f"{n} AP" for n in names]
    lines = ["## Per task sentence (test split, mean ± std over seeds)", "", "| " + " | ".join(header) + " |",
             "|---" * len(header) + "|"]
    for s in report["sentences"]:
        cells = [s, str(report["test_rows"][s])]
        for metric in ("auc", "ap"):
            cells += [_fmt(values[s][metric]) for _, values in references]
            cells += [format_statistics(report["summary"][n]["per_sentence"][s][metric]) for n in names]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def markdown(report: Dict) -> str:
    """The whole page: setup, summary with verdicts, sparse lift lines, targets, per task sentence table."""
    return "\n".join(_header(report) + _summary(report) + _sparse_lift(report) + _targets(report)
                     + _per_sentence(report)) + "\n"
