"""``quality`` benchmark: AUC/AP per task sentence of GRec, its baselines and the peers a practitioner would
pick instead (LightGBM, DeepCTR), each trained once per seed on the same splits with the same budget.

    python -m pipelines.benchmark quality --out benchmarks/results \
        [--option config=configs/telecom.yaml] [--option overrides=data.rows=600000;train.epochs=4] \
        [--option models=grec,mmoe,single_task,lightgbm] [--option seeds=3] [--option quick=1] \
        [--option lightgbm_threads=0] [--option tag=600k]

Models (``models=``): the GRec-TF variants of :data:`VARIANTS` (config overrides per model; a variant whose
config is invalid for the dataset is skipped with its error in the notes), ``lightgbm``
(:mod:`grec_tf.benchmarks.lightgbm_peer`) and DeepCTR's ``deepctr_mmoe``, ``deepctr_ple``,
``deepctr_shared_bottom`` (:mod:`grec_tf.benchmarks.deepctr_peers`; single-flow data such as adult only).
Peers missing from the environment are skipped with a note.

Seeds (``seeds=n``): the data split stays fixed (``data.seed``); each model is trained with seeds 0..n-1
(``train.seed`` for GRec-TF and DeepCTR: initial weights and shuffle; LightGBM's ``seed``: its subsampling).
Every metric is reported as mean, std and standard error over seeds, and a difference between two models
is a win only beyond two standard errors of the difference, otherwise a tie
(:mod:`grec_tf.benchmarks.seed_comparison`).

On telecom it also scores the test split with the Bayes ceiling
(:func:`grec_tf.data.telecom.ceiling.ceiling_probabilities`): the best prediction possible from a
row's features, given the generator. Its AUC gap to the oracle is the part of a model's gap that
comes from hidden variables; the rest (model gap to the ceiling) is what learning can still close.

Writes ``quality_{dataset}.json`` and ``quality_{dataset}.md`` (``quality_{dataset}_{tag}.*`` with ``tag=``, e.g.
to keep two telecom sizes apart).
"""
from __future__ import annotations

import os
import platform
import tempfile
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd
import tensorflow as tf

from grec_tf.atomic_files import write_report
from grec_tf.benchmarks import deepctr_peers, lightgbm_peer
from grec_tf.benchmarks.quality_report import markdown
from grec_tf.benchmarks.seed_comparison import compare, seed_statistics
from grec_tf.config import ExperimentConfig, apply_overrides, load_config, parse_config
from grec_tf.data.sources import load_splits
from grec_tf.errors import ConfigError
from grec_tf.experiment import Experiment
from grec_tf.training.evaluation import evaluate_scores
from grec_tf.training.trainer import count_params

#: the GRec 8/4 the issues compare against; its candidates add their key to it
_GREC = ["model.type=grec", "model.routing=task_sentence", "model.num_experts=8", "model.top_k=4"]
#: GRec-TF model variant -> config overrides (all other settings, budget included, are shared). A new
#: model type is one line here.
VARIANTS: Dict[str, List[str]] = {
    "grec": _GREC,
    "grec_task": ["model.type=grec", "model.routing=task", "model.num_experts=8", "model.top_k=4"],
    "grec_token": ["model.type=grec", "model.routing=token", "model.num_experts=8", "model.top_k=4"],
    "grec_periodic": _GREC + ["model.numerical_embedding=periodic"],
    "grec_piecewise_linear": _GREC + ["model.numerical_embedding=piecewise_linear"],
    "grec_cross": _GREC + ["model.cross_layers=2"],
    "grec_warmup_cosine": _GREC + ["train.learning_rate_schedule=warmup_cosine"],
    # the schema default; configs/ train on warmup_cosine since issue 12
    "grec_constant_rate": _GREC + ["train.learning_rate_schedule=constant"],
    "grec_weight_decay": _GREC + ["train.weight_decay=0.0001"],  # YAML 1.1 reads 1e-4 as a string
    "grec_sentence_towers": _GREC + ["model.towers=task_sentence"],
    "grec_relu": _GREC + ["model.activation=relu"],  # ReLU experts: no Erfc/Exp in the step (issue 11)
    "grec_gelu": _GREC + ["model.activation=gelu"],  # the library default (configs/ use relu since issue 11)
    # sizes and regularization named by issue 12 (each doubles or adds one thing; nothing tuned on test numbers)
    "grec_embedding_32": _GREC + ["model.embedding_dim=32"],
    "grec_expert_hidden_256": _GREC + ["model.expert_hidden=256"],
    "grec_d_model_128": _GREC + ["model.d_model=128"],
    "grec_dropout": _GREC + ["model.dropout=0.1"],
    "grec_feature_tokens": _GREC + ["model.feature_tokens=feature"],  # one token per feature, not per group
    # FT-Transformer with PLE, the strongest network of Gorishniy et al. '22 on tabular data
    "grec_feature_tokens_piecewise_linear": _GREC + ["model.feature_tokens=feature",
                                                     "model.numerical_embedding=piecewise_linear"],
    # the same with target-aware bins (PLE-T): decision-tree thresholds per task sentence instead of quantiles
    "grec_feature_tokens_piecewise_linear_tree": _GREC + ["model.feature_tokens=feature",
                                                          "model.numerical_embedding=piecewise_linear",
                                                          "model.piecewise_linear_edges=tree"],
    # the wide part of Wide & Deep: a per-tower additive logit over the numericals' bins and the ids
    "grec_wide_logits": _GREC + ["model.wide_logits=true"],
    "grec_task_token_concat": _GREC + ["model.task_token=concat"],  # eq. 8's mean vs a concatenation
    "mmoe": ["model.type=mmoe", "model.num_experts=8"],
    "shared_bottom": ["model.type=shared_bottom"],
    "single_task": ["model.type=single_task"],
    "ple": ["model.type=ple"],
    "esmm": ["model.type=esmm"],
    "aitm": ["model.type=aitm"],
}
PEERS = ("lightgbm",) + tuple(deepctr_peers.PEER_MODELS)
SPARSE_USE_CASES = ("CVR", "CTCVR")
GAP_TARGET = 0.02  # issue 4: GRec's mean AUC gap to the oracle
#: models GRec must beat on the sparse task sentences (when they ran)
SPARSE_BASELINES = ("single_task", "mmoe")
#: ``quick``: sizes the test suite runs in seconds (the budget stays the same for every model)
QUICK_OVERRIDES = ["data.batch_size=256", "train.epochs=1", "model.d_model=16", "model.expert_hidden=32",
                   "model.num_experts=4", "model.top_k=2", "model.tower_units=[16]"]
QUICK_TELECOM_ROWS, QUICK_LIGHTGBM_ROUNDS = 3000, 40

#: one trained model: test metrics per task sentence, seconds, params (None: not a network), and extras
SeedRun = Dict[str, object]


class NotApplicable(Exception):
    """A peer that cannot read this dataset (e.g. DeepCTR on multi-flow data): a note, not a crash."""


def variant_config(config: ExperimentConfig, overrides: Sequence[str], seed: int, name: str) -> ExperimentConfig:
    """``config`` with a variant's ``overrides`` and ``train.seed``; ConfigError (naming the variant) when they
    do not fit."""
    return parse_config(apply_overrides(config.to_dict(), list(overrides) + [f"train.seed={seed}"]),
                        source=f"variant {name}")


def grec_runs(name: str, base: Experiment, seeds: Sequence[int], work: str, verbose: int) -> List[SeedRun]:
    """One GRec-TF variant trained per seed on ``base``'s splits and statistics (ConfigError: invalid here)."""
    runs = []
    for seed in seeds:
        experiment = Experiment(variant_config(base.config, VARIANTS[name], seed, name), splits=base.splits,
                                statistics=base.statistics)
        metrics = experiment.train(os.path.join(work, f"{name}-{seed}"), verbose=verbose).metrics
        runs.append({"seed": seed, "test": metrics["test"], "train_seconds": metrics["train"]["seconds"],
                     "params": metrics["model"]["params"],
                     "extra": {"steps": metrics["train"]["steps"], "epochs_run": metrics["train"]["epochs_run"]}})
        tf.keras.backend.clear_session()
    return runs


def lightgbm_runs(base: Experiment, seeds: Sequence[int], max_rounds: int, threads: int) -> List[SeedRun]:
    """One LightGBM model over every task sentence per seed (ImportError: lightgbm is not installed)."""
    lightgbm = lightgbm_peer.import_lightgbm()
    if isinstance(lightgbm, str):
        raise ImportError(lightgbm)
    runs = []
    for seed in seeds:
        started = time.perf_counter()
        fitted = lightgbm_peer.train_lightgbm(base.splits, base.config, seed, max_rounds, threads=threads,
                                              lightgbm=lightgbm)
        seconds = time.perf_counter() - started
        runs.append({"seed": seed, "test": evaluate_scores(base.splits["test"], fitted["scores"], base.config)["test"],
                     "train_seconds": round(seconds, 2), "params": None,
                     "extra": {"rounds": fitted["rounds"], "features": fitted["features"]}})
    return runs


def deepctr_runs(name: str, base: Experiment, seeds: Sequence[int]) -> List[SeedRun]:
    """One DeepCTR model per seed, early-stopped on ``val_loss`` with the config's epochs and patience
    (ImportError: deepctr is not installed; NotApplicable: the data is not person-level)."""
    peers = deepctr_peers.import_peers()
    if isinstance(peers, str):
        raise ImportError(deepctr_peers.missing_peers_note([name], peers))
    problem = deepctr_peers.person_level_problem(base.splits["train"], base.config)
    if problem:
        raise NotApplicable(f"{name} skipped: {problem}")
    arrays, feature_columns = deepctr_peers.peer_arrays(base.splits, base.config, peers)
    persons = deepctr_peers.person_count(arrays["train"])
    runs = []
    for seed in seeds:
        config = parse_config(apply_overrides(base.config.to_dict(), [f"train.seed={seed}"]))
        started = time.perf_counter()
        model = deepctr_peers.build_peer(name, peers, feature_columns, config, persons)
        stopping = tf.keras.callbacks.EarlyStopping(monitor="val_loss", patience=config.train.early_stopping_patience,
                                                    restore_best_weights=True)
        history = model.fit(deepctr_peers.peer_dataset(arrays["train"], config, True),
                            validation_data=deepctr_peers.peer_dataset(arrays["valid"], config, False),
                            epochs=config.train.epochs, callbacks=[stopping], verbose=0)
        seconds = time.perf_counter() - started
        scores = deepctr_peers.peer_scores(model, deepctr_peers.peer_dataset(arrays["test"], config, False))
        long_scores = deepctr_peers.scores_by_row(base.splits["test"], config, scores)
        runs.append({"seed": seed, "test": evaluate_scores(base.splits["test"], long_scores, config)["test"],
                     "train_seconds": round(seconds, 2), "params": count_params(model),
                     "extra": {"epochs_run": len(history.history["loss"])}})
        tf.keras.backend.clear_session()
    return runs


def train_all(names: Sequence[str], base: Experiment, seeds: Sequence[int], work: str, verbose: int,
              lightgbm: Dict[str, int]) -> Tuple[Dict[str, List[SeedRun]], List[str]]:
    """``{model: its seed runs}`` of every model that could run, and a note for each that could not."""
    trainers: Dict[str, Callable[[], List[SeedRun]]] = {
        "lightgbm": lambda: lightgbm_runs(base, seeds, **lightgbm),
        **{peer: (lambda peer=peer: deepctr_runs(peer, base, seeds)) for peer in deepctr_peers.PEER_MODELS}}
    runs, notes = {}, []
    for name in names:
        print(f"== {base.config.data.source}: {name}, seeds {list(seeds)}", flush=True)
        try:
            runs[name] = trainers[name]() if name in trainers else grec_runs(name, base, seeds, work, verbose)
        except ConfigError as error:
            notes.append(f"{name} skipped: its config does not fit this dataset: {error}")
        except ImportError as error:
            notes.append(f"lightgbm skipped: lightgbm is not importable ({error}); {deepctr_peers.INSTALL_HINT}"
                         if name == "lightgbm" else str(error))
        except NotApplicable as error:
            notes.append(str(error))
    return runs, notes


def _mean(values: Sequence[Optional[float]]) -> float:
    kept = [v for v in values if v is not None and not np.isnan(v)]
    return float(np.mean(kept)) if kept else float("nan")


def sparse_sentences(sentences: Sequence[str]) -> List[str]:
    """The task sentences of the sparse use cases (CVR, CTCVR)."""
    return [s for s in sentences if s.split("/", 1)[1] in SPARSE_USE_CASES]


def score_summary(scores: Dict[str, Dict], sentences: List[str], oracle: Dict[str, Dict],
                  ceiling: Optional[Dict[str, Dict]] = None) -> Dict[str, float]:
    """Mean AUC, mean AUC and AP over the sparse use cases, and mean AUC gap to the oracle (and to the Bayes
    ceiling, when given) of one scorer's ``{task sentence: {"auc", "ap"}}``."""
    sparse = sparse_sentences(sentences)
    row = {"mean_auc": _mean([scores[s]["auc"] for s in sentences]),
           "mean_auc_sparse": _mean([scores[s]["auc"] for s in sparse]) if sparse else None,
           "mean_ap_sparse": _mean([scores[s]["ap"] for s in sparse]) if sparse else None}
    if oracle:
        row["mean_auc_gap_to_oracle"] = _mean([oracle[s]["auc"] - scores[s]["auc"] for s in sentences])
    if ceiling:
        row["mean_auc_gap_to_ceiling"] = _mean([ceiling[s]["auc"] - scores[s]["auc"] for s in sentences])
    return row


def model_summary(runs: List[SeedRun], sentences: List[str], oracle: Dict, ceiling: Optional[Dict]) -> Dict:
    """One model over its seeds: :func:`seed_statistics` of each :func:`score_summary` entry, of each task
    sentence's AUC and AP, and of the training seconds; params of the first seed."""
    per_seed = [score_summary(run["test"], sentences, oracle, ceiling) for run in runs]
    summary = {key: seed_statistics([row[key] for row in per_seed]) for key in per_seed[0]
               if per_seed[0][key] is not None}
    summary["per_sentence"] = {s: {metric: seed_statistics([run["test"][s][metric] for run in runs])
                                   for metric in ("auc", "ap")} for s in sentences}
    summary["train_seconds"] = seed_statistics([run["train_seconds"] for run in runs])
    summary["params"] = runs[0]["params"]
    return summary


def comparisons(summary: Dict[str, Dict], sentences: List[str]) -> Dict:
    """GRec against every other model: mean AUC and mean sparse AUC (:func:`compare`, from GRec's side),
    and per sparse task sentence against single-task (GRec's lift; ``relative_lift_percent`` of AUC)."""
    if "grec" not in summary:
        return {"vs_grec": {}, "sparse_lift_over_single_task": {}}
    grec = summary["grec"]
    vs = {name: {key: compare(grec[key], other[key]) for key in ("mean_auc", "mean_auc_sparse") if key in other}
          for name, other in summary.items() if name != "grec"}
    lift = {}
    if "single_task" in summary:
        for s in sparse_sentences(sentences):
            g, b = grec["per_sentence"][s]["auc"], summary["single_task"]["per_sentence"][s]["auc"]
            lift[s] = {"grec_auc": g["mean"], "single_task_auc": b["mean"], **compare(g, b),
                       "relative_lift_percent": 100.0 * (g["mean"] / b["mean"] - 1.0)}
    return {"vs_grec": vs, "sparse_lift_over_single_task": lift}


def _target(value: Optional[float], limit: Optional[float], passed: Optional[bool], detail: str) -> Dict:
    return {"value": value, "limit": limit, "pass": passed, "detail": detail}


def _win_target(result: Optional[Dict], missing: str) -> Dict:
    """A "GRec ahead by more than two standard errors" target from a :func:`compare` result."""
    if result is None:
        return _target(None, None, None, f"not measured: {missing}")
    decided = not np.isnan(result["limit"])
    return _target(result["difference"], result["limit"] if decided else None,
                   (result["verdict"] == "win") if decided else None,
                   f"difference {result['difference']:+.4f}, 2 SE {result['limit']:.4f}: {result['verdict']}"
                   + ("" if decided else " (one seed: no standard error)"))


def candidate_targets(summary: Dict[str, Dict], names: Sequence[str]) -> Dict[str, Dict]:
    """For every candidate GRec variant of the run (``grec_*`` in :data:`VARIANTS`): ahead of ``grec`` by more
    than two standard errors? Not measured (value and pass None) when ``grec`` is not in the same run."""
    out = {}
    for name in [n for n in names if n.startswith("grec_") and n in VARIANTS]:
        result = (compare(summary[name]["mean_auc"], summary["grec"]["mean_auc"])
                  if name in summary and "grec" in summary else None)
        out[f"{name} mean AUC - grec mean AUC > 2 SE"] = _win_target(result, f"{name} or grec did not run")
    return out


def targets(summary: Dict[str, Dict], compared: Dict, names: Sequence[str], oracle: Dict,
            has_sparse: bool) -> Dict[str, Dict]:
    """The issue's targets as ``name -> {"value", "limit", "pass", "detail"}``; a target whose rows did not
    run has value and pass None."""
    out = candidate_targets(summary, names)
    vs = compared["vs_grec"]
    if oracle:
        gap = summary["grec"]["mean_auc_gap_to_oracle"]["mean"] if "grec" in summary else None
        out[f"GRec mean AUC gap to oracle <= {GAP_TARGET}"] = (
            _target(gap, GAP_TARGET, bool(gap <= GAP_TARGET), f"{gap:.4f}") if gap is not None
            else _target(None, GAP_TARGET, None, "not measured: grec did not run"))
    for peer in [n for n in names if n in PEERS]:
        out[f"GRec mean AUC - {peer} mean AUC > 2 SE"] = _win_target(
            vs.get(peer, {}).get("mean_auc"), f"{peer} or grec did not run")
    for baseline in SPARSE_BASELINES if has_sparse else ():
        if baseline in names:
            out[f"GRec mean AUC over CVR/CTCVR - {baseline}'s > 2 SE"] = _win_target(
                vs.get(baseline, {}).get("mean_auc_sparse"), f"{baseline} or grec did not run")
    return out


def bayes_ceiling(test_frame: pd.DataFrame) -> Dict[str, Dict]:
    """AUC/AP per task sentence of the telecom Bayes ceiling on a test split (long format with labels)."""
    from grec_tf.data.telecom import ceiling_probabilities
    from grec_tf.metrics.ranking import task_sentence_metrics

    scored = test_frame[["flow", "use_case", "label"]].copy()
    scored["ceiling_p"] = ceiling_probabilities(test_frame)
    return {k: {"auc": v["auc"], "ap": v["ap"]} for k, v in task_sentence_metrics(scored, "ceiling_p", None).items()}


def _truthy(text: str) -> bool:
    return str(text).strip().lower() in ("1", "true", "yes", "on")


def _model_names(models: str) -> List[str]:
    names = [m.strip() for m in models.split(",") if m.strip()]
    unknown = [m for m in names if m not in VARIANTS and m not in PEERS]
    if unknown:
        raise ValueError(f"option models: unknown {unknown}; available: {', '.join(list(VARIANTS) + list(PEERS))}")
    return names


def base_config_of(config: str, overrides: str, quick: bool) -> ExperimentConfig:
    """The shared config: the file, the ``quick`` sizes (before the user's overrides, which win)."""
    user = [item for item in overrides.split(";") if item.strip()]
    if not quick:
        return load_config(config, user)
    source = load_config(config, user).data.source
    sizes = QUICK_OVERRIDES + ([f"data.rows={QUICK_TELECOM_ROWS}"] if source == "telecom" else [])
    return load_config(config, sizes + user)


def run(out_dir: str, config: str = "configs/telecom.yaml", overrides: str = "", models: str = "grec,mmoe,lightgbm",
        seeds: str = "3", quick: str = "0", lightgbm_threads: str = "0", tag: str = "", verbose: str = "0") -> Dict:
    """Trains each model once per seed on the same splits and writes the comparison into ``out_dir`` as
    ``quality_{dataset}[_{tag}].json`` / ``.md``. ``lightgbm_threads``: LightGBM's threads (0: every core;
    1 on a machine shared with other jobs)."""
    names, seed_list, is_quick = _model_names(models), list(range(int(seeds))), _truthy(quick)
    if not seed_list:
        raise ValueError(f"option seeds: expected >= 1, got {seeds!r}")
    base_config = base_config_of(config, overrides, is_quick)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="grec-quality-") as work:
        base = Experiment(base_config, splits=load_splits(base_config, default_dir=os.path.join(work, "data")))
        runs, notes = train_all(names, base, seed_list, work, int(verbose),
                                {"max_rounds": QUICK_LIGHTGBM_ROUNDS if is_quick else lightgbm_peer.MAX_ROUNDS,
                                 "threads": int(lightgbm_threads)})
        test = base.splits["test"]
    dataset = base_config.data.source
    oracle = evaluate_scores(test, np.zeros(len(test)), base_config).get("oracle", {})
    sentences = [f"{f}/{u}" for f in base_config.data.flows for u in base_config.data.use_cases
                 if ((test["flow"] == f) & (test["use_case"] == u)).any()]
    ceiling = bayes_ceiling(test) if dataset == "telecom" else None
    summary = {name: model_summary(r, sentences, oracle, ceiling) for name, r in runs.items()}
    compared = comparisons(summary, sentences)
    report = {"dataset": dataset, "options": {"config": config, "overrides": overrides, "models": names,
                                              "seeds": seed_list, "quick": is_quick,
                                              "lightgbm_threads": int(lightgbm_threads), "tag": tag},
              "config": base_config.to_dict(), "notes": notes, "sentences": sentences,
              "test_rows": {s: int(((test["flow"] + "/" + test["use_case"]) == s).sum()) for s in sentences},
              "summary": summary, "comparisons": compared,
              "targets": targets(summary, compared, names, oracle, bool(sparse_sentences(sentences))),
              "gap_target": GAP_TARGET, "oracle": oracle, "bayes_ceiling": ceiling,
              "bayes_ceiling_summary": score_summary(ceiling, sentences, oracle) if ceiling else None,
              "runs": runs, "environment": {"machine": platform.machine(), "cores": os.cpu_count(),
                                            "load_average_before": [round(v, 2) for v in load_before],
                                            "load_average_after": [round(v, 2) for v in os.getloadavg()]}}
    write_report(out_dir, f"quality_{dataset}" + (f"_{tag}" if tag else ""), report, markdown(report))
    return report
