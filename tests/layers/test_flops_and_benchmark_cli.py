"""count_flops (Einsum registered, data-dependent shapes resolved) and the benchmark CLI/report."""
import grec_tf  # noqa: F401
import numpy as np
import pytest
import tensorflow as tf

from grec_tf.layers import FeedForwardExperts, SparseMoE, make_router
from grec_tf.profiling import count_flops, count_flops_by_scope
from pipelines import benchmark


def test_einsum_is_priced_like_matmul():
    w = tf.Variable(tf.random.normal([64, 32]))

    @tf.function
    def by_einsum(x):
        return tf.einsum("bld,df->blf", x, w)

    @tf.function
    def by_matmul(x):
        return tf.matmul(tf.reshape(x, [-1, 64]), w)

    expected = 2 * 8 * 5 * 64 * 32
    assert count_flops(by_einsum, tf.TensorSpec([8, 5, 64])) == expected
    assert count_flops(by_matmul, tf.random.normal([8, 5, 64])) == expected + 0  # reshape is free
    # Broadcast batch dims (ellipsis) and batched einsum.
    v = tf.Variable(tf.random.normal([3, 16, 4]))

    @tf.function
    def batched(x):
        return tf.einsum("...nd,edf->...enf", x, v)

    assert count_flops(batched, tf.TensorSpec([2, 7, 16])) == 2 * 2 * 3 * 7 * 16 * 4


def test_flops_by_scope_split_the_total_by_name_scope():
    w1, w2 = tf.Variable(tf.random.normal([16, 8])), tf.Variable(tf.random.normal([8, 4]))

    @tf.function
    def two_layers(x):
        with tf.name_scope("first"):
            h = tf.matmul(x, w1)
        with tf.name_scope("second"):
            return tf.matmul(h, w2)

    counts = count_flops_by_scope(two_layers, tf.TensorSpec([10, 16]), scopes=("first", "second", "absent"))
    assert counts == {"total": 2 * 10 * 16 * 8 + 2 * 10 * 8 * 4, "first": 2 * 10 * 16 * 8,
                      "second": 2 * 10 * 8 * 4, "absent": 0}


def _moe_flops(routing, experts, top_k, x, flow, use_case):
    router = make_router(routing, num_experts=experts, top_k=top_k, num_flows=2, num_use_cases=3,
                         load_balance_weight=0.0, z_loss_weight=0.0)
    layer = SparseMoE(FeedForwardExperts(experts, 64), router)
    layer(x, flow, use_case)
    return count_flops(tf.function(lambda a, b, c: layer(a, b, c)), x, flow, use_case)


@pytest.mark.parametrize("routing", ["token", "task_sentence"])
def test_moe_flops_follow_k_not_e(routing):
    rng = np.random.default_rng(0)
    x = tf.constant(rng.standard_normal((32, 2, 32)), tf.float32)
    flow = tf.constant(rng.integers(0, 2, 32), tf.int32)
    use_case = tf.constant(rng.integers(0, 3, 32), tf.int32)
    expert_matmuls = 2 * 2 * 32 * 2 * 32 * 64  # 2 matmuls x 2 flops x tokens x D x F, per selected expert
    small = _moe_flops(routing, 4, 2, x, flow, use_case)
    wide = _moe_flops(routing, 16, 2, x, flow, use_case)
    assert 2 * expert_matmuls <= small < 1.3 * 2 * expert_matmuls  # data-dependent shapes were resolved
    assert abs(wide - small) / small < 0.1
    assert _moe_flops(routing, 4, 4, x, flow, use_case) > 1.8 * small


def test_benchmark_cli_unknown_name_lists_names(capsys):
    with pytest.raises(SystemExit):
        benchmark.main(["no_such_benchmark"])
    err = capsys.readouterr().err
    assert "unknown benchmark 'no_such_benchmark'" in err and "layers" in err
    with pytest.raises(ValueError, match="available: experts, input_pipeline, layers, quality, routing, scale, scaling, serving, tasks, throughput$"):
        benchmark.resolve("nope")
    assert callable(benchmark.resolve("layers"))


def test_layers_report_renders_targets():
    from grec_tf.benchmarks.layers import render_markdown
    moe = {r: {k: {"ms": 10.0, "gflops": 1.0} for k in ("2", "4")}
           for r in ("token", "sentence", "task", "task_sentence")}
    moe["dense"] = {k: {"ms": 40.0, "gflops": 4.0} for k in ("2", "4")}
    targets = {f"moe {r} k={k} ms <= 1.2 x (k/E) x dense ms": {"value": 1.0, "limit": 1.2,
                                                                "ratio_to_flop_proportional": 1.0, "pass": True}
               for r in ("token", "task") for k in ("2", "4")}
    results = {"moe": moe, "attention": {"mqa_ms": 5.0, "mha_ms": 10.0, "mqa_gflops": 1.0, "mha_gflops": 2.0},
               "flops_e8_vs_e32": {"task": {"e8_gflops": 1.0, "e32_gflops": 1.01, "growth": 0.01}},
               "targets": targets, "all_targets_pass": True,
               "workload": {"rows": 2048, "row": "token", "examples": 512, "tokens_per_example": 4, "D": 256,
                            "F": 1024, "E": 8, "distinct_task_sentences_in_batch": 12, "step": "fwd+bwd",
                            "timing": "median", "policy": "float32", "gflops": "per step",
                            "attention": {"batch": 2048, "length": 16, "heads": 8, "key_dim": 32}},
               "machine": {"cpu": "cpu", "cores": 2, "tensorflow": tf.__version__}}
    text = render_markdown(results)
    assert "| task | 4 |" in text and "MQA / MHA = 0.50" in text and "All targets pass: **yes**" in text


def test_batch_matmul_gradients_priced_with_adjoint():
    """TF's own BatchMatMulV2 statistic ignores adj_x (weight gradients mispriced); ours must not."""
    w = tf.Variable(tf.random.normal([3, 16, 8]))

    @tf.function
    def forward_backward(x):
        with tf.GradientTape() as tape:
            y = tf.matmul(x, w)  # [3, 40, 16] x [3, 16, 8]
        return y, tape.gradient(y, w)  # grad = matmul(x, dy, adjoint_a=True): contracts over the 40 rows

    forward = 2 * 3 * 40 * 16 * 8
    assert count_flops(forward_backward, tf.TensorSpec([3, 40, 16])) == 2 * forward


def test_model_flops_price_each_row_s_own_tower_as_the_model_runs_it():
    """GRec with one tower per task sentence instead of per use case: more towers, the same work per row (the model
    runs each row's own tower only), so the priced FLOPs per example differ only by the tower index arithmetic (a
    multiply and an add per row); pricing every tower would add (T' - T) towers' FLOPs per example."""
    from grec_tf.benchmarks.forward_flops import model_flops
    from grec_tf.data.dataset import as_tensors
    from grec_tf.data.feature_arrays import frame_to_arrays
    from grec_tf.data.feature_statistics import compute_feature_statistics
    from grec_tf.experiment import Experiment
    from tests.tiny_experiment import tiny_config, tiny_frame

    frame = tiny_frame(64, seed=2)
    flops, towers = {}, {}
    for key in ("use_case", "task_sentence"):
        config = tiny_config(type="grec", towers=key)
        model = Experiment(config, statistics=compute_feature_statistics(frame, config)).build_model()
        flops[key] = model_flops(model, as_tensors(frame_to_arrays(frame, config, with_labels=False)))["total"]
        towers[key] = model.towers
    widths = [config.model.d_model, *config.model.tower_units, 1]  # GRec's representation [B, D] -> towers -> logit
    one_tower = 2 * sum(a * b for a, b in zip(widths, widths[1:]))  # multiply-adds of one tower per row
    assert towers["task_sentence"].num_towers > towers["use_case"].num_towers
    assert flops["use_case"] > 0
    assert abs(flops["task_sentence"] - flops["use_case"]) <= 2
    assert (towers["task_sentence"].num_towers - towers["use_case"].num_towers) * one_tower > 100 * 2


def test_model_flops_shared_prices_the_mixer_s_shared_work_once_per_impression():
    """``shared=True`` on a batch with impression keys: the four encoded tokens' input projection and MLP branch are
    priced once per impression, so the FLOPs per row drop by about (rows - impressions) x 4 tokens x their matmuls."""
    import numpy as np

    from grec_tf.benchmarks.forward_flops import model_flops
    from grec_tf.data.dataset import as_tensors
    from grec_tf.data.feature_arrays import IMPRESSION_KEY, frame_to_arrays
    from grec_tf.data.feature_statistics import compute_feature_statistics
    from grec_tf.experiment import Experiment
    from tests.tiny_experiment import tiny_config, tiny_impression_frame

    frame = tiny_impression_frame(48, seed=3)
    config = tiny_config(type="grec")
    model = Experiment(config, statistics=compute_feature_statistics(frame, config)).build_model()
    batch = {k: v for k, v in as_tensors(frame_to_arrays(frame, config)).items() if k != "label"}
    rows, impressions = len(frame), len(np.unique(batch[IMPRESSION_KEY].numpy()))
    dense, shared = model_flops(model, batch)["total"], model_flops(model, batch, shared=True)["total"]
    m = config.model
    h, d, f = m.num_heads, max(m.d_model // m.num_heads, 8), 2 * m.d_model
    per_token = 2 * m.d_model * (h * d + 2 * d + f) + 2 * f * m.d_model  # input projection + MLP output half
    expected = (rows - impressions) * 4 * per_token / rows
    assert impressions < rows
    assert 0.9 * expected <= dense - shared <= 1.2 * expected
    without_keys = {k: v for k, v in batch.items() if k != IMPRESSION_KEY}
    assert model_flops(model, without_keys, shared=True)["total"] == dense  # nothing shared: every row its own
