"""A small SavedModel shaped like GRec's serving interface, for the serving tests and benchmark.

Inputs (named, batch first): ``flow`` and ``use_case`` strings, ``item_id`` int64, ``price`` float32,
``viewed_items`` int64 [batch, L] (padded with 0), ``image_emb`` float32 [batch, 4].
Signatures: ``serving_default`` -> ``probability`` [batch]; ``score_all`` -> ``probabilities``
[batch, 3] and ``use_cases`` [batch, 3] (strings). ``bias`` differs between versions, so a test
can tell which version answered.
"""
import grec_tf  # noqa: F401
import numpy as np
import tensorflow as tf

USE_CASES = ("CTR", "ATC", "CVR")
HIDDEN = 64

_SPECS = {
    "flow": tf.TensorSpec([None], tf.string, name="flow"),
    "use_case": tf.TensorSpec([None], tf.string, name="use_case"),
    "item_id": tf.TensorSpec([None], tf.int64, name="item_id"),
    "price": tf.TensorSpec([None], tf.float32, name="price"),
    "viewed_items": tf.TensorSpec([None, None], tf.int64, name="viewed_items"),
    "image_emb": tf.TensorSpec([None, 4], tf.float32, name="image_emb"),
}


class ToyRanker(tf.Module):
    def __init__(self, bias: float = 0.0, seed: int = 0, hidden: int = HIDDEN, depth: int = 0):
        super().__init__()
        rng = np.random.default_rng(seed)
        self.w1 = tf.Variable(rng.normal(0, 0.3, (10, hidden)).astype(np.float32))
        self.deep = [tf.Variable(rng.normal(0, 1.0 / np.sqrt(hidden), (hidden, hidden)).astype(np.float32))
                     for _ in range(depth)]
        self.w2 = tf.Variable(rng.normal(0, 0.3, (hidden, len(USE_CASES))).astype(np.float32))
        self.bias = tf.Variable(np.float32(bias))
        self.use_case_names = tf.constant(USE_CASES)

    def _logits(self, flow, use_case, item_id, price, viewed_items, image_emb):
        h_flow = tf.cast(tf.strings.to_hash_bucket_fast(flow, 97), tf.float32) / 97.0
        h_uc = tf.cast(tf.strings.to_hash_bucket_fast(use_case, 89), tf.float32) / 89.0
        item = tf.cast(item_id % 1000, tf.float32) / 1000.0
        mask = tf.cast(viewed_items > 0, tf.float32)
        n_viewed = tf.reduce_sum(mask, axis=1)
        mean_viewed = tf.math.divide_no_nan(
            tf.reduce_sum(tf.cast(viewed_items % 100, tf.float32) * mask, axis=1), n_viewed) / 100.0
        x = tf.concat([tf.stack([h_flow, h_uc, item, tf.math.log1p(tf.abs(price)), n_viewed / 10.0,
                                 mean_viewed], axis=1),
                       image_emb], axis=1)
        h = tf.nn.relu(tf.matmul(x, self.w1))
        for w in self.deep:  # optional extra layers make the model as costly as a real ranker
            h = h + tf.nn.relu(tf.matmul(h, w))
        return tf.matmul(h, self.w2) + self.bias

    @tf.function(input_signature=[_SPECS])
    def serving_default(self, features):
        logits = self._logits(**features)
        uc = tf.strings.to_hash_bucket_fast(features["use_case"], len(USE_CASES))
        chosen = tf.gather(logits, uc, batch_dims=1)
        return {"probability": tf.sigmoid(chosen)}

    @tf.function(input_signature=[_SPECS])
    def score_all(self, features):
        logits = self._logits(**features)
        batch = tf.shape(logits)[0]
        names = tf.tile(self.use_case_names[tf.newaxis, :], [batch, 1])
        return {"probabilities": tf.sigmoid(logits), "use_cases": names}


def _unpack(fn):
    # Signatures with named top-level inputs: wrap the dict-taking function in a keyword one.
    @tf.function(input_signature=list(_SPECS.values()))
    def sig(flow, use_case, item_id, price, viewed_items, image_emb):
        return fn(dict(flow=flow, use_case=use_case, item_id=item_id, price=price,
                       viewed_items=viewed_items, image_emb=image_emb))
    return sig


def save_toy_model(path: str, bias: float = 0.0, hidden: int = HIDDEN, depth: int = 0) -> None:
    """Write the toy SavedModel to ``path`` (usable as a ``save_fn``); ``hidden``/``depth`` set its cost."""
    module = ToyRanker(bias=bias, hidden=hidden, depth=depth)
    signatures = {"serving_default": _unpack(module.serving_default).get_concrete_function(),
                  "score_all": _unpack(module.score_all).get_concrete_function()}
    tf.saved_model.save(module, path, signatures=signatures)


def make_batch(n: int, seed: int = 0, seq_len: int = 5) -> dict:
    """``n`` rows of raw inputs in columnar form (numpy arrays keyed by input name)."""
    rng = np.random.default_rng(seed)
    viewed = rng.integers(1, 5000, size=(n, seq_len)).astype(np.int64)
    lengths = rng.integers(0, seq_len + 1, size=n)
    viewed[np.arange(seq_len)[None, :] >= lengths[:, None]] = 0  # padding
    return {
        "flow": np.array(rng.choice(["AAL", "EUP", "NSE"], size=n)).astype(object),
        "use_case": np.array(rng.choice(list(USE_CASES), size=n)).astype(object),
        "item_id": rng.integers(0, 10 ** 6, size=n).astype(np.int64),
        "price": rng.uniform(0, 1500, size=n).astype(np.float32),
        "viewed_items": viewed,
        "image_emb": rng.normal(size=(n, 4)).astype(np.float32),
    }


def to_columnar_json(batch: dict) -> dict:
    return {k: v.tolist() for k, v in batch.items()}


def to_instances_json(batch: dict) -> list:
    cols = to_columnar_json(batch)
    n = len(next(iter(cols.values())))
    return [{k: cols[k][i] for k in cols} for i in range(n)]
