"""Flatten a Keras 3 functional or Sequential model into an ordered list of calls.

Nested models are inlined: a call of an inner functional model becomes the calls of
its own layers, in a scope named after the inner model. The analysis and the surgery
both walk this one flat list, so they always agree on what the graph is.
"""

import collections
import contextlib
import dataclasses
import functools
import sys

import keras

__all__ = ["Call", "Trace", "has_graph", "trace_model", "replay"]


@dataclasses.dataclass(frozen=True)
class Call:
    """One call of an operation: which tensors went in and which came out.

    Tensor keys are `(scope, id(keras_tensor))` pairs, already resolved through the
    aliases that connect nested models to their callers.
    """

    op: object
    node: object
    scope: tuple
    inputs: tuple
    outputs: tuple

    @property
    def path(self):
        """The operation's name prefixed by the nested models it lives in."""
        return "/".join([*self.scope, self.op.name])


class Trace:
    """The flat call list of a model, plus the shapes of every tensor in it."""

    def __init__(self, model):
        functional = _as_functional(model)
        if functional is None:
            raise TypeError(
                "keras_prune analyses functional and Sequential models built on a "
                "known input shape (subclassed models have no graph to read). Build "
                "a Sequential model with `keras.Input(shape)` as its first layer, or "
                f"wrap the model in a functional one. Received: model={model!r}"
            )
        self.model = model
        self.calls = []
        self.shapes = {}
        self._alias = {}
        self.inputs = [self._key((), t) for t in functional._inputs]
        for t in functional._inputs:
            self.shapes[self._key((), t)] = tuple(t.shape)
        self._walk(functional, ())
        self.outputs = [self._key((), t) for t in functional._outputs]
        self.inputs_struct = functional._inputs_struct
        self.outputs_struct = functional._outputs_struct
        self.input_tensors = list(functional._inputs)

    @functools.cached_property
    def made_by(self):
        """`{tensor key: the call that makes it}`."""
        return {key: call for call in self.calls for key in call.outputs}

    @functools.cached_property
    def uses(self):
        """`{tensor key: how many calls read it}`, a model output counting as one more use (a rewrite
        of the tensor, such as folding a scale into its producer, would change what the model returns)."""
        uses = collections.Counter(key for call in self.calls for key in call.inputs)
        uses.update(self.outputs)
        return uses

    @functools.cached_property
    def calls_per_op(self):
        """`{id(op): how many times the op is called}` (a shared layer is called more than once)."""
        return collections.Counter(id(call.op) for call in self.calls)

    def _key(self, scope, tensor):
        key = (scope, id(tensor))
        while key in self._alias:
            key = self._alias[key]
        return key

    def _walk(self, functional, scope):
        for depth in sorted(functional._nodes_by_depth, reverse=True):
            for node in functional._nodes_by_depth[depth]:
                if node.operation is None or node.is_input:
                    continue
                inner = _as_functional(node.operation)
                if inner is not None and len(inner._inputs) == len(node.input_tensors):
                    self._inline(node, inner, scope)
                    continue
                inputs = tuple(self._key(scope, t) for t in node.input_tensors)
                outputs = tuple(self._key(scope, t) for t in node.outputs)
                for key, shape in zip(outputs, self._output_shapes(node, inputs)):
                    self.shapes[key] = shape
                self.calls.append(Call(node.operation, node, scope, inputs, outputs))

    def _output_shapes(self, node, inputs):
        """The shapes of `node`'s outputs in this model.

        A nested model built on a dynamic input shape (`MobileNetV2(include_top=False)`
        with no input shape, called on a fixed-size input) recorded None where its caller
        gives sizes; the FLOPs and the rules need those sizes, so the outputs of a call
        whose inputs are more specific here than when it was built are worked out again.
        """
        recorded = [tuple(t.shape) for t in node.outputs]
        here = [self.shapes.get(k, tuple(t.shape)) for k, t in zip(inputs, node.input_tensors)]
        built = [tuple(t.shape) for t in node.input_tensors]
        if here == built or not all(_refines(h, b) for h, b in zip(here, built)):
            return recorded
        fill = {id(t): keras.KerasTensor(shape, dtype=t.dtype) for t, shape in zip(node.input_tensors, here)}
        args, kwargs = node.arguments.fill_in(fill)
        try:
            spec = node.operation.compute_output_spec(*args, **kwargs)
        except Exception:  # noqa: BLE001 - any op's own failure: the recorded shapes stay (less specific, not wrong)
            return recorded
        shapes = [tuple(t.shape) for t in keras.tree.flatten(spec)]
        return shapes if len(shapes) == len(recorded) else recorded

    def _inline(self, node, inner, scope):
        index = node.operation._inbound_nodes.index(node)
        inner_scope = (*scope, node.operation.name + (f"@{index}" if index else ""))
        for outer, inner_input in zip(node.input_tensors, inner._inputs):
            self._alias[(inner_scope, id(inner_input))] = self._key(scope, outer)
        self._walk(inner, inner_scope)
        for outer, inner_output in zip(node.outputs, inner._outputs):
            self._alias[(scope, id(outer))] = self._key(inner_scope, inner_output)


def _refines(shape, built):
    """Whether `shape` is `built` with some of its None sizes known."""
    return len(shape) == len(built) and all(b is None or s == b for s, b in zip(shape, built))


def _as_functional(op):
    """The functional graph behind `op`, or None if it has none to read."""
    if isinstance(op, keras.Sequential):
        return getattr(op, "_functional", None)
    if isinstance(op, keras.Model) and hasattr(op, "_nodes_by_depth"):
        return op
    return None


def has_graph(model):
    """Whether keras_prune can read `model`'s layer graph (functional, or Sequential with an input)."""
    return _as_functional(model) is not None


def trace_model(model):
    """Returns the `Trace` of a functional or Sequential model."""
    return Trace(model)


def replay(trace, make_op, *, after_call=None, name=None):
    """Rebuilds a flat functional model by calling new operations in trace order.

    Args:
        trace: the `Trace` to rebuild.
        make_op: `fn(call) -> op` giving the operation to call for each call; it is
            asked once per call, so it must return the same object for a shared
            layer if the weights are to stay shared.
        after_call: optional `fn(call, outputs) -> outputs`, e.g. to insert a mask.
        name: name of the new model (defaults to the traced model's name).

    Returns:
        A new `keras.Model` with the same inputs and outputs structure.
    """
    tensors = {}
    new_inputs = []
    for key, old in zip(trace.inputs, trace.input_tensors):
        layer_name = old._keras_history.operation.name
        new = keras.Input(batch_shape=old.shape, dtype=old.dtype, name=layer_name)
        tensors[key] = new
        new_inputs.append(new)
    for call in trace.calls:
        fill = {id(t): tensors[k] for t, k in zip(call.node.input_tensors, call.inputs)}
        args, kwargs = call.node.arguments.fill_in(fill)
        outputs = keras.tree.flatten(make_op(call)(*args, **kwargs))
        if after_call is not None:
            outputs = list(after_call(call, outputs))
        for key, value in zip(call.outputs, outputs):
            tensors[key] = value
    outputs = [tensors[k] for k in trace.outputs]
    # Keras maps a functional graph recursively, one frame per layer on the longest path:
    # EfficientNetV2-L with a mask after every layer is deeper than Python's default limit.
    with _recursion_limit(4 * len(tensors) + 1000):
        return keras.Model(
            keras.tree.pack_sequence_as(trace.inputs_struct, new_inputs),
            keras.tree.pack_sequence_as(trace.outputs_struct, outputs),
            name=name or trace.model.name,
        )


@contextlib.contextmanager
def _recursion_limit(limit):
    """Raises Python's recursion limit to at least `limit` for the block."""
    previous = sys.getrecursionlimit()
    sys.setrecursionlimit(max(previous, limit))
    try:
        yield
    finally:
        sys.setrecursionlimit(previous)
