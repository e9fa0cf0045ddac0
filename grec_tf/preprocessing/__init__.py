"""Preprocessing past one machine: an Apache Beam pipeline on tf.Transform and tfx-bsl.

``python -m pipelines.preprocess --config X.yaml --out DIR [beam options]`` runs
:func:`grec_tf.preprocessing.pipeline.run_preprocessing`: it reads the train / valid / test long tables
(:mod:`~grec_tf.preprocessing.long_tables`), validates every chunk with the checks and messages of
:mod:`grec_tf.data.validation` (:mod:`~grec_tf.preprocessing.row_checks`), writes ``tf.Example`` shards of the
validated raw values with an ``impression_key``, each impression's rows together
(:mod:`~grec_tf.preprocessing.examples`), and computes the training split's
vocabularies and normalization statistics with tf.Transform analyzers (:mod:`~grec_tf.preprocessing.analysis`).
The folder it writes is what ``data.source: tfrecord`` reads (:mod:`grec_tf.data.tfrecord_source`).
"""
