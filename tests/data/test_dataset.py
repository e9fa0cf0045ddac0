"""make_dataset: index-shuffled, batch-gathered pipeline with the element structure, seeding and epoch
semantics of the element-wise pipeline it replaced."""
import numpy as np
import pytest
import tensorflow as tf

from grec_tf.benchmarks.input_pipeline import element_wise_dataset
from grec_tf.data.dataset import make_dataset, row_count
from grec_tf.data.feature_arrays import frame_to_arrays
from tests.tiny_experiment import tiny_config, tiny_frame

ROWS = 300


@pytest.fixture(scope="module")
def arrays():
    """The tiny experiment's model inputs plus ``row`` = the row's position (to follow rows through shuffling)."""
    arrays = frame_to_arrays(tiny_frame(ROWS, seed=2), tiny_config())
    return {**arrays, "row": np.arange(ROWS, dtype=np.int64)}


def _rows(dataset: tf.data.Dataset, batches=None) -> np.ndarray:
    """The ``row`` ids of the dataset's batches, in order (the first ``batches`` batches if given)."""
    return np.concatenate([batch["row"].numpy() for batch in dataset.take(batches or -1)])


@pytest.mark.parametrize("shuffle", [False, True])
def test_element_structure_dtypes_and_shapes_equal_the_element_wise_pipeline(arrays, shuffle):
    new = make_dataset(arrays, 64, shuffle=shuffle, seed=0)
    old = element_wise_dataset(arrays, 64, shuffle=shuffle, seed=0)
    assert new.element_spec == old.element_spec
    assert set(new.element_spec) == set(arrays)
    assert new.element_spec["query"].dtype == tf.string  # object arrays become strings
    assert new.element_spec["viewed"].shape.as_list() == [None, 5]
    for got, expected in zip(new.take(1), old.take(1)):
        for name in arrays:
            assert got[name].shape == expected[name].shape, name
            assert got[name].dtype == expected[name].dtype, name


def test_without_shuffle_batches_equal_the_element_wise_pipeline(arrays):
    new, old = list(make_dataset(arrays, 128)), list(element_wise_dataset(arrays, 128))
    assert [len(b["row"]) for b in new] == [128, 128, ROWS - 256]
    for got, expected in zip(new, old):
        for name in arrays:
            np.testing.assert_array_equal(got[name].numpy(), expected[name].numpy(), err_msg=name)


@pytest.mark.parametrize("batch_size", [64, 7, ROWS, ROWS + 5])
def test_shuffled_epoch_has_every_row_exactly_once_and_keeps_the_partial_batch(arrays, batch_size):
    dataset = make_dataset(arrays, batch_size, shuffle=True, seed=3)
    sizes = [len(batch["row"]) for batch in dataset]
    full, rest = divmod(ROWS, batch_size)
    assert sizes == [batch_size] * full + ([rest] if rest else [])
    order = _rows(dataset)
    np.testing.assert_array_equal(np.sort(order), np.arange(ROWS))
    if batch_size < ROWS:
        assert not np.array_equal(order, np.arange(ROWS))


def test_gathered_rows_keep_their_values_together(arrays):
    batch = next(iter(make_dataset(arrays, 50, shuffle=True, seed=4)))
    rows = batch["row"].numpy()
    for name in ("plan", "viewed", "item_vec", "label", "tenure"):
        expected = arrays[name][rows]
        expected = expected.astype(str).astype(bytes) if expected.dtype == object else expected
        np.testing.assert_array_equal(batch[name].numpy(), expected, err_msg=name)


def test_a_seed_gives_a_reproducible_order_and_another_seed_another(arrays):
    first = _rows(make_dataset(arrays, 64, shuffle=True, seed=5))
    again = _rows(make_dataset(arrays, 64, shuffle=True, seed=5))
    other = _rows(make_dataset(arrays, 64, shuffle=True, seed=6))
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_each_pass_is_reshuffled_and_reproducible(arrays):
    dataset = make_dataset(arrays, 64, shuffle=True, seed=7)
    epochs = [_rows(dataset) for _ in range(3)]
    for order in epochs:
        np.testing.assert_array_equal(np.sort(order), np.arange(ROWS))
    assert not np.array_equal(epochs[0], epochs[1]) and not np.array_equal(epochs[1], epochs[2])
    replay = make_dataset(arrays, 64, shuffle=True, seed=7)
    np.testing.assert_array_equal(np.concatenate(epochs), np.concatenate([_rows(replay) for _ in range(3)]))


def test_repeat_chains_reshuffled_passes_without_losing_rows(arrays):
    order = _rows(make_dataset(arrays, 100, shuffle=True, seed=8, repeat=True), batches=3 * ROWS // 100)
    passes = order.reshape(3, ROWS)
    for one_pass in passes:
        np.testing.assert_array_equal(np.sort(one_pass), np.arange(ROWS))
    assert not np.array_equal(passes[0], passes[1])


def test_shuffle_buffer_is_a_window_and_a_full_buffer_a_permutation(arrays):
    window = 10
    order = _rows(make_dataset(arrays, 64, shuffle=True, shuffle_buffer=window, seed=9))
    # a window of W rows emits position i from the first i + W rows
    assert all(row < position + window for position, row in enumerate(order))
    firsts = {_rows(make_dataset(arrays, 64, shuffle=True, seed=seed), batches=1)[0] for seed in range(20)}
    assert max(firsts) >= window  # a full buffer can start the pass with any row


def test_row_count_names_arrays_of_different_lengths():
    with pytest.raises(ValueError, match=r"different row counts: \{'a': 3, 'b': 2\}"):
        row_count({"a": np.zeros(3), "b": np.zeros(2)})
    with pytest.raises(ValueError, match="no arrays given"):
        make_dataset({}, 4)
