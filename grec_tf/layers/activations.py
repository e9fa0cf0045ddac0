"""Activations whose gradient is cheaper written out than derived by autodiff (same forward values).

``tf.nn.gelu(x, approximate=False)`` is ``0.5 * x * erfc(-x / sqrt(2))``; autodiff of that composition emits a
chain of full-size element-wise ops (negations, an ``Exp``, several multiplies) per GELU. In GRec's training step
(token mixer, experts, towers, encoders) those ops cost as much as the matmuls they follow on CPU.
:func:`gelu_exact` has the same forward values, bit for bit, and one fused expression for its derivative.
"""
from typing import Callable, Union

import tensorflow as tf


@tf.custom_gradient
def _gelu_with_written_gradient(x: tf.Tensor):
    # Phi(x) = erfc(-x / sqrt(2)) / 2; x * -c is -x * c exactly (one op fewer), and x * (Phi(x)) is Keras's
    # 0.5 * x * erfc(...) exactly (halving is exact), so the forward stays bit for bit while the gradient reuses Phi
    cdf = 0.5 * tf.math.erfc(x * tf.cast(-0.7071067811865476, x.dtype))

    def grad(dy: tf.Tensor) -> tf.Tensor:
        density = tf.exp(tf.square(x) * tf.cast(-0.5, x.dtype)) * tf.cast(0.3989422804014327, x.dtype)  # phi(x)
        return dy * (cdf + x * density)

    return x * cdf, grad


@tf.keras.utils.register_keras_serializable(package="grec_tf")
def gelu_exact(x: tf.Tensor) -> tf.Tensor:
    """Exact GELU ``x * Phi(x)``, forward bit-identical to ``tf.nn.gelu(x, approximate=False)`` (Keras's "gelu"),
    with the derivative ``Phi(x) + x * phi(x)`` as one expression that reuses the forward's erfc. A plain
    function (registered, so a ``Dense(activation=gelu_exact)`` serializes as ``"grec_tf>gelu_exact"``)."""
    x = tf.convert_to_tensor(x)
    if x.dtype in _SLOW_ELEMENTWISE:
        return tf.cast(_gelu_with_written_gradient(tf.cast(x, tf.float32)), x.dtype)
    return _gelu_with_written_gradient(x)


# 16-bit dtypes computed in float32 (see the module doc).
_SLOW_ELEMENTWISE = (tf.bfloat16, tf.float16)

# Activation names whose cheap-gradient version replaces Keras's own (same forward values).
_CHEAP_GRADIENT = {"gelu": gelu_exact}


def activation_fn(activation: Union[str, Callable]) -> Callable[[tf.Tensor], tf.Tensor]:
    """The function of a Keras activation name (or callable), with the cheap-gradient version for "gelu".
    ValueError for an unknown name."""
    if isinstance(activation, str) and activation in _CHEAP_GRADIENT:
        return _CHEAP_GRADIENT[activation]
    return tf.keras.activations.get(activation)
