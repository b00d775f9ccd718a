"""An encoder's forward pass under jit for the encoder tests: one compile per model shape and set of inputs."""

import functools

import jax
import jax.numpy as jnp
from flax import nnx


@functools.partial(jax.jit, static_argnums=(0,), static_argnames=("return_hidden",))
def _forward(graph, state, x, return_hidden=False, **inputs):
    return nnx.merge(graph, state)(x, return_hidden=return_hidden, **inputs)


def run(m: nnx.Module, x, **kw):
    """`m(x, **kw)` under jit (kw: the encoder's array inputs, e.g. mask / keep / time_offset, and return_hidden)."""
    graph, state = nnx.split(m)
    return _forward(graph, state, jnp.asarray(x), **kw)
