"""A loaded signature's graph function called with checked tensors, without TF's Python argument binding.

Where it sits: :meth:`grec_tf.serving.model_registry.Signature.predict` calls it for every request of both
APIs, once the REST or gRPC decoder has turned the request into tensors; anything it does not take (a
feed of another dtype or shape, a missing or extra input, a function it cannot call flat) goes the public
way, ``fn(**tensors)``, which also words the error.

Why: ``fn(**tensors)`` on a loaded signature binds the keywords to the function type, casts every tensor
to its ``TensorSpec`` and resolves the captured variables in Python, holding the GIL, before TensorFlow
runs the graph. On the telecom model's 20 inputs that is 0.85 ms of the calling thread's CPU a call
against 0.38 ms for this call, single-threaded, and the server's event loop and other workers wait for
that GIL. In A/B runs of two servers (interleaved rounds of 3 s, 4 callers, 256 rows) it took REST columnar
from 0.893x to 0.907x the in-process throughput over 8 rounds and from 0.898x to 0.925x over 10 (median rate
per path), paired gains per round of 0.021 and 0.032 (3.4 and 5.3 standard errors).

What it relies on: ``ConcreteFunction._inference_function.call_preflattened`` and ``captured_inputs``,
the same calls ``fn(**tensors)`` ends in when no gradient tape watches (TF 2.21, as setup.py pins). They
are private, so :meth:`FlatSignatureCall.of` takes only the plain case - keyword-only tensor inputs,
captures that are tensors already, the graph's arity equal to inputs plus captures - and returns None
otherwise. A feed whose shape does not fit the traced one goes the public way too, so such a request is
answered exactly as before. ``tests/serving/test_flat_signature_call.py`` holds the outputs
equal to the public call's.
"""
from typing import Any, Dict, List, Mapping, Optional, Tuple

import tensorflow as tf

from grec_tf.serving.request_codec import shape_fits

# (input name, dtype, dims: None for an unknown rank, else one int or None per axis)
_InputCheck = Tuple[str, tf.DType, Optional[Tuple[Optional[int], ...]]]


class FlatSignatureCall:
    """``call(tensors)`` -> the signature's outputs ``{name: tf.Tensor}``, or None when ``tensors`` is not
    exactly the signature's inputs with their dtypes and compatible shapes (``[batch, ...]`` as traced)."""

    def __init__(self, inference: Any, inputs: List[_InputCheck], captured: List[tf.Tensor]):
        self._inference = inference
        self._inputs = inputs
        self._captured = captured

    @classmethod
    def of(cls, fn: Any) -> Optional["FlatSignatureCall"]:
        """The flat call of a loaded signature ``fn``, or None when ``fn`` is not the plain case above."""
        try:
            positional, specs = fn.structured_input_signature
            parameters = list(fn.function_type.parameters.values())
            inference = fn._inference_function
            deferred = any(callable(c) for c in fn._captured_inputs)  # re-read on every public call
            captured = list(fn.captured_inputs)
            arity = len(inference.cached_definition.signature.input_arg)
        except (AttributeError, TypeError, ValueError):
            return None
        plain = (not positional and not deferred and arity == len(parameters) + len(captured)
                 and len(parameters) == len(specs) and all(isinstance(c, tf.Tensor) for c in captured)
                 and all(p.kind == p.KEYWORD_ONLY and isinstance(specs.get(p.name), tf.TensorSpec)
                         and p.type_constraint == specs[p.name] for p in parameters))
        if not plain:
            return None
        inputs = [(p.name, specs[p.name].dtype,
                   None if specs[p.name].shape.rank is None else tuple(specs[p.name].shape.as_list()))
                  for p in parameters]
        return cls(inference, inputs, captured)

    def __call__(self, tensors: Mapping[str, Any]) -> Optional[Dict[str, tf.Tensor]]:
        if len(tensors) != len(self._inputs):
            return None
        args = []
        for name, dtype, dims in self._inputs:
            tensor = tensors.get(name)
            if not isinstance(tensor, tf.Tensor) or tensor.dtype != dtype or not shape_fits(tensor.shape, dims):
                return None
            args.append(tensor)
        return self._inference.call_preflattened(args + self._captured)
