"""make_dataset: index-shuffled, batch-gathered pipeline with the element structure, seeding and epoch
semantics of the element-wise pipeline it replaced, and its grouping of the rows of an impression."""
import numpy as np
import pytest
import tensorflow as tf

from grec_tf.benchmarks.input_pipeline import element_wise_dataset
from grec_tf.data.dataset import make_dataset, row_count
from grec_tf.data.feature_arrays import IMPRESSION_KEY, frame_to_arrays
from tests.tiny_experiment import tiny_config, tiny_frame, tiny_impression_frame

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


@pytest.fixture(scope="module")
def grouped():
    """Arrays of a long frame with several rows per impression, plus ``row`` (as in ``arrays``)."""
    frame = tiny_impression_frame(120, seed=5)
    arrays = frame_to_arrays(frame, tiny_config())
    return {**arrays, "row": np.arange(len(frame), dtype=np.int64)}


def _grouped_passes(arrays, passes, seed=11, batch_size=32):
    dataset = make_dataset(arrays, batch_size, shuffle=True, seed=seed, group_key=IMPRESSION_KEY)
    return [[batch["row"].numpy() for batch in dataset] for _ in range(passes)]


def test_grouped_pass_has_every_row_once_and_keeps_impressions_in_one_batch(grouped):
    keys, rows = grouped[IMPRESSION_KEY], len(grouped["row"])
    assert len(np.unique(keys)) < rows  # the fixture repeats impressions
    for batch_size in (32, 7, rows + 3):
        batches = _grouped_passes(grouped, 1, batch_size=batch_size)[0]
        full, rest = divmod(rows, batch_size)
        # a known length: Keras counts an epoch's steps without running into the end of the data
        dataset = make_dataset(grouped, batch_size, shuffle=True, seed=1, group_key=IMPRESSION_KEY)
        assert dataset.cardinality().numpy() == full + bool(rest)
        assert [len(b) for b in batches] == [batch_size] * full + ([rest] if rest else [])
        order = np.concatenate(batches)
        np.testing.assert_array_equal(np.sort(order), np.arange(rows))
        # each impression's rows are consecutive, so only a batch boundary can split one (into two batches)
        runs = np.flatnonzero(np.diff(keys[order])) + 1
        assert len(runs) + 1 == len(np.unique(keys))
        batch_of = np.repeat(np.arange(len(batches)), [len(b) for b in batches])
        for key in np.unique(keys):
            spanned = np.unique(batch_of[keys[order] == key])
            assert len(spanned) == 1 or (len(spanned) == 2 and spanned[1] == spanned[0] + 1)
        split = sum(len(np.intersect1d(keys[a], keys[b])) for a, b in zip(batches, batches[1:]))
        assert split <= len(batches) - 1


def test_grouped_order_is_redrawn_each_pass_and_reproducible_with_the_seed(grouped):
    first, second = (np.concatenate(p) for p in _grouped_passes(grouped, 2))
    assert not np.array_equal(first, second)
    replay = [np.concatenate(p) for p in _grouped_passes(grouped, 2)]
    np.testing.assert_array_equal(replay[0], first)
    np.testing.assert_array_equal(replay[1], second)
    other = np.concatenate(_grouped_passes(grouped, 1, seed=12)[0])
    assert not np.array_equal(other, first)
    keys = grouped[IMPRESSION_KEY]
    assert not np.array_equal(keys[first], np.sort(keys[first]))  # impressions are shuffled, not sorted


def test_grouping_keeps_the_array_order_without_shuffle(grouped):
    batches = make_dataset(grouped, 50, group_key=IMPRESSION_KEY)
    np.testing.assert_array_equal(_rows(batches), np.arange(len(grouped["row"])))
