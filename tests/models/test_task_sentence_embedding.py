"""The task token: eq. 8's mean of the flow and use-case embeddings, or their concatenation
(``model.task_token``), in the layer and in a built model."""
import numpy as np
import pytest
import tensorflow as tf

import grec_tf  # noqa: F401
from grec_tf.data.feature_arrays import frame_to_arrays
from grec_tf.data.feature_statistics import compute_feature_statistics
from grec_tf.errors import ConfigError
from grec_tf.experiment import Experiment
from grec_tf.models.task_sentence_embedding import TaskSentenceEmbedding
from tests.models.test_multi_task_ranker import assert_round_trips_and_serves
from tests.tiny_experiment import tiny_config, tiny_frame

FLOWS, USE_CASES = ["AAL", "EUP", "NSE"], ["CTR", "CVR"]
ROWS = (tf.constant(["EUP", "AAL", "MARS"]), tf.constant(["CVR", "CTR", "CVR"]))  # MARS: out of vocabulary


@pytest.mark.parametrize("d_model", [7, 8])
def test_concat_puts_each_word_in_its_own_dimensions(d_model):
    layer = TaskSentenceEmbedding(FLOWS, USE_CASES, d_model, composition="concat")
    flow_id, use_case_id, token = layer(*ROWS)
    assert flow_id.numpy().tolist() == [2, 1, 0] and use_case_id.numpy().tolist() == [2, 1, 2]
    flows, use_cases = layer.flow_embedding.embeddings.numpy(), layer.use_case_embedding.embeddings.numpy()
    assert flows.shape == (4, d_model - d_model // 2) and use_cases.shape == (3, d_model // 2)
    expected = np.concatenate([flows[[2, 1, 0]], use_cases[[2, 1, 2]]], axis=1)
    np.testing.assert_array_equal(token.numpy(), expected)


def test_mean_is_eq_8():
    layer = TaskSentenceEmbedding(FLOWS, USE_CASES, 6)
    _, _, token = layer(*ROWS)
    flows, use_cases = layer.flow_embedding.embeddings.numpy(), layer.use_case_embedding.embeddings.numpy()
    assert flows.shape == (4, 6) and use_cases.shape == (3, 6)
    np.testing.assert_allclose(token.numpy(), 0.5 * (flows[[2, 1, 0]] + use_cases[[2, 1, 2]]), rtol=1e-6)


def test_composition_is_validated_and_travels_in_the_config():
    with pytest.raises(ValueError, match="task_token: expected one of \\['mean', 'concat'\\], got 'sum'"):
        TaskSentenceEmbedding(FLOWS, USE_CASES, 8, composition="sum")
    with pytest.raises(ValueError, match="concat needs d_model >= 2"):
        TaskSentenceEmbedding(FLOWS, USE_CASES, 1, composition="concat")
    layer = TaskSentenceEmbedding(FLOWS, USE_CASES, 8, composition="concat")
    assert TaskSentenceEmbedding.from_config(layer.get_config()).composition == "concat"


def test_the_config_key_reaches_the_model_and_is_checked():
    assert tiny_config().model.task_token == "mean"  # the paper's design stays the default
    with pytest.raises(ConfigError, match="model.task_token: expected one of"):
        tiny_config(task_token="sum")
    with pytest.raises(ConfigError, match="model.task_token: concat .* needs model.d_model >= 2, got 1"):
        tiny_config(task_token="concat", d_model=1, num_heads=1)


@pytest.mark.parametrize("model_type", ["grec", "mmoe"])
def test_a_concat_model_trains_round_trips_and_serves_the_same_scores(model_type, tmp_path):
    frame = tiny_frame(256, seed=5)
    config = tiny_config(type=model_type, task_token="concat")
    model = Experiment(config, statistics=compute_feature_statistics(frame, config)).build_model()
    arrays = frame_to_arrays(frame, config)
    batch = {k: tf.constant(v.astype(str) if v.dtype == object else v) for k, v in arrays.items()}
    model.compile(optimizer=tf.keras.optimizers.Adam(0.01))
    before = model.task_embedding.use_case_embedding.embeddings.numpy().copy()
    model.fit(tf.data.Dataset.from_tensor_slices(batch).batch(64), epochs=1, verbose=0)
    assert model.task_embedding.composition == "concat"
    assert not np.allclose(before, model.task_embedding.use_case_embedding.embeddings.numpy())  # it learns
    assert_round_trips_and_serves(model, config, batch, tmp_path)
