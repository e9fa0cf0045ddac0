"""The training split's statistics from tf.Transform analyzers, and :class:`FeatureStatistics` read back from
the transform output.

:func:`preprocessing_fn` declares three analyzers, however many features there are (each analyzer expands
into dozens of Beam transforms, and building and translating the graph dominated small runs): one
``tft.vocabulary`` with counts over ``owner<sep>id`` keys, holding the ids of every vocabulary owner (a feature,
or the feature others share through ``vocabulary_of``: all member columns count); one ``tft.mean`` over
``[x, x^2]`` of every numerical (in float64; variance = E[x^2] - E[x]^2, exact enough unless a mean is ~1e6
times its standard deviation); one ``tft.size``; and for ``model.numerical_embedding: piecewise_linear``'s bins one
``tft.quantiles`` (approximate, epsilon :data:`QUANTILE_EPSILON`) with one ``tft.min`` and ``tft.max`` of every
numerical, always computed so that a preprocessed folder serves either encoding. Its outputs pass the raw values
through and add the moments and edges, so the transform graph carries every analyzer result.

tf.Transform ranks equal counts by descending id and cuts ``top_k`` on that order; the pandas path ranks ties
by ascending id. So the vocabularies are computed whole, with counts, and ranked and cut at ``max_vocab`` by
:func:`grec_tf.data.feature_statistics.ranked_vocabulary`, the one ranking both paths use. They are written
as gzipped TFRecords, which keep any id (a text vocabulary file drops ids holding a newline).

The WordPiece vocabularies of text features are learned by tensorflow-text's learner, streaming the text
column of the written training shards (word counts do not depend on row order), as the pandas path does.

The tree edges of ``model.piecewise_linear_edges: tree`` (:func:`grec_tf.data.tree_edges.tree_edges`: the split
thresholds of one decision tree per task sentence, fitted on a numerical against that task's label) have no
tf.Transform analyzer: a tree needs its rows together, not a combinable summary. So they are computed by streaming
the written training shards too, reading only the numericals, ``flow``, ``use_case`` and ``label``, and keeping a
seeded uniform sample of at most :data:`~grec_tf.data.tree_edges.TREE_SAMPLE_ROWS` rows per task sentence (each
row draws a uniform key, a task sentence keeps its smallest keys: the sample needs no row count and holds at most
twice that many rows at a time). Below the cap a task sentence keeps all its rows, as the pandas path does, and the
trees see the same float32 values, so both paths give the same edges; above it the two samples differ.
"""
from __future__ import annotations

import os
from typing import Callable, Dict, List, Tuple

import numpy as np
import tensorflow as tf

from grec_tf.config import PIECEWISE_LINEAR_BINS, ExperimentConfig
from grec_tf.data.feature_arrays import ROUTE_COLUMNS, SEQUENCE_PADDING
from grec_tf.data.feature_statistics import (FeatureStatistics, distinct_edges, normalization_moments,
                                             ranked_vocabulary, shared_vocabulary_owners)
from grec_tf.data.tfrecord_source import LABEL, TRANSFORM_OUTPUT, parsed_batches, read_feature_spec, shard_files

VOCABULARY_NAME = "vocabularies"  # the one tf.Transform vocabulary: ids of every owner, keyed by owner
MOMENTS = "numerical_moments"  # output [B, 3 * numericals] string: mean, variance, count per numerical
EDGES = "numerical_quantile_edges"  # output [B, (bins + 1) * numericals] string: min, bins - 1 quantiles, max
#: rank error of the approximate quantiles (a fraction of the rows; 1 / 48 bins is 0.02)
QUANTILE_EPSILON = 0.001
_KEY_SEPARATOR = "\x1f"  # between an owner's name and an id in the vocabulary's keys


def _ids(tensor) -> tf.Tensor:
    """[n] non-padding ids of a dense [B] or sparse [B, L] string input."""
    values = tensor.values if isinstance(tensor, tf.SparseTensor) else tf.reshape(tensor, [-1])
    return tf.boolean_mask(values, tf.not_equal(values, SEQUENCE_PADDING))


def _keyed_ids(inputs: Dict[str, tf.Tensor], owners: Dict[str, str]) -> tf.Tensor:
    """[n] ``owner<sep>id`` of every id of every vocabulary member, so that one analyzer counts them all."""
    return tf.concat([tf.strings.join([owner + _KEY_SEPARATOR, _ids(inputs[name])])
                      for name, owner in owners.items()], 0)


def _moments(inputs: Dict[str, tf.Tensor], numericals: List[str]) -> tf.Tensor:
    """[3 * numericals] float64: mean, population variance and count of each numerical over the dataset."""
    import tensorflow_transform as tft

    x = tf.stack([tf.cast(inputs[name], tf.float64) for name in numericals], axis=1)  # [B, n]
    first, second = tf.unstack(tft.mean(tf.stack([x, x * x], axis=1), reduce_instance_dims=False,
                                        output_dtype=tf.float64))  # [n] each
    count = tf.fill(tf.shape(first), tf.cast(tft.size(inputs["flow"]), tf.float64))
    return tf.reshape(tf.stack([first, second - first * first, count], axis=1), [-1])


def _quantile_edges(inputs: Dict[str, tf.Tensor], numericals: List[str]) -> tf.Tensor:
    """[(bins + 1) * numericals] float32: the minimum, the bins - 1 inner quantiles and the maximum of each."""
    import tensorflow_transform as tft

    x = tf.stack([tf.cast(inputs[name], tf.float32) for name in numericals], axis=1)  # [B, n]
    inner = tft.quantiles(x, PIECEWISE_LINEAR_BINS, QUANTILE_EPSILON, reduce_instance_dims=False)  # [n, bins - 1]
    low, high = tft.min(x, reduce_instance_dims=False), tft.max(x, reduce_instance_dims=False)  # [n] each
    return tf.reshape(tf.concat([low[:, None], tf.reshape(inner, [len(numericals), -1]), high[:, None]], 1), [-1])


def preprocessing_fn(config: ExperimentConfig) -> Callable[[Dict[str, tf.Tensor]], Dict[str, tf.Tensor]]:
    """The tf.Transform preprocessing function of ``config`` (see the module docstring)."""
    import tensorflow_transform as tft

    owners = shared_vocabulary_owners(config)
    numericals = [f.name for f in config.features if f.kind == "numerical"]

    def transform(inputs: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
        if owners:
            tft.vocabulary(_keyed_ids(inputs, owners), vocab_filename=VOCABULARY_NAME, store_frequency=True,
                           file_format="tfrecord_gzip")
        outputs = {name: value for name, value in inputs.items() if not isinstance(value, tf.SparseTensor)}
        if numericals:
            moments = tf.strings.as_string(_moments(inputs, numericals), precision=17)
            outputs[MOMENTS] = tf.tile(moments[None], [tf.shape(inputs["flow"])[0], 1])
            edges = tf.strings.as_string(_quantile_edges(inputs, numericals), precision=9)  # float32 round trip
            outputs[EDGES] = tf.tile(edges[None], [tf.shape(inputs["flow"])[0], 1])
        return outputs

    return transform


def _vocabulary_counts(path: str) -> Dict[str, List[Tuple[str, int]]]:
    """owner -> (id, count) pairs, from the ``store_frequency`` vocabulary (records ``b"<count> <owner><sep><id>"``)."""
    pairs: Dict[str, List[Tuple[str, int]]] = {}
    for record in tf.data.TFRecordDataset(path, compression_type="GZIP").as_numpy_iterator():
        count, key = record.split(b" ", 1)
        owner, token = key.decode("utf-8").split(_KEY_SEPARATOR, 1)
        pairs.setdefault(owner, []).append((token, int(count)))
    return pairs


def _analyzer_values(transform_output, config: ExperimentConfig, first_example: bytes, name: str) -> List[float]:
    """The floats of output ``name`` (an analyzer result, equal on every example) of the transform graph applied
    to one example."""
    raw = tf.io.parse_example([first_example], read_feature_spec(config))
    return [float(v) for v in transform_output.transform_raw_features(raw)[name].numpy()[0]]


def _numerical_moments(transform_output, config: ExperimentConfig, first_example: bytes) -> Dict[str, List[float]]:
    """numerical -> [mean, variance]."""
    numericals = [f.name for f in config.features if f.kind == "numerical"]
    if not numericals:
        return {}
    values = _analyzer_values(transform_output, config, first_example, MOMENTS)
    return {name: normalization_moments(values[3 * i], values[3 * i + 1], int(values[3 * i + 2]))
            for i, name in enumerate(numericals)}


def _numerical_edges(transform_output, config: ExperimentConfig, first_example: bytes) -> Dict[str, List[float]]:
    """numerical -> its distinct quantile bin edges (empty for a folder preprocessed before they were computed)."""
    numericals = [f.name for f in config.features if f.kind == "numerical"]
    if not numericals or EDGES not in transform_output.transformed_feature_spec():
        return {}
    values, width = _analyzer_values(transform_output, config, first_example, EDGES), PIECEWISE_LINEAR_BINS + 1
    return {name: distinct_edges(values[width * i:width * (i + 1)]) for i, name in enumerate(numericals)}


def _text_vocabularies(config: ExperimentConfig) -> Dict[str, List[str]]:
    from grec_tf.text import build_wordpiece_vocabulary

    vocabularies = {}
    for f in config.features:
        if f.kind == "text" and config.model.text_encoder.type == "transformer":
            texts = parsed_batches(config, "train", [f.name], 8192).map(lambda b, n=f.name: b[n]).unbatch()
            texts = texts.filter(lambda t: tf.strings.length(t) > 0)
            vocabularies[f.name] = build_wordpiece_vocabulary(texts.batch(1024), config.model.text_encoder.vocab_size)
    return vocabularies


def _kept_rows(chunks: List[Tuple[np.ndarray, ...]], size: int) -> Tuple[np.ndarray, ...]:
    """The rows of the ``size`` smallest keys of ``chunks`` of (keys [k], values [k, F], labels [k])."""
    keys, values, labels = (np.concatenate(part) for part in zip(*chunks))
    best = np.argpartition(keys, size)[:size] if keys.size > size else np.arange(keys.size)
    return keys[best], values[best], labels[best]


def _tree_sample(config: ExperimentConfig, numericals: List[str],
                 seed: int = 0) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A seeded uniform sample of at most ``TREE_SAMPLE_ROWS`` training rows per task sentence, streamed from the
    shards (see the module docstring): values [n, F] float32 of ``numericals``, labels [n], task codes [n]."""
    from grec_tf.data.tree_edges import TREE_SAMPLE_ROWS

    rng, chunks = np.random.default_rng(seed), {}  # task sentence -> [(keys, values, labels)]
    names = list(ROUTE_COLUMNS) + [LABEL] + numericals
    for batch in parsed_batches(config, "train", names, 8192).as_numpy_iterator():
        tasks = [flow + b"/" + use_case for flow, use_case in zip(batch["flow"], batch["use_case"])]
        (unique, inverse), keys = np.unique(tasks, return_inverse=True), rng.random(len(tasks))
        values = np.stack([batch[name] for name in numericals], axis=1)
        for code, task in enumerate(unique):
            rows = inverse == code
            chunks.setdefault(task, []).append((keys[rows], values[rows], batch[LABEL][rows]))
            if sum(len(chunk[0]) for chunk in chunks[task]) > 2 * TREE_SAMPLE_ROWS:  # bounded memory
                chunks[task] = [_kept_rows(chunks[task], TREE_SAMPLE_ROWS)]
    kept = [_kept_rows(chunks[task], TREE_SAMPLE_ROWS) for task in sorted(chunks)]
    if not kept:
        return np.zeros((0, len(numericals)), np.float32), np.zeros(0), np.zeros(0, np.int64)
    return (np.concatenate([k[1] for k in kept]), np.concatenate([k[2] for k in kept]),
            np.repeat(np.arange(len(kept)), [len(k[0]) for k in kept]))


def _tree_edges(config: ExperimentConfig) -> Dict[str, List[float]]:
    """numerical -> its tree edges, from the sample of :func:`_tree_sample`."""
    from grec_tf.data.tree_edges import tree_edges

    numericals = [f.name for f in config.features if f.kind == "numerical"]
    if not numericals:
        return {}
    values, labels, tasks = _tree_sample(config, numericals)
    return {name: tree_edges(values[:, i], labels, tasks, PIECEWISE_LINEAR_BINS) for i, name in enumerate(numericals)}


def statistics_from_transform_output(config: ExperimentConfig) -> FeatureStatistics:
    """The :class:`FeatureStatistics` the pandas path computes, from the tf.Transform output and the training
    shards of a preprocessed folder (``config`` reads it: :func:`grec_tf.data.tfrecord_source.reading_config`)."""
    import tensorflow_transform as tft

    output = tft.TFTransformOutput(os.path.join(config.data.path, TRANSFORM_OUTPUT))
    declared = {f.name: f for f in config.features}
    owners = shared_vocabulary_owners(config)
    counts = _vocabulary_counts(output.vocabulary_file_by_name(VOCABULARY_NAME)) if owners else {}
    ranked = {owner: ranked_vocabulary(counts.get(owner, []), declared[owner].max_vocab)
              for owner in dict.fromkeys(owners.values())}
    first = next(iter(tf.data.TFRecordDataset(shard_files(config, "train")[:1], compression_type="GZIP"))).numpy()
    return FeatureStatistics(vocabularies={name: list(ranked[owner]) for name, owner in owners.items()},
                             moments=_numerical_moments(output, config, first),
                             text_vocabularies=_text_vocabularies(config),
                             quantiles=_numerical_edges(output, config, first), tree_edges=_tree_edges(config))

