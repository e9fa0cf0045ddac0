"""Typed experiment configuration, read from YAML and validated against dataclasses.

The dataclasses are the schema. Every field is declared with :func:`setting`, which records its
meaning, an example, and its valid range (int/float fields) or choices (enumerated strings); the
reference page ``docs/configuration.md`` is generated from these records
(``python -m pipelines.config_reference``).

Validation is one mechanism: the type hints check types while a mapping is converted (unknown keys,
wrong types, missing required keys), then every section checks its own ranges and choices when it
is constructed, then a few cross-key rules run. Each failure is a one-line :class:`ConfigError`
naming the key's dotted path, e.g. ``c.yaml: model.top_k: expected >= 1, got 0``.

Which keys a run actually reads depends on other keys (``model.type``, ``data.source``, how the data
is split ...): :data:`APPLICABILITY_RULES` is that table, and :func:`applied_config` /
:func:`unapplied_keys` read it.

This module imports neither TensorFlow, pandas nor numpy: ``--help`` paths import it.
"""
from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import yaml

from grec_tf.errors import ConfigError

# ---- which keys apply: one table ------------------------------------------------------------------
# model.type -> the model keys that only some types read. A key listed in no row applies to every
# type; a key listed in some rows applies to those types only. A new model type is one line here.
MODEL_KEYS_BY_TYPE: Dict[str, Tuple[str, ...]] = {
    "grec": ("routing", "top_k", "capacity_factor", "load_balance_weight", "z_loss_weight", "jitter",
             "route_embedding_dim", "activation", "num_experts", "expert_hidden", "towers", "task_token",
             "wide_logits"),
    "mmoe": ("num_experts", "expert_hidden", "towers", "task_token", "wide_logits"),
    "shared_bottom": ("expert_hidden", "towers", "task_token", "wide_logits"),
    "ple": ("ple_levels", "task_experts", "shared_experts", "expert_hidden", "towers", "task_token", "wide_logits"),
    "esmm": ("esmm", "expert_hidden", "towers"),
    "aitm": ("aitm_chain", "aitm_calibration_weight", "expert_hidden", "towers"),
    "single_task": ("expert_hidden",),
}
MODEL_TYPES = tuple(MODEL_KEYS_BY_TYPE)
# Routings that route on the task (flow, use case) rather than on the tokens: no expert capacity
# (the route is a property of the task, not of load), and they read learned route embeddings.
TASK_ROUTINGS = ("task", "task_sentence")
TEXT_ENCODER_KEYS_BY_TYPE: Dict[str, Tuple[str, ...]] = {
    "transformer": ("vocab_size", "num_layers", "num_heads"),
    "hub": ("handle", "trainable"),
}
DATA_KEYS_BY_SOURCE: Dict[str, Tuple[str, ...]] = {
    "telecom": ("rows", "telecom_flows", "telecom_use_cases"),
    "aliexpress": ("flow",),
    "census_income": (),
    "adult": (),
    "csv": (),
    "parquet": (),
    "tfrecord": (),  # the output folder of pipelines.preprocess (statistics and splits are already there)
}
DATA_SOURCES = tuple(DATA_KEYS_BY_SOURCE)
# How the loader obtained train/valid/test -> which split fractions it used.
FRACTIONS_BY_SPLIT_MODE: Dict[str, Tuple[str, ...]] = {
    "generated": (),  # telecom: the generator writes the three splits
    "files": (),  # a folder with train/valid/test files
    "release_test": ("valid_fraction",),  # a public release's train + test: valid carved from train
    "split_by_group": ("valid_fraction", "test_fraction"),  # one file split by data.group_column
}
SPLIT_MODES = tuple(FRACTIONS_BY_SPLIT_MODE)
# train.distribution: how training is spread (grec_tf.training.distribution makes the tf.distribute strategy).
DISTRIBUTIONS = ("none", "mirrored", "multi_worker", "auto")

FEATURE_KINDS = ("categorical", "numerical", "text", "sequence", "embedding", "item_id")
FEATURE_GROUPS = ("context", "item")
# A sequence feature may share the vocabulary of a feature of these kinds (features[].vocabulary_of).
VOCABULARY_SOURCE_KINDS = ("item_id", "categorical")
# Keras activation names an expert may use (checked here without importing TensorFlow).
ACTIVATIONS = ("gelu", "relu", "silu", "swish", "elu", "selu", "tanh", "sigmoid", "linear")
ROUTE_EMBEDDING_DIM_DEFAULT = 16  # model.route_embedding_dim when unset
# model.numerical_embedding: how FeatureGroupEncoder embeds normalized numericals
NUMERICAL_EMBEDDINGS = ("linear", "periodic", "piecewise_linear")
PIECEWISE_LINEAR_BINS = 48  # quantile bins per numerical of numerical_embedding piecewise_linear (rtdl's default)
# model.piecewise_linear_edges: where piecewise_linear's bin edges come from (FeatureStatistics holds both)
PIECEWISE_LINEAR_EDGES = ("quantile", "tree")
# model.feature_tokens: one token per feature group (context, item) or one per feature
FEATURE_TOKENS = ("group", "feature")
# model.task_token: how the task token composes the flow and use-case embeddings (TaskSentenceEmbedding)
TASK_TOKEN_COMPOSITIONS = ("mean", "concat")
# train.learning_rate_schedule: how the optimizer's rate moves over the run (grec_tf.training.optimizer)
LEARNING_RATE_SCHEDULES = ("constant", "warmup_cosine")


# ---- field records --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Bounds:
    """The valid range of a number: ``low`` (inclusive unless ``low_open``) up to ``high`` (exclusive)."""

    low: float
    high: Optional[float] = None
    low_open: bool = False

    def __contains__(self, value: float) -> bool:
        above = value > self.low if self.low_open else value >= self.low
        return above and (self.high is None or value < self.high)

    def __str__(self) -> str:
        if self.high is not None:
            return f"in {'(' if self.low_open else '['}{self.low:g}, {self.high:g})"
        return f"{'>' if self.low_open else '>='} {self.low:g}"


AT_LEAST_0 = Bounds(0)
AT_LEAST_1 = Bounds(1)
POSITIVE = Bounds(0, low_open=True)
FRACTION = Bounds(0, 1)


def setting(default: Any = dataclasses.MISSING, *, help: str, example: Any,
            bounds: Optional[Bounds] = None, choices: Sequence[str] = (),
            factory: Callable[[], Any] = dataclasses.MISSING) -> Any:
    """A schema field: ``help`` (its meaning), ``example`` (a value as written in YAML), ``bounds``
    (every int/float field; for a list or mapping of numbers, each entry) and ``choices``."""
    metadata = {"help": help, "example": example, "bounds": bounds, "choices": tuple(choices)}
    return field(default=default, default_factory=factory, metadata=metadata)


class _Section:
    """Checks every field's bounds and choices on construction, then the section's own rules."""

    SECTION = ""

    def section_path(self) -> str:
        return self.SECTION

    def __post_init__(self) -> None:
        prefix = self.section_path() + "." if self.section_path() else ""
        for f in dataclasses.fields(self):
            _check_value(getattr(self, f.name), f.metadata, prefix + f.name)
        self._check()

    def _check(self) -> None:
        """Rules between this section's keys."""


def _check_value(value: Any, metadata: Mapping[str, Any], path: str) -> None:
    if isinstance(value, list):
        for i, item in enumerate(value):
            _check_value(item, metadata, f"{path}[{i}]")
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_value(item, metadata, f"{path}.{key}")
    elif value is None or isinstance(value, bool):
        return
    elif isinstance(value, (int, float)) and metadata.get("bounds") and value not in metadata["bounds"]:
        raise ConfigError(f"{path}: expected {metadata['bounds']}, got {value!r}")
    elif isinstance(value, str) and metadata.get("choices") and value not in metadata["choices"]:
        raise ConfigError(f"{path}: expected one of {list(metadata['choices'])}, got {value!r}")


# ---- the schema -----------------------------------------------------------------------------------
@dataclass
class FeatureConfig(_Section):
    """One input feature (a column of the long-format table). ``group`` says whether it describes the
    context (customer, session) or the candidate item."""

    name: str = setting(help="Column name in the data.", example="viewed_items")
    kind: str = setting(help="How the column is encoded: categorical (string ids -> embedding), numerical "
                             "(normalized float), text (search query -> text encoder), sequence (list of "
                             "ids, e.g. viewed items), embedding (a precomputed vector of width dim), "
                             "item_id (the candidate item's id).", example="sequence", choices=FEATURE_KINDS)
    group: str = setting("context", help="Which token the feature feeds: the context token or the candidate "
                                         "item token.", example="item", choices=FEATURE_GROUPS)
    max_length: int = setting(16, help="sequence: ids kept (the most recent); text: tokens kept.",
                              example=12, bounds=AT_LEAST_1)
    dim: int = setting(0, help="embedding: width of the precomputed vector (required, >= 1, for that kind).",
                       example=64, bounds=AT_LEAST_0)
    num_oov: int = setting(1, help="categorical / sequence / item_id: out-of-vocabulary hash buckets (ids "
                                   "unseen in training share them; StringLookup needs at least one).",
                           example=2, bounds=AT_LEAST_1)
    max_vocab: int = setting(100_000, help="categorical / sequence / item_id: vocabulary size; the most "
                                           "frequent ids of the training split are kept.",
                             example=50_000, bounds=AT_LEAST_1)
    embedding_dim: Optional[int] = setting(None, help="categorical / item_id: embedding width; null means "
                                                      "model.embedding_dim.", example=32, bounds=AT_LEAST_1)
    vocabulary_of: Optional[str] = setting(
        None, help="sequence only: share the vocabulary of the named item_id or categorical feature, so an "
                   "id means the same thing in both (e.g. viewed items and the candidate item).",
        example="item_id")

    def section_path(self) -> str:
        return f"features[{self.name}]"

    def _check(self) -> None:
        if self.kind == "embedding" and self.dim <= 0:
            raise ConfigError(f"features[{self.name}].dim: an embedding feature needs dim > 0")
        if self.vocabulary_of is not None and self.kind != "sequence":
            raise ConfigError(f"features[{self.name}].vocabulary_of: only a sequence feature can share "
                              f"another feature's vocabulary; this one is {self.kind!r}")


@dataclass
class DataConfig(_Section):
    """Where examples come from and how they are split and batched. Every source yields the long
    format: one row per (impression, use case) with columns flow, use_case, the label and the features."""

    SECTION = "data"

    source: str = setting("telecom", help="Which loader reads the data: telecom (the embedded synthetic "
                                          "generator), a public dataset (aliexpress, census_income, adult), "
                                          "your own long-format table (csv, parquet), or tfrecord: the "
                                          "output folder of python -m pipelines.preprocess, streamed.",
                          example="parquet", choices=DATA_SOURCES)
    path: Optional[str] = setting(None, help="A file, or a folder with train/valid/test files (or a "
                                             "release's train and test files). telecom: the folder the "
                                             "generated splits are written to. tfrecord: the folder "
                                             "pipelines.preprocess wrote (--out).",
                                  example="data/my_events.parquet")
    rows: int = setting(50_000, help="telecom: impressions to generate.", example=200_000, bounds=AT_LEAST_1)
    telecom_flows: int = setting(3, help="telecom: flows of the generated task world: AAL, EUP, NSE, then F4, "
                                         "F5, ... (each extra flow behaves like AAL, EUP or NSE in turn, with its "
                                         "own brand loyalty, price sensitivity and intercepts). data.flows picks "
                                         "the flows used among them.", example=6, bounds=Bounds(3))
    telecom_use_cases: int = setting(4, help="telecom: use cases of the generated task world: CTR, ATC, CVR, "
                                             "CTCVR, then VIEW, COMPARE, SAVE, SHARE, CHAT, TRADEIN, ALERT, "
                                             "PROTECT (COMPARE, SHARE, TRADEIN and PROTECT are sparse: rows only "
                                             "on clicked impressions, like CVR). data.use_cases picks the use "
                                             "cases used among them.", example=8, bounds=Bounds(4, 13))
    seed: int = setting(0, help="Seed of the split, of the training shuffle and of the telecom generator.",
                        example=7, bounds=AT_LEAST_0)
    flows: List[str] = setting(help="The flows (first half of a task sentence, e.g. a product journey or a "
                                    "country); rows of other flows are dropped.",
                               example=["AAL", "EUP"], factory=lambda: ["AAL", "EUP", "NSE"])
    use_cases: List[str] = setting(help="The use cases (second half of a task sentence, e.g. click, "
                                        "conversion); one loss and one AUC each.",
                                   example=["CTR", "CVR"], factory=lambda: ["CTR", "ATC", "CVR", "CTCVR"])
    flow: Optional[str] = setting(None, help="aliexpress: the country this file set is for.", example="NL")
    group_column: str = setting("customer_id", help="Group id: GAUC groups rows by it, and a split keeps each "
                                                    "group in one split.", example="session_id")
    label_column: str = setting("label", help="The 0/1 label column.", example="clicked")
    valid_fraction: float = setting(0.1, help="Share of groups held out for validation (early stopping) "
                                              "when the loader splits the data itself.",
                                    example=0.05, bounds=FRACTION)
    test_fraction: float = setting(0.1, help="Share of groups held out for the test metrics when one file is "
                                             "split by group_column; valid_fraction + test_fraction < 1.",
                                   example=0.2, bounds=FRACTION)
    batch_size: int = setting(1024, help="Training batch size (evaluation uses at least 1024).",
                              example=512, bounds=AT_LEAST_1)
    shuffle_buffer: int = setting(10_000_000, help="Window of the training shuffle, in rows. Row indices are "
                                  "shuffled (8 bytes a row), so a window at least as large as the training "
                                  "split, the default up to 10M rows, is a full permutation every epoch. "
                                  "tfrecord: the window holds serialized examples (a few hundred bytes "
                                  "each), so set it to what memory allows, e.g. 100000.",
                                  example=100_000, bounds=AT_LEAST_1)

    def _check(self) -> None:
        if not self.flows or not self.use_cases:
            raise ConfigError("data.flows / data.use_cases: expected non-empty lists")
        if self.valid_fraction + self.test_fraction >= 1:
            raise ConfigError(f"data.valid_fraction + data.test_fraction: expected < 1 so that training keeps "
                              f"data, got {self.valid_fraction} + {self.test_fraction}")


@dataclass
class TextEncoderConfig(_Section):
    """Search-query encoder of every text feature: WordPiece + a small transformer, or a TF Hub /
    SavedModel encoder. Read only when a text feature is declared."""

    SECTION = "model.text_encoder"

    type: str = setting("transformer", help="transformer: WordPiece vocabulary learned from the training text "
                                            "+ a small transformer; hub: a TF Hub handle or SavedModel.",
                        example="hub", choices=tuple(TEXT_ENCODER_KEYS_BY_TYPE))
    handle: Optional[str] = setting(None, help="hub: a TF Hub handle or a local SavedModel path (required).",
                                    example="https://tfhub.dev/google/nnlm-en-dim50/2")
    trainable: bool = setting(False, help="hub: fine-tune the encoder's weights.", example=True)
    vocab_size: int = setting(2000, help="transformer: WordPiece vocabulary size.", example=4000,
                              bounds=AT_LEAST_1)
    num_layers: int = setting(1, help="transformer: encoder blocks.", example=2, bounds=AT_LEAST_1)
    num_heads: int = setting(2, help="transformer: attention heads; must divide model.d_model.",
                             example=4, bounds=AT_LEAST_1)

    def _check(self) -> None:
        if self.type == "hub" and not self.handle:
            raise ConfigError("model.text_encoder.handle: required when model.text_encoder.type is 'hub'")


@dataclass
class ModelConfig(_Section):
    """Architecture. ``type`` selects GRec or a baseline bottom behind the same inputs and towers."""

    SECTION = "model"

    type: str = setting("grec", help="grec: the Generalist Recommender (routed sparse MoE); mmoe: dense "
                                     "multi-gate MoE; shared_bottom: one shared MLP; ple: Progressive Layered "
                                     "Extraction (per-tower and shared experts); esmm: shared MLP and towers "
                                     "with pCTCVR = pCTR x pCVR; aitm: shared MLP and towers with adaptive "
                                     "information transfer along a funnel; single_task: one independent "
                                     "shared_bottom-style model per task sentence.",
                        example="mmoe", choices=MODEL_TYPES)
    routing: str = setting("task_sentence", help="What the router of GRec's sparse MoE reads. Built in: token "
                                                 "(each token), sentence (the mean token of a row), task (a "
                                                 "learned task embedding), task_sentence (flow and use-case "
                                                 "embeddings: GRec); more can be registered in grec_tf.layers.",
                           example="token")
    num_experts: int = setting(8, help="Experts E (GRec's sparse MoE, MMoE).", example=16, bounds=AT_LEAST_1)
    top_k: int = setting(4, help="Experts each routing decision selects (1 <= top_k <= num_experts).",
                         example=2, bounds=AT_LEAST_1)
    d_model: int = setting(64, help="Token width D: every feature group becomes a D-wide token.",
                           example=128, bounds=AT_LEAST_1)
    embedding_dim: int = setting(16, help="Default embedding width of categorical and item_id features.",
                                 example=32, bounds=AT_LEAST_1)
    expert_hidden: int = setting(128, help="Hidden width of each expert (GRec, MMoE, PLE) or of the shared "
                                           "MLP (shared_bottom, esmm, aitm, each single_task network).",
                                 example=256, bounds=AT_LEAST_1)
    ple_levels: int = setting(2, help="ple: CGC levels; every level but the last also has a shared gate "
                                      "feeding the next level's shared experts.", example=3, bounds=AT_LEAST_1)
    task_experts: int = setting(1, help="ple: experts of each tower, at every level.", example=2,
                                bounds=AT_LEAST_1)
    shared_experts: int = setting(2, help="ple: experts shared by all towers, at every level.", example=4,
                                  bounds=AT_LEAST_1)
    esmm: Dict[str, str] = setting(
        help="esmm: the use cases of the chain, keys ctr, cvr and ctcvr (each a data.use_cases entry). The "
             "ctcvr tower is pCTR x pCVR; the cvr use case's own loss weight is 0, as in ESMM (its tower learns "
             "through the ctcvr loss on every impression) unless model.loss_weights names it.",
        example={"ctr": "click", "cvr": "purchase", "ctcvr": "click_purchase"},
        factory=lambda: {"ctr": "CTR", "cvr": "CVR", "ctcvr": "CTCVR"})
    aitm_chain: List[str] = setting(help="aitm: use cases in funnel order (each a data.use_cases entry); every "
                                         "step's label should imply the previous step's, on the same rows.",
                                    example=["click", "purchase"], factory=lambda: ["CTR", "ATC", "CTCVR"])
    aitm_calibration_weight: float = setting(0.6, help="aitm: weight of the behavioural expectation calibrator, "
                                                       "the row mean of max(p_next - p_previous, 0) per chain "
                                                       "link; 0 turns it off.", example=0.0, bounds=AT_LEAST_0)
    num_heads: int = setting(4, help="Attention heads of the token mixer, the pooling and the sequence "
                                     "encoder.", example=8, bounds=AT_LEAST_1)
    sequence_blocks: int = setting(1, help="Transformer blocks over the viewed sequences (0: pooling only).",
                                   example=2, bounds=AT_LEAST_0)
    # Off by default: on telecom (200k impressions, 1 epoch) it did not move the AUC gap (0.096 vs 0.094).
    target_attention: bool = setting(False, help="DIN-style: the candidate item also attends over the viewed "
                                                 "sequences.", example=True)
    capacity_factor: float = setting(0.0, help="Expert capacity ceil(capacity_factor * units * top_k / E) for "
                                               "token/sentence routing; assignments past it are dropped. 0 "
                                               "disables. Must be 0 with a task routing.",
                                     example=1.25, bounds=AT_LEAST_0)
    load_balance_weight: float = setting(0.01, help="Weight of the load-balance auxiliary loss.",
                                         example=0.001, bounds=AT_LEAST_0)
    z_loss_weight: float = setting(0.001, help="Weight of the router z-loss (keeps router logits small).",
                                   example=0.0, bounds=AT_LEAST_0)
    jitter: float = setting(0.0, help="Training only: the router input is multiplied by U(1 - jitter, "
                                      "1 + jitter).", example=0.01, bounds=FRACTION)
    route_embedding_dim: Optional[int] = setting(
        None, help=f"Width of the flow/use-case (task_sentence) or task (task) embeddings the router reads; "
                   f"null means {ROUTE_EMBEDDING_DIM_DEFAULT}. Task routings only.",
        example=32, bounds=AT_LEAST_1)
    activation: str = setting("gelu", help="Hidden activation of GRec's experts (a Keras activation name); "
                                           "the configs in configs/ use relu: same AUC, 1.22-1.25x the training speed.",
                              example="relu", choices=ACTIVATIONS)
    towers: str = setting("use_case", help="One tower per use case, or one per task sentence (esmm, aitm: one "
                                           "chain per flow).",
                          example="task_sentence", choices=("use_case", "task_sentence"))
    tower_units: List[int] = setting(help="Hidden widths of each tower's MLP (GELU); [] gives a linear tower "
                                          "(aitm needs one: the first width is its tower representation).",
                                     example=[128, 64], bounds=AT_LEAST_1, factory=lambda: [64])
    loss_weights: Dict[str, float] = setting(help="Weight of each use case's loss (a use case not listed: 1).",
                                             example={"CVR": 2.0}, bounds=AT_LEAST_0, factory=dict)
    text_encoder: TextEncoderConfig = setting(help="The encoder of text features.", example={"type": "hub"},
                                              factory=TextEncoderConfig)
    dropout: float = setting(0.0, help="Dropout rate in the token mixer and the sequence encoder.",
                             example=0.1, bounds=FRACTION)
    numerical_embedding: str = setting(
        "linear", help="How the context and item encoders embed their normalized numericals: linear (one Dense "
                       "of all of a group's numericals) or periodic (PLR, Gorishniy et al. NeurIPS '22: sin/cos of "
                       "48 trainable frequencies per feature, then a Dense of its own and ReLU to width 24) or "
                       "piecewise_linear (PLE, same paper: the value's position in each of up to 48 training-split "
                       "quantile bins, then a Dense of its own and ReLU to width 24).",
        example="periodic", choices=NUMERICAL_EMBEDDINGS)
    piecewise_linear_edges: str = setting(
        "quantile", help="piecewise_linear's bin edges: quantile (up to 48 training-split quantiles, PLE-Q) or tree "
                         "(PLE-T, same paper: the split thresholds of one small decision tree per task sentence "
                         "fitted on that numerical against the task's label, plus the minimum and maximum; zero-"
                         "inflated columns get edges where a task's label changes).",
        example="tree", choices=PIECEWISE_LINEAR_EDGES)
    cross_layers: int = setting(0, help="DCN-v2 full-rank cross layers (tfrs Cross) over the concatenated "
                                        "embeddings of the context and item encoders, before their projection "
                                        "to d_model; 0: none.", example=2, bounds=AT_LEAST_0)
    feature_tokens: str = setting(
        "group", help="group: the context and item encoders each give the token stack one token (their features "
                      "concatenated, crossed if cross_layers, and projected); feature: one token per feature (a "
                      "linear map of its embedding, normalized value or numerical embedding to d_model), so the "
                      "mixer's attention crosses features. Needs cross_layers 0.",
        example="feature", choices=FEATURE_TOKENS)
    task_token: str = setting(
        "mean", help="The task token of a (flow, use case): mean (the paper's eq. 8: the mean of a flow and a "
                     "use-case embedding, both d_model wide) or concat (a flow embedding and a use-case "
                     "embedding, each half of d_model, side by side). The task routers' gate always reads the "
                     "mean (a linear gate of a concatenation is the same family).",
        example="concat", choices=TASK_TOKEN_COMPOSITIONS)
    wide_logits: bool = setting(
        False, help="Add the wide part of Wide & Deep to every tower's logit: a linear function, per tower, of each "
                    "numerical's piecewise-linear bins (piecewise_linear_edges' bins, in raw units) and of each "
                    "categorical's id (one weight per id), so single-feature step shapes are fitted directly. Its "
                    "weights start at 0. grec, mmoe, shared_bottom and ple (towers that add up, not chained).",
        example=True)

    @property
    def wide_logits_applied(self) -> bool:
        """``wide_logits`` set on a model type that reads it (not chained towers)."""
        return self.wide_logits and "wide_logits" in MODEL_KEYS_BY_TYPE.get(self.type, ())

    @property
    def uses_bins(self) -> bool:
        """Whether the model reads piecewise-linear bins (and so ``piecewise_linear_edges``)."""
        return self.numerical_embedding == "piecewise_linear" or self.wide_logits_applied

    def _check(self) -> None:
        if self.piecewise_linear_edges != "quantile" and not self.uses_bins:
            raise ConfigError(f"model.piecewise_linear_edges: {self.piecewise_linear_edges!r} bins apply only to "
                              f"model.numerical_embedding 'piecewise_linear' or model.wide_logits (types "
                              f"grec, mmoe, shared_bottom, ple), got numerical_embedding "
                              f"{self.numerical_embedding!r}, wide_logits {str(self.wide_logits).lower()} and "
                              f"type {self.type!r}; expected 'quantile'")
        if self.feature_tokens == "feature" and self.cross_layers:
            raise ConfigError(f"model.cross_layers: crosses act on a group's concatenated features, which "
                              f"model.feature_tokens 'feature' does not form; expected 0, got {self.cross_layers}")
        if self.task_token == "concat" and self.d_model < 2:
            raise ConfigError(f"model.task_token: concat gives the flow and the use case half of d_model each, "
                              f"so it needs model.d_model >= 2, got {self.d_model}")
        if self.type != "grec":  # top_k, routing and capacity are GRec's; MMoE runs all its experts
            return
        if self.top_k > self.num_experts:
            raise ConfigError(f"model.top_k: expected 1 <= top_k <= num_experts ({self.num_experts}), "
                              f"got {self.top_k}")
        if self.capacity_factor > 0 and self.routing in TASK_ROUTINGS:
            raise ConfigError(f"model.capacity_factor: capacity applies only to token/sentence routing, not "
                              f"to model.routing {self.routing!r}; expected 0, got {self.capacity_factor}")
        if self.route_embedding_dim is not None and self.routing not in TASK_ROUTINGS:
            raise ConfigError(f"model.route_embedding_dim: applies only to the task routings "
                              f"{list(TASK_ROUTINGS)}, not to model.routing {self.routing!r}; expected null, "
                              f"got {self.route_embedding_dim}")


@dataclass
class TrainConfig(_Section):
    """Optimization, checkpointing and early stopping."""

    SECTION = "train"

    epochs: int = setting(3, help="Maximum passes over the training split.", example=10, bounds=AT_LEAST_1)
    learning_rate: float = setting(2e-3, help="Adam learning rate (with warmup_cosine: the peak rate).",
                                   example=0.001, bounds=POSITIVE)
    learning_rate_schedule: str = setting("constant", help="constant: learning_rate at every step; "
                                                           "warmup_cosine: linear warm-up from 0 to learning_rate "
                                                           "over warmup_fraction of the run's optimizer steps "
                                                           "(epochs x training batches per epoch), then cosine "
                                                           "decay to 0 at the last step (Keras CosineDecay; early "
                                                           "stopping ends the run before the decay does).",
                                          example="warmup_cosine", choices=LEARNING_RATE_SCHEDULES)
    warmup_fraction: float = setting(0.05, help="warmup_cosine: share of the run's optimizer steps spent "
                                                "warming up.", example=0.1, bounds=FRACTION)
    weight_decay: float = setting(0.0, help="0: Adam. > 0: AdamW with this decoupled weight decay (each step "
                                            "multiplies a weight by 1 - learning rate x weight_decay). Biases, "
                                            "layer-norm scales and offsets and embedding tables are not decayed "
                                            "(variables whose name contains bias, gamma, beta or embedding, "
                                            "through AdamW's exclude_from_weight_decay): shrinking a rare id's "
                                            "row at every step would erase what its few batches taught, and "
                                            "offsets and scales are not what over-fits.",
                                  example=1e-4, bounds=AT_LEAST_0)
    steps_per_execution: int = setting(1, help="Training steps per tf.function call (Keras compile).",
                                       example=32, bounds=AT_LEAST_1)
    checkpoint_every: int = setting(200, help="Steps between BackupAndRestore checkpoints (a restarted run "
                                              "resumes there); TensorBoard logs every checkpoint_every / 4.",
                                    example=500, bounds=AT_LEAST_1)
    early_stopping_patience: int = setting(2, help="Epochs without a lower val_task_loss before training "
                                                   "stops; the best epoch's weights are restored.",
                                           example=3, bounds=AT_LEAST_0)
    mixed_precision: Optional[str] = setting(None, help="Keras mixed-precision policy; null means float32.",
                                             example="mixed_bfloat16")
    distribution: str = setting("none", help="How training is spread: none (one device); mirrored (every "
                                             "local device, tf.distribute.MirroredStrategy); multi_worker "
                                             "(the workers TF_CONFIG names, MultiWorkerMirroredStrategy); "
                                             "auto (multi_worker when TF_CONFIG names more than one worker, "
                                             "else none). data.batch_size is the global batch: each replica "
                                             "takes data.batch_size / replicas rows a step.",
                                example="multi_worker", choices=DISTRIBUTIONS)
    seed: Optional[int] = setting(None, help="Seed of the model's initial weights and of the training shuffle "
                                             "(tf.keras.utils.set_random_seed before the model is built; the data "
                                             "split keeps data.seed); null: not seeded, each run differs.",
                                  example=1, bounds=AT_LEAST_0)


@dataclass
class ExportConfig(_Section):
    """Where the trained model is exported for TF Serving: ``{export_dir}/{model name}/{version}``."""

    SECTION = "export"

    export_dir: str = setting("exports", help="Base folder of exported models.", example="/models")
    model_name: Optional[str] = setting(None, help="Folder (and TF Serving model name) under export_dir; null "
                                                   "means model.type, so a baseline never overwrites GRec.",
                                        example="grec_telecom")


@dataclass
class ExperimentConfig(_Section):
    """The whole experiment: one YAML file."""

    name: str = setting("grec", help="Experiment name (reports, run folders).", example="grec_telecom")
    data: DataConfig = setting(help="Data source, split and batching.", example={"source": "csv"},
                               factory=DataConfig)
    features: List[FeatureConfig] = setting(help="The input features.", example=[{"name": "price",
                                                                                  "kind": "numerical"}],
                                            factory=list)
    model: ModelConfig = setting(help="Architecture.", example={"type": "mmoe"}, factory=ModelConfig)
    train: TrainConfig = setting(help="Optimization.", example={"epochs": 5}, factory=TrainConfig)
    export: ExportConfig = setting(help="Serving export.", example={"export_dir": "/models"},
                                   factory=ExportConfig)

    def _check(self) -> None:
        self._check_features()
        encoder = self.model.text_encoder
        has_text = any(f.kind == "text" for f in self.features)
        if has_text and encoder.type == "transformer" and self.model.d_model % encoder.num_heads:
            raise ConfigError(f"model.text_encoder.num_heads: expected a divisor of model.d_model "
                              f"({self.model.d_model}), the text encoder's width; got {encoder.num_heads}")

    def _check_features(self) -> None:
        kinds: Dict[str, str] = {}
        for feature in self.features:
            if feature.name in kinds:
                raise ConfigError(f"features[{feature.name}]: declared twice")
            kinds[feature.name] = feature.kind
        for feature in self.features:
            if feature.vocabulary_of is None:
                continue
            target = kinds.get(feature.vocabulary_of)
            if target not in VOCABULARY_SOURCE_KINDS:
                found = "is not a declared feature" if target is None else f"is a {target} feature"
                raise ConfigError(f"features[{feature.name}].vocabulary_of: {feature.vocabulary_of!r} {found}; "
                                  f"expected the name of an item_id or categorical feature")

    @property
    def task_sentences(self) -> List[str]:
        """All ``FLOW/USE_CASE`` keys in config order."""
        return [f"{f}/{u}" for f in self.data.flows for u in self.data.use_cases]

    @property
    def model_name(self) -> str:
        """The export folder and TF Serving name: ``export.model_name``, else ``model.type``."""
        return self.export.model_name or self.model.type

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)


# ---- schema walk (documentation, tests) -----------------------------------------------------------
@dataclass(frozen=True)
class SchemaKey:
    """One leaf key of the schema: ``path`` like ``model.top_k`` or ``features[].max_length``."""

    path: str
    hint: Any
    field: dataclasses.Field

    @property
    def default(self) -> Any:
        if self.field.default_factory is not dataclasses.MISSING:
            return self.field.default_factory()
        return self.field.default

    @property
    def required(self) -> bool:
        return self.default is dataclasses.MISSING

    @property
    def bounds(self) -> Optional[Bounds]:
        return self.field.metadata.get("bounds")

    @property
    def choices(self) -> Tuple[str, ...]:
        return self.field.metadata.get("choices", ())

    @property
    def help(self) -> str:
        return self.field.metadata.get("help", "")

    @property
    def example(self) -> Any:
        return self.field.metadata.get("example")

    @property
    def scalar_type(self) -> Any:
        """The type of the value, or of each entry of a list or mapping (``int`` for ``List[int]``)."""
        return _scalar_hint(self.hint)

    @property
    def is_numeric(self) -> bool:
        return self.scalar_type in (int, float)


def schema_sections(cls: type = ExperimentConfig, path: str = "") -> Iterator[Tuple[str, type]]:
    """``(section path, dataclass)`` of every section, the top level (path "") first; the feature
    entries are ``features[]``."""
    yield path, cls
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        child = _scalar_hint(hints[f.name])
        if dataclasses.is_dataclass(child):
            name = f"{f.name}[]" if typing.get_origin(hints[f.name]) in (list, List) else f.name
            yield from schema_sections(child, f"{path}.{name}" if path else name)


def schema_keys(cls: type) -> Iterator[Tuple[str, Any, dataclasses.Field]]:
    """``(name, type hint, field)`` of a section's own keys (nested sections excluded)."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if not dataclasses.is_dataclass(_scalar_hint(hints[f.name])):
            yield f.name, hints[f.name], f


def schema_leaves() -> Iterator[SchemaKey]:
    """Every leaf key of every section, in declaration order."""
    for section, cls in schema_sections():
        for name, hint, f in schema_keys(cls):
            yield SchemaKey(f"{section}.{name}" if section else name, hint, f)


def _scalar_hint(tp: Any) -> Any:
    """The element type of ``Optional[X]``, ``List[X]`` and ``Dict[str, X]``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        (tp,) = [a for a in typing.get_args(tp) if a is not type(None)]
        return _scalar_hint(tp)
    if origin in (list, List, dict, Dict):
        return _scalar_hint(typing.get_args(tp)[-1])
    return tp


def type_name(tp: Any) -> str:
    """A type hint as people read it: ``int``, ``int or null``, ``list of str``, ``mapping str -> float``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        names = [type_name(a) for a in typing.get_args(tp) if a is not type(None)]
        return " or ".join(names) + (" or null" if type(None) in typing.get_args(tp) else "")
    if origin in (list, List):
        return f"list of {type_name(typing.get_args(tp)[0])}"
    if origin in (dict, Dict):
        key, value = typing.get_args(tp)
        return f"mapping {type_name(key)} -> {type_name(value)}"
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


# ---- conversion of a raw mapping ------------------------------------------------------------------
def _entry_label(value: Any, index: int) -> str:
    """A list entry is named by its ``name`` key when it has one (``features[viewed_items]``)."""
    name = value.get("name") if isinstance(value, dict) else None
    return name if isinstance(name, str) else str(index)


def _convert(value: Any, tp: Any, path: str) -> Any:
    """Checks ``value`` against type hint ``tp`` and builds nested dataclasses."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in typing.get_args(tp):
            return None
        (arg,) = [a for a in typing.get_args(tp) if a is not type(None)]
        return _convert(value, arg, path)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a mapping ({tp.__name__}), got {type(value).__name__}")
        return _build(tp, value, path)
    if origin in (list, List):
        (item_tp,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise ConfigError(f"{path}: expected a list, got {type(value).__name__} {value!r}")
        return [_convert(v, item_tp, f"{path}[{_entry_label(v, i)}]") for i, v in enumerate(value)]
    if origin in (dict, Dict):
        key_tp, val_tp = typing.get_args(tp)
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a mapping, got {type(value).__name__} {value!r}")
        return {_convert(k, key_tp, path): _convert(v, val_tp, f"{path}.{k}") for k, v in value.items()}
    return _convert_scalar(value, tp, path)


# type -> (accepted Python types, what the message says is expected)
_SCALARS: Dict[type, Tuple[Tuple[type, ...], str]] = {
    bool: ((bool,), "true/false"),
    int: ((int,), "an integer"),
    float: ((int, float), "a number"),
    str: ((str,), "a string"),
}


def _convert_scalar(value: Any, tp: Any, path: str) -> Any:
    if tp not in _SCALARS:
        raise TypeError(f"unsupported config type {tp} at {path}")
    accepted, expected = _SCALARS[tp]
    if not isinstance(value, accepted) or (tp is not bool and isinstance(value, bool)):
        raise ConfigError(f"{path}: expected {expected}, got {value!r}")
    return float(value) if tp is float else value


def _build(cls: type, raw: Dict[str, Any], path: str) -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ConfigError(f"{path + '.' if path else ''}{unknown[0]}: unknown key; expected one of "
                          f"{sorted(fields)}")
    kwargs = {}
    for name, f in fields.items():
        key_path = f"{path}.{name}" if path else name
        if name in raw:
            kwargs[name] = _convert(raw[name], hints[name], key_path)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{key_path}: required key is missing ({type_name(hints[name])})")
    return cls(**kwargs)


# ---- which keys apply -----------------------------------------------------------------------------
@dataclass(frozen=True)
class ApplicabilityRule:
    """Keys of ``section`` that apply only for some values of a selector (``selector`` names it for
    people, ``pick`` computes it; None means unknown: every key is kept). A key listed in no row of
    ``keys_by_row`` is not governed by the rule."""

    section: str
    selector: str
    pick: Callable[[ExperimentConfig, Optional[str]], Optional[str]]
    keys_by_row: Mapping[str, Tuple[str, ...]]

    def inapplicable(self, config: ExperimentConfig, split_mode: Optional[str]) -> Tuple[str, ...]:
        row = self.pick(config, split_mode)
        if row not in self.keys_by_row:
            return ()
        governed = {key for keys in self.keys_by_row.values() for key in keys}
        return tuple(sorted(governed - set(self.keys_by_row[row])))


def _split_mode(config: ExperimentConfig, split_mode: Optional[str]) -> Optional[str]:
    if split_mode is not None and split_mode not in SPLIT_MODES:
        raise ValueError(f"split_mode: expected one of {list(SPLIT_MODES)} or None, got {split_mode!r}")
    return "generated" if config.data.source == "telecom" else split_mode


_TASK_ROUTING, _OTHER_ROUTING = " or ".join(TASK_ROUTINGS), "token, sentence or another routing"
_GENERATED, _GIVEN = "null with data.source telecom (generated data)", "set, or another source"
_BINS, _NO_BINS = "piecewise_linear, or wide_logits true", "linear or periodic, and wide_logits false"

APPLICABILITY_RULES: Tuple[ApplicabilityRule, ...] = (
    ApplicabilityRule("model", "model.type", lambda c, _: c.model.type, MODEL_KEYS_BY_TYPE),
    ApplicabilityRule("model", "model.routing",
                      lambda c, _: _TASK_ROUTING if c.model.routing in TASK_ROUTINGS else _OTHER_ROUTING,
                      {_TASK_ROUTING: ("route_embedding_dim",), _OTHER_ROUTING: ("capacity_factor",)}),
    ApplicabilityRule("model", "declared features",
                      lambda c, _: "a text feature" if any(f.kind == "text" for f in c.features) else "none",
                      {"a text feature": ("text_encoder",), "none": ()}),
    ApplicabilityRule("model", "model.numerical_embedding and model.wide_logits",
                      lambda c, _: _BINS if c.model.uses_bins else _NO_BINS,
                      {_BINS: ("piecewise_linear_edges",), _NO_BINS: ()}),
    ApplicabilityRule("model.text_encoder", "model.text_encoder.type", lambda c, _: c.model.text_encoder.type,
                      TEXT_ENCODER_KEYS_BY_TYPE),
    ApplicabilityRule("data", "data.source", lambda c, _: c.data.source, DATA_KEYS_BY_SOURCE),
    ApplicabilityRule("data", "data.path",
                      lambda c, _: _GENERATED if c.data.source == "telecom" and c.data.path is None else _GIVEN,
                      {_GENERATED: (), _GIVEN: ("path",)}),
    ApplicabilityRule("data", "split mode", _split_mode, FRACTIONS_BY_SPLIT_MODE),
    ApplicabilityRule("train", "train.learning_rate_schedule", lambda c, _: c.train.learning_rate_schedule,
                      {"constant": (), "warmup_cosine": ("warmup_fraction",)}),
)


def applied_config(config: ExperimentConfig, split_mode: Optional[str] = None) -> Dict[str, Any]:
    """``config.to_dict()`` without the keys this run does not read.

    ``split_mode``: how the loader obtained the splits, one of :data:`SPLIT_MODES`, or None when not
    known yet (both fractions are kept; telecom is always "generated").
    """
    applied = config.to_dict()
    for rule in APPLICABILITY_RULES:
        section = applied
        for part in rule.section.split("."):
            section = section.get(part, {})
        for key in rule.inapplicable(config, split_mode):
            section.pop(key, None)
    return applied


def _leaves(values: Mapping[str, Any], prefix: str = "") -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for key, value in values.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(_leaves(value, path + "."))
        else:
            out[path] = value
    return out


def unapplied_keys(config: ExperimentConfig, split_mode: Optional[str] = None) -> List[str]:
    """Dotted paths of keys set to a non-default value that this run does not read (to warn about)."""
    applied = _leaves(applied_config(config, split_mode))
    defaults = _leaves(ExperimentConfig().to_dict())
    return [path for path, value in _leaves(config.to_dict()).items()
            if path not in applied and value != defaults.get(path, dataclasses.MISSING)]


# ---- reading configs ------------------------------------------------------------------------------
class _ConfigLoader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2's floats: PyYAML follows YAML 1.1, where ``1e-4`` (no dot) is a
    string, so ``learning_rate: 1e-4`` or ``--set train.weight_decay=1e-4`` would be refused as "not a number"."""


_ConfigLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                    |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
                    |[-+]?\.(?:inf|Inf|INF)
                    |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."))


def _load_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_ConfigLoader)  # noqa: S506 - a SafeLoader subclass


def apply_overrides(raw: Dict[str, Any], overrides: Sequence[str]) -> Dict[str, Any]:
    """Applies ``a.b=value`` overrides to a raw config mapping; values are parsed as YAML."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key.path=value")
        key, text = item.split("=", 1)
        try:
            value = _load_yaml(text)
        except yaml.YAMLError as err:
            raise ConfigError(f"--set {key}: value {text!r} is not valid YAML ({err})") from None
        node = raw
        parts = key.strip().split(".")
        for i, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"--set {key}: {'.'.join(parts[:i + 1])} is not a mapping")
            node = child
        node[parts[-1]] = value
    return raw


def parse_config(raw: Optional[Dict[str, Any]], overrides: Sequence[str] = (),
                 source: str = "<dict>") -> ExperimentConfig:
    """Validates a raw mapping (plus overrides) into an :class:`ExperimentConfig`."""
    if raw is not None and not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a YAML mapping at the top level")
    raw = dict(raw or {})
    apply_overrides(raw, overrides)
    try:
        return _build(ExperimentConfig, raw, "")
    except ConfigError as err:
        raise ConfigError(f"{source}: {err}") from None


def load_config(path: Optional[str], overrides: Sequence[str] = ()) -> ExperimentConfig:
    """Reads a YAML config file (or the built-in defaults when ``path`` is None)."""
    if path is None:
        return parse_config({}, overrides, source="<defaults>")
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        raw = _load_yaml(file.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: malformed YAML: {err}") from None
    if raw is not None and not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a YAML mapping at the top level, got {type(raw).__name__}")
    return parse_config(raw, overrides, source=str(path))


def add_config_arguments(parser) -> None:
    """Adds ``--config FILE`` and repeatable ``--set key.path=value`` to an argparse parser."""
    parser.add_argument("--config", default=None, help="experiment YAML (default: built-in defaults)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key, e.g. --set model.num_experts=16 (repeatable)")


def config_from_args(args) -> ExperimentConfig:
    """The validated config named by ``--config`` with every ``--set`` applied."""
    return load_config(args.config, args.overrides)
