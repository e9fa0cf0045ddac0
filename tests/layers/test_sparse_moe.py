"""SparseMoE: exactness against the dense reference, routing properties, capacity, aux losses, jitter, dtypes."""
import grec_tf  # noqa: F401
import numpy as np
import pytest
import tensorflow as tf

from grec_tf.layers import (ROUTERS, FeedForwardExperts, SentenceRouter, SparseMoE, TaskRouter, TaskSentenceRouter,
                            TokenRouter, dense_moe_reference, make_router)

B, S, D, F, E = 24, 3, 16, 32, 6
FLOWS, USE_CASES = 3, 4
ROUTINGS = tuple(ROUTERS)  # the built-in routers (collected before any test registers a toy one)


def _inputs(seed=0, batch=B):
    rng = np.random.default_rng(seed)
    x = tf.constant(rng.standard_normal((batch, S, D)), tf.float32)
    flow = tf.constant(rng.integers(0, FLOWS, batch), tf.int32)
    use_case = tf.constant(rng.integers(0, USE_CASES, batch), tf.int32)
    return x, flow, use_case


def _moe(routing, top_k=2, capacity_factor=0.0, num_experts=E, **router_kwargs):
    router = make_router(routing, num_experts=num_experts, top_k=top_k, num_flows=FLOWS, num_use_cases=USE_CASES,
                         **router_kwargs)
    return SparseMoE(FeedForwardExperts(num_experts, F), router, capacity_factor=capacity_factor)


def _layer(routing, top_k=2, x=None, **kwargs):
    tf.random.set_seed(1)
    layer = _moe(routing, top_k, **kwargs)
    x, flow, use_case = _inputs() if x is None else x
    layer(x, flow, use_case)
    return layer


def _np_top_k_weights(logits, k):
    """[U, E] logits -> [U, E] renormalized top-k softmax weights (numpy, independent of the layer)."""
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    order = np.argsort(-probs, axis=-1, kind="stable")[:, :k]
    weights = np.zeros_like(probs)
    np.put_along_axis(weights, order, np.take_along_axis(probs, order, -1), -1)
    return probs, order, weights / weights.sum(-1, keepdims=True)


@pytest.mark.parametrize("routing", ROUTINGS)
@pytest.mark.parametrize("top_k", [1, 2, 4])
def test_equals_dense_top_k_reference(routing, top_k):
    x, flow, use_case = _inputs()
    layer = _layer(routing, top_k)
    expected = dense_moe_reference(layer, x, flow, use_case, mask_to_top_k=True)
    np.testing.assert_allclose(layer(x, flow, use_case).numpy(), expected.numpy(), atol=1e-5, rtol=1e-5)
    graph_fn = tf.function(lambda a, b, c: layer(a, b, c), input_signature=[
        tf.TensorSpec([None, None, D]), tf.TensorSpec([None], tf.int32), tf.TensorSpec([None], tf.int32)])
    np.testing.assert_allclose(graph_fn(x, flow, use_case).numpy(), expected.numpy(), atol=1e-5, rtol=1e-5)
    # The MoE actually contributes (the residual alone would also "match" a broken reference).
    assert np.abs(expected.numpy() - x.numpy()).mean() > 1e-2


@pytest.mark.parametrize("routing", ROUTINGS)
def test_gradients_reach_gate_and_experts_and_match_reference(routing):
    x, flow, use_case = _inputs()
    layer = _layer(routing, 2, load_balance_weight=0.0, z_loss_weight=0.0)
    target = tf.constant(np.random.default_rng(5).standard_normal((B, S, D)), tf.float32)

    def grads(fn):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(fn() * target)
        return tape.gradient(loss, layer.trainable_variables)

    sparse = grads(lambda: layer(x, flow, use_case))
    dense = grads(lambda: dense_moe_reference(layer, x, flow, use_case))
    names = [v.name for v in layer.trainable_variables]
    gate_names = [n for n in names if any(p in n for p in ("router", "embedding"))]
    assert any("router" in n for n in gate_names)
    for name, g_sparse, g_dense in zip(names, sparse, dense):
        assert g_sparse is not None, f"no gradient for {name}"
        g_sparse, g_dense = tf.convert_to_tensor(g_sparse).numpy(), tf.convert_to_tensor(g_dense).numpy()
        np.testing.assert_allclose(g_sparse, g_dense, atol=1e-4, rtol=1e-4, err_msg=name)
        if "experts/kernel" in name or name in gate_names:
            assert np.abs(g_sparse).sum() > 0, f"zero gradient for {name}"


def test_only_selected_experts_get_gradient():
    x, flow, use_case = _inputs()
    layer = _layer("task_sentence", 1, load_balance_weight=0.0, z_loss_weight=0.0)
    flow, use_case = tf.zeros_like(flow), tf.zeros_like(use_case)  # one route -> one expert
    with tf.GradientTape() as tape:
        y, dispatch = layer(x, flow, use_case, return_routing=True)
        loss = tf.reduce_sum(y)
    grad = tf.convert_to_tensor(tape.gradient(loss, layer.experts.kernel_in)).numpy()
    chosen = int(np.argmax(dispatch.numpy()[0]))
    touched = np.abs(grad).reshape(E, -1).sum(-1) > 0
    assert touched.tolist() == [e == chosen for e in range(E)]


@pytest.mark.parametrize("routing", ["task", "task_sentence"])
def test_task_routes_shared_by_pair_and_independent_of_features(routing):
    x, flow, use_case = _inputs()
    layer = _layer(routing, 2)
    _, dispatch = layer(x, flow, use_case, return_routing=True)
    x_other = tf.random.normal(x.shape, seed=9) * 10.0
    _, dispatch_other = layer(x_other, flow, use_case, return_routing=True)
    np.testing.assert_array_equal(dispatch.numpy(), dispatch_other.numpy())
    dispatch = dispatch.numpy()
    pairs = list(zip(flow.numpy(), use_case.numpy()))
    for pair in set(pairs):
        rows = [i for i, p in enumerate(pairs) if p == pair]
        for i in rows:
            np.testing.assert_array_equal(dispatch[i], dispatch[rows[0]])
        assert dispatch[rows[0]].sum() == 2 and set(np.unique(dispatch[rows[0]])) <= {0.0, 1.0}
    # Gates too: rows of a pair with identical features come out identical.
    same = tf.repeat(x[:1], B, axis=0)
    y = layer(same, flow, use_case).numpy()
    for pair in set(pairs):
        rows = [i for i, p in enumerate(pairs) if p == pair]
        np.testing.assert_allclose(y[rows], np.repeat(y[rows[:1]], len(rows), 0), atol=1e-6)


def test_unseen_task_sentence_gets_deterministic_route_from_eq8():
    tf.random.set_seed(3)
    x, flow, use_case = _inputs(batch=64)
    seen = ~((flow.numpy() == 2) & (use_case.numpy() == 3))  # hold out the pair (2, 3)
    x_train, f_train, u_train = (tf.boolean_mask(t, seen) for t in (x, flow, use_case))
    layer = _moe("task_sentence", 2, jitter=0.1)
    optimizer = tf.keras.optimizers.SGD(0.5)
    layer(x_train, f_train, u_train)
    before = layer.router.flow_embedding.numpy().copy()
    for _ in range(3):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(layer(x_train, f_train, u_train, training=True) - 1.0))
            loss += tf.add_n(layer.losses)
        variables = layer.trainable_variables
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
    assert not np.allclose(before, layer.router.flow_embedding.numpy())  # training moved the routes
    unseen_flow, unseen_uc = tf.constant([2, 2]), tf.constant([3, 3])
    x_new = tf.random.normal((2, S, D))
    _, first = layer(x_new, unseen_flow, unseen_uc, return_routing=True)
    _, second = layer(x_new * 3.0, unseen_flow, unseen_uc, return_routing=True)
    np.testing.assert_array_equal(first.numpy(), second.numpy())
    gate_input = 0.5 * (layer.router.flow_embedding.numpy()[2] + layer.router.use_case_embedding.numpy()[3])
    logits = gate_input @ layer.router.kernel.numpy()
    _, order, _ = _np_top_k_weights(logits[None], 2)
    expected = np.zeros(E)
    expected[order[0]] = 1.0
    np.testing.assert_array_equal(first.numpy()[0], expected)


def _np_capacity_keep(order, capacity):
    """Slot-major, then unit order: assignment (u, j) kept iff fewer than `capacity` earlier ones chose it."""
    units, k = order.shape
    used = np.zeros(E, int)
    keep = np.zeros((units, k), bool)
    for j in range(k):
        for u in range(units):
            e = order[u, j]
            keep[u, j] = used[e] < capacity
            used[e] += 1
    return keep


@pytest.mark.parametrize("routing", ["token", "sentence"])
@pytest.mark.parametrize("top_k", [1, 2])
def test_capacity_overflow_passes_through_residual(routing, top_k):
    x, flow, use_case = _inputs()
    # Bias the router so most units pick the same experts: capacity binds.
    layer = _layer(routing, top_k, capacity_factor=0.5)
    kernel = layer.router.kernel.numpy()
    kernel[:, 0] += 2.0 * np.abs(kernel).max()
    layer.router.kernel.assign(kernel)
    x = tf.abs(x)
    y, dispatch = layer(x, flow, use_case, return_routing=True)
    y, dispatch = y.numpy(), dispatch.numpy()
    units = B * S if routing == "token" else B
    capacity = int(np.ceil(0.5 * units * top_k / E))
    xf = x.numpy().reshape(units, -1) if routing == "token" else x.numpy().reshape(B, -1)
    gate_in = xf if routing == "token" else x.numpy().mean(1)
    _, order, weights = _np_top_k_weights(gate_in @ layer.router.kernel.numpy(), top_k)
    keep = _np_capacity_keep(order, capacity)
    assert 0 < keep.sum() < keep.size, "capacity must bind for this test"
    reference = dense_moe_reference(layer, x, flow, use_case).numpy().reshape(units, -1)
    y_units = y.reshape(units, -1)
    dropped = ~keep.any(1)
    full = keep.all(1)
    assert dropped.any() and full.any()
    np.testing.assert_allclose(y_units[dropped], xf[dropped], atol=0)
    np.testing.assert_allclose(y_units[full], reference[full], atol=1e-5, rtol=1e-5)
    # Partially kept units get exactly their kept experts' weighted outputs.
    expected_dispatch = np.zeros((units, E))
    for u in range(units):
        expected_dispatch[u, order[u][keep[u]]] = 1.0
    if routing == "token":
        expected_dispatch = expected_dispatch.reshape(B, S, E).mean(1)
    np.testing.assert_allclose(dispatch, expected_dispatch, atol=1e-6)
    assert np.bincount(order[keep], minlength=E).max() <= capacity


def test_capacity_that_does_not_bind_changes_nothing():
    x, flow, use_case = _inputs()
    free = _layer("token", 2)
    capped = _layer("token", 2, capacity_factor=float(E))  # capacity = all assignments
    capped.set_weights(free.get_weights())
    np.testing.assert_allclose(capped(x).numpy(), free(x).numpy(), atol=1e-6)


def test_aux_losses_equal_formulas_on_hand_example():
    # 4 tokens, 4 experts, k=2, width 2: router logits = x @ W chosen by hand.
    layer = SparseMoE(FeedForwardExperts(4, 8), TokenRouter(4, 2, load_balance_weight=1.0, z_loss_weight=1.0))
    x = tf.constant([[[1.0, 0.0], [0.0, 1.0]], [[1.0, 1.0], [2.0, -1.0]]])  # [B=2, S=2, D=2]
    layer(x)
    w = np.array([[1.0, 0.0, -1.0, 0.5], [0.0, 2.0, 0.0, -0.5]], np.float32)
    layer.router.kernel.assign(w)
    layer(x)
    lb, z = [float(v) for v in layer.losses]
    logits = x.numpy().reshape(4, 2) @ w
    # by hand: logits rows [1,0,-1,.5], [0,2,0,-.5], [1,2,-1,0], [2,-2,-2,1.5]
    np.testing.assert_allclose(logits, [[1, 0, -1, .5], [0, 2, 0, -.5], [1, 2, -1, 0], [2, -2, -2, 1.5]])
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    # top-2 per token: {0,3}, {1,0 or 2 -> tie: lower id 0}, {1,0}, {0,3}
    chosen = [[0, 3], [1, 0], [1, 0], [0, 3]]
    f = np.zeros(4)
    for c in chosen:
        f[c] += 1
    f /= 8.0  # fraction of the 8 assignments
    expected_lb = 4 * np.sum(f * probs.mean(0))
    expected_z = np.mean(np.log(np.exp(logits).sum(-1)) ** 2)
    np.testing.assert_allclose(lb, expected_lb, rtol=1e-5)
    np.testing.assert_allclose(z, expected_z, rtol=1e-5)
    # Weights multiply the losses.
    weighted = SparseMoE(FeedForwardExperts(4, 8), TokenRouter(4, 2, load_balance_weight=0.01, z_loss_weight=0.001))
    weighted(x)
    weighted.set_weights(layer.get_weights())
    weighted(x)
    np.testing.assert_allclose([float(v) for v in weighted.losses], [0.01 * expected_lb, 0.001 * expected_z],
                               rtol=1e-5)


@pytest.mark.parametrize("routing", ["task", "task_sentence"])
def test_task_aux_losses_are_per_row(routing):
    x, flow, use_case = _inputs()
    layer = _layer(routing, 2, load_balance_weight=1.0, z_loss_weight=1.0)
    layer(x, flow, use_case)
    lb, z = [float(v) for v in layer.losses]
    ids = flow.numpy() * USE_CASES + use_case.numpy()
    if routing == "task":
        gate_in = layer.router.task_embedding.numpy()[ids]
    else:
        gate_in = 0.5 * (layer.router.flow_embedding.numpy()[flow.numpy()]
                         + layer.router.use_case_embedding.numpy()[use_case.numpy()])
    logits = gate_in @ layer.router.kernel.numpy()  # one row per example
    probs, order, _ = _np_top_k_weights(logits, 2)
    f = np.bincount(order.ravel(), minlength=E) / order.size
    np.testing.assert_allclose(lb, E * np.sum(f * probs.mean(0)), rtol=1e-5)
    lse = np.log(np.exp(logits).sum(-1))
    np.testing.assert_allclose(z, np.mean(lse ** 2), rtol=1e-5)


@pytest.mark.parametrize("routing", ROUTINGS)
def test_jitter_only_in_training(routing):
    x, flow, use_case = _inputs()
    layer = _layer(routing, 2, jitter=0.5)
    infer_a, infer_b = layer(x, flow, use_case), layer(x, flow, use_case, training=False)
    np.testing.assert_array_equal(infer_a.numpy(), infer_b.numpy())
    np.testing.assert_allclose(infer_a.numpy(), dense_moe_reference(layer, x, flow, use_case).numpy(), atol=1e-5)
    train_a, train_b = layer(x, flow, use_case, training=True), layer(x, flow, use_case, training=True)
    assert not np.allclose(train_a.numpy(), train_b.numpy())
    # training as a tensor (Keras symbolic learning phase) works too, in a graph.
    fn = tf.function(lambda a, t: layer(a, flow, use_case, training=t))
    np.testing.assert_array_equal(fn(x, tf.constant(False)).numpy(), infer_a.numpy())


@pytest.mark.parametrize("routing", ROUTINGS)
def test_mixed_bfloat16(routing, mixed_bfloat16):
    x, flow, use_case = _inputs()
    layer = _layer(routing, 2)
    y, dispatch = layer(x, flow, use_case, return_routing=True)
    assert layer.compute_dtype == "bfloat16" and layer.experts.kernel_in.dtype == tf.float32
    assert y.dtype == tf.bfloat16 and dispatch.dtype == tf.float32
    assert all(loss.dtype == tf.float32 for loss in layer.losses)
    assert layer.router.compute_dtype == "float32"
    expected = dense_moe_reference(layer, tf.cast(x, tf.bfloat16), flow, use_case)
    np.testing.assert_allclose(tf.cast(y, tf.float32).numpy(), tf.cast(expected, tf.float32).numpy(),
                               atol=0.1, rtol=0.05)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.cast(layer(x, flow, use_case, training=True), tf.float32))
    grads = tape.gradient(loss, layer.trainable_variables)
    assert all(g is not None for g in grads)


def test_dispatch_fractions():
    x, flow, use_case = _inputs()
    for routing in ROUTINGS:
        _, dispatch = _layer(routing, 3)(x, flow, use_case, return_routing=True)
        assert dispatch.shape == (B, E)
        np.testing.assert_allclose(dispatch.numpy().sum(-1), 3.0, atol=1e-6)


@pytest.mark.parametrize("routing", ROUTINGS)
def test_each_expert_is_one_pair_of_matmuls_whatever_the_number_of_routes(routing):
    """Rows are dispatched by expert for every routing: the traced forward holds 2 matmuls per expert (in and
    out), however many task routes (flows x use cases) the router can produce."""
    x, flow, use_case = _inputs()

    def expert_matmuls(num_flows, num_use_cases):
        tf.random.set_seed(1)
        router = make_router(routing, num_experts=E, top_k=2, num_flows=num_flows, num_use_cases=num_use_cases)
        layer = SparseMoE(FeedForwardExperts(E, F), router)
        graph = tf.function(lambda a, b, c: layer(a, b, c)).get_concrete_function(x, flow, use_case).graph
        # An expert matmul's right operand is one expert's [D, F] or [F, D] kernel (the router's is [G, E]).
        return sum(op.type == "MatMul" and tuple(op.inputs[1].shape) in ((D, F), (F, D))
                   for op in graph.get_operations())

    assert expert_matmuls(FLOWS, USE_CASES) == expert_matmuls(3 * FLOWS, 2 * USE_CASES) == 2 * E


TASK_ROUTINGS = tuple(name for name in ROUTINGS if ROUTERS[name].routes_by_task)
FEW_FLOWS, FEW_USE_CASES = 2, 3  # 6 possible routes <= E: task routings run each route's experts fused


def _few_routes_layer(routing, top_k):
    tf.random.set_seed(1)
    router = make_router(routing, num_experts=E, top_k=top_k, num_flows=FEW_FLOWS, num_use_cases=FEW_USE_CASES,
                         load_balance_weight=0.0, z_loss_weight=0.0)
    return SparseMoE(FeedForwardExperts(E, F), router)


def _few_routes_inputs(one_route=False):
    x, flow, use_case = _inputs(seed=3)
    if one_route:  # R = 1: every partition but the first is empty
        return x, tf.ones_like(flow), tf.ones_like(use_case)
    return x, flow % FEW_FLOWS, use_case % FEW_USE_CASES


@pytest.mark.parametrize("routing", TASK_ROUTINGS)
@pytest.mark.parametrize("top_k", [1, 2, 4])
@pytest.mark.parametrize("one_route", [False, True])
def test_few_routes_fused_equal_dense_reference_with_dense_gradients(routing, top_k, one_route):
    """With at most E possible routes each route's k experts run as one fused expert: outputs and gradients equal
    the all-experts reference, and every expert weight's gradient is dense (Adam must not see per-route slices)."""
    x, flow, use_case = _few_routes_inputs(one_route)
    layer = _few_routes_layer(routing, top_k)
    layer(x, flow, use_case)
    assert layer.router.num_routes <= E
    expected = dense_moe_reference(layer, x, flow, use_case)
    graph_fn = tf.function(lambda a, b, c: layer(a, b, c), input_signature=[
        tf.TensorSpec([None, None, D]), tf.TensorSpec([None], tf.int32), tf.TensorSpec([None], tf.int32)])
    for fn in (layer, graph_fn):
        np.testing.assert_allclose(fn(x, flow, use_case).numpy(), expected.numpy(), atol=1e-5, rtol=1e-5)
    target = tf.constant(np.random.default_rng(5).standard_normal((B, S, D)), tf.float32)

    def grads(fn):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(fn() * target)
        return tape.gradient(loss, layer.trainable_variables)

    fused, dense = grads(lambda: layer(x, flow, use_case)), grads(lambda: dense_moe_reference(layer, x, flow, use_case))
    for variable, g_fused, g_dense in zip(layer.trainable_variables, fused, dense):
        if "experts" in variable.name:
            assert isinstance(g_fused, tf.Tensor), f"{variable.name}: {type(g_fused).__name__} gradient"
        np.testing.assert_allclose(tf.convert_to_tensor(g_fused).numpy(), tf.convert_to_tensor(g_dense).numpy(),
                                   atol=1e-4, rtol=1e-4, err_msg=variable.name)
    assert np.abs(tf.convert_to_tensor(fused[0]).numpy()).sum() > 0


@pytest.mark.parametrize("routing", TASK_ROUTINGS)
def test_few_routes_run_one_pair_of_fused_matmuls_per_route(routing):
    """With at most E possible routes the traced forward holds 2 matmuls per route, each over the route's k experts
    side by side ([D, k F] and [k F, D]), and no segment sum of expert outputs (only the route counts' [B] one)."""
    x, flow, use_case = _few_routes_inputs()
    top_k = 2
    layer = _few_routes_layer(routing, top_k)
    graph = tf.function(lambda a, b, c: layer(a, b, c)).get_concrete_function(x, flow, use_case).graph
    fused = sum(op.type == "MatMul" and tuple(op.inputs[1].shape) in ((D, top_k * F), (top_k * F, D))
                for op in graph.get_operations())
    assert fused == 2 * FEW_FLOWS * FEW_USE_CASES
    assert not any(op.type == "UnsortedSegmentSum" and op.inputs[0].shape.rank != 1 for op in graph.get_operations())


@pytest.mark.parametrize("routing", TASK_ROUTINGS)
def test_few_routes_fused_in_mixed_bfloat16(routing, mixed_bfloat16):
    x, flow, use_case = _few_routes_inputs()
    layer = _few_routes_layer(routing, 2)
    y = layer(x, flow, use_case)
    assert y.dtype == tf.bfloat16 and layer.experts.kernel_in.dtype == tf.float32
    expected = dense_moe_reference(layer, tf.cast(x, tf.bfloat16), flow, use_case)
    np.testing.assert_allclose(tf.cast(y, tf.float32).numpy(), tf.cast(expected, tf.float32).numpy(),
                               atol=0.1, rtol=0.05)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.cast(layer(x, flow, use_case, training=True), tf.float32))
    grads = tape.gradient(loss, layer.experts.trainable_variables)
    assert all(isinstance(g, tf.Tensor) and g.dtype == tf.float32 for g in grads)
    assert all(np.abs(g.numpy()).sum() > 0 for g in grads)
