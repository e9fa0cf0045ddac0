"""The hub path for real: export a small text encoder SavedModel (tokenization inside), load it from the
local path through HubTextEncoder (hub.KerasLayer), and train a step with model.fit, frozen and fine-tuned."""
import grec_tf  # noqa: F401  (selects tf-keras before TensorFlow is imported)

import json
import shutil

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_text as tf_text

from grec_tf.config import TextEncoderConfig
from grec_tf.errors import ConfigError
from grec_tf.models.factory import build_text_encoder
from grec_tf.text import HubTextEncoder, SearchQueryEncoder, build_wordpiece_vocabulary

WORDS = ["iphone", "case", "galaxy", "watch", "band", "charger", "plan", "tablet"]
HUB_DIM, OUT_DIM = 6, 4


def export_tiny_text_encoder(export_dir, vocab_dir):
    """A reusable TF2 SavedModel: __call__(strings [B]) -> {"default": [B, 6], "pooled_output": [B, 6]}.

    Lower-cases, splits on whitespace (tensorflow-text), looks words up in a vocabulary file shipped as a
    SavedModel asset (out-of-vocabulary -> one extra bucket), mean-pools word embeddings (an empty string
    gives zeros) and applies a tanh dense layer. Exposes variables / trainable_variables /
    regularization_losses as hub.KerasLayer expects of a reusable SavedModel.
    """
    vocab_file = vocab_dir / "vocab.txt"
    vocab_file.write_text("\n".join(WORDS) + "\n")
    root = tf.train.Checkpoint()
    root.table = tf.lookup.StaticVocabularyTable(
        tf.lookup.TextFileInitializer(str(vocab_file), tf.string, tf.lookup.TextFileIndex.WHOLE_LINE,
                                      tf.int64, tf.lookup.TextFileIndex.LINE_NUMBER),
        num_oov_buckets=1)
    rng = np.random.default_rng(0)
    root.embeddings = tf.Variable(rng.normal(size=(len(WORDS) + 1, 8)).astype("float32"), name="embeddings")
    root.kernel = tf.Variable(rng.normal(size=(8, HUB_DIM)).astype("float32") * 0.5, name="kernel")
    root.bias = tf.Variable(tf.zeros([HUB_DIM]), name="bias")
    root.variables = [root.embeddings, root.kernel, root.bias]
    root.trainable_variables = [root.embeddings, root.kernel, root.bias]
    root.regularization_losses = []
    tokenizer = tf_text.WhitespaceTokenizer()

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def call(texts):
        words = tokenizer.tokenize(tf.strings.lower(texts))  # [B, (W)]
        ids = tf.ragged.map_flat_values(root.table.lookup, words)
        vectors = tf.ragged.map_flat_values(tf.gather, root.embeddings, ids)  # [B, (W), 8]
        total = tf.reduce_sum(vectors, axis=1)
        count = tf.cast(tf.expand_dims(words.row_lengths(), -1), tf.float32)
        pooled = tf.tanh(tf.matmul(total / tf.maximum(count, 1.0), root.kernel) + root.bias)
        return {"default": pooled, "pooled_output": pooled}

    root.__call__ = call
    tf.saved_model.save(root, str(export_dir), signatures={"serving_default": call})


@pytest.fixture(scope="module")
def hub_path(tmp_path_factory):
    base = tmp_path_factory.mktemp("hub")
    vocab_dir = base / "vocab_source"
    vocab_dir.mkdir()
    export_dir = base / "tiny_text_encoder"
    export_tiny_text_encoder(export_dir, vocab_dir)
    shutil.rmtree(vocab_dir)  # the vocabulary must travel inside the SavedModel as an asset
    return str(export_dir)


def _dataset():
    queries = ["iphone case", "", "galaxy watch band", "Charger", "unknown words here", "tablet plan"] * 4
    labels = [1.0, 0.0, 1.0, 0.0, 1.0, 0.0] * 4
    return tf.data.Dataset.from_tensor_slices((tf.constant(queries), tf.constant(labels))).batch(8)


def _fit_one_step(hub_path, trainable):
    tf.keras.utils.set_random_seed(0)
    inputs = tf.keras.Input(shape=(), dtype=tf.string, name="query")
    encoder = HubTextEncoder(hub_path, output_dim=OUT_DIM, trainable=trainable, output_key="default")
    outputs = tf.keras.layers.Dense(1, activation="sigmoid")(encoder(inputs))
    model = tf.keras.Model(inputs, outputs)
    model.compile(optimizer=tf.keras.optimizers.SGD(0.5), loss="binary_crossentropy")
    hub_before = [w.numpy().copy() for w in encoder.encoder.weights]
    proj_before = [w.numpy().copy() for w in encoder.projection.weights]
    history = model.fit(_dataset(), epochs=1, steps_per_epoch=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    hub_changed = [not np.array_equal(b, w.numpy()) for b, w in zip(hub_before, encoder.encoder.weights)]
    proj_changed = [not np.array_equal(b, w.numpy()) for b, w in zip(proj_before, encoder.projection.weights)]
    return encoder, hub_changed, proj_changed


def test_frozen_hub_encoder_trains_only_the_projection(hub_path):
    encoder, hub_changed, proj_changed = _fit_one_step(hub_path, trainable=False)
    assert len(encoder.encoder.weights) == 3 and not encoder.encoder.trainable_weights
    assert not any(hub_changed)
    assert all(proj_changed)


def test_fine_tuned_hub_encoder_trains_the_encoder(hub_path):
    encoder, hub_changed, proj_changed = _fit_one_step(hub_path, trainable=True)
    assert len(encoder.encoder.trainable_weights) == 3
    assert all(hub_changed)
    assert all(proj_changed)


def test_output_selection_shapes_and_config(hub_path):
    encoder = HubTextEncoder(hub_path, output_dim=OUT_DIM)  # dict output: picks "pooled_output"
    out = encoder(tf.constant([["iphone case"], [""]]))  # [B, 1] input accepted
    assert out.shape == (2, OUT_DIM) and np.isfinite(out.numpy()).all()
    config = encoder.get_config()
    json.dumps(config)
    assert config["handle"] == hub_path and config["trainable"] is False and config["output_dim"] == OUT_DIM
    clone = HubTextEncoder.from_config(config)
    clone(tf.constant(["x"]))
    clone.set_weights(encoder.get_weights())
    np.testing.assert_allclose(clone(tf.constant(["iphone case", ""])).numpy(),
                               encoder(tf.constant(["iphone case", ""])).numpy(), rtol=1e-6)
    with pytest.raises(ValueError, match="output_key"):
        HubTextEncoder(hub_path, output_dim=OUT_DIM, output_key="sequence_output")(tf.constant(["a"]))
    with pytest.raises(ValueError, match="cannot load"):
        HubTextEncoder(hub_path + "_missing", output_dim=OUT_DIM)


def test_build_text_encoder(hub_path):
    hub_cfg = TextEncoderConfig(type="hub", handle=hub_path, trainable=True)
    hub_layer = build_text_encoder(hub_cfg, vocabulary=None, max_tokens=8, output_dim=OUT_DIM)
    assert isinstance(hub_layer, HubTextEncoder) and hub_layer.encoder_trainable
    vocab = build_wordpiece_vocabulary(["iphone case", "galaxy watch"] * 10, vocab_size=60)
    cfg = TextEncoderConfig(type="transformer", num_layers=1, num_heads=2)
    layer = build_text_encoder(cfg, vocabulary=vocab, max_tokens=8, output_dim=OUT_DIM)
    assert isinstance(layer, SearchQueryEncoder) and layer.max_tokens == 8
    assert layer(tf.constant(["iphone", ""])).shape == (2, OUT_DIM)
    with pytest.raises(ConfigError, match="vocabulary"):
        build_text_encoder(cfg, vocabulary=None, max_tokens=8, output_dim=OUT_DIM)
    with pytest.raises(ConfigError, match="num_heads"):
        build_text_encoder(TextEncoderConfig(num_heads=3), vocabulary=vocab, max_tokens=8, output_dim=OUT_DIM)


def test_model_with_hub_encoder_exports_self_contained(hub_path, tmp_path):
    private_copy = tmp_path / "hub_copy"
    shutil.copytree(hub_path, private_copy)
    inputs = tf.keras.Input(shape=(), dtype=tf.string, name="query")
    outputs = HubTextEncoder(str(private_copy), output_dim=OUT_DIM, output_key="default")(inputs)
    model = tf.keras.Model(inputs, outputs)
    queries = tf.constant(["iphone case", "", "galaxy watch"])
    expected = model(queries).numpy()

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="query")])
    def serve(query):
        return {"embedding": model(query, training=False)}

    export = str(tmp_path / "export")
    model.save(export, save_format="tf", signatures={"serving_default": serve})
    shutil.rmtree(private_copy)  # the export must not depend on the original handle
    loaded = tf.saved_model.load(export)
    got = loaded.signatures["serving_default"](query=queries)["embedding"].numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)


def test_hub_encoder_under_mixed_precision(hub_path):
    tf.keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        out = HubTextEncoder(hub_path, output_dim=OUT_DIM)(tf.constant(["iphone case", ""]))
        assert out.dtype == tf.bfloat16 and np.isfinite(tf.cast(out, tf.float32).numpy()).all()
    finally:
        tf.keras.mixed_precision.set_global_policy("float32")
