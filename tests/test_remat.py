"""Per-block activation rematerialisation (train.remat): same numbers, less memory held for the backward pass."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from audiorep.models import layers
from audiorep.models.ast import ASTConfig, ASTEncoder
from audiorep.models.beats import BEATS_TINY, BEATsEncoder


def _loss_and_grads(model: nnx.Module, feats: jax.Array, policy: str):
    """Training-mode loss and parameter gradients with every block rematerialised by `policy` (same dropout keys)."""
    layers.set_remat(model, policy)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    def loss(p):
        m = nnx.merge(graphdef, p, rest, copy=True)
        return jnp.mean(m(feats, deterministic=False).tokens ** 2)

    return jax.jit(jax.value_and_grad(loss))(params)


def _models():
    ast_cfg = ASTConfig(dim=32, depth=3, num_heads=4, num_frames=64, pos_grid=(8, 4), drop=0.1, drop_path=0.2,
                        mask_embed=False, pretrain_heads=False)
    yield "ssast", (lambda: ASTEncoder(ast_cfg, rngs=nnx.Rngs(0))), (2, 64, 128)
    beats_cfg = dataclasses.replace(BEATS_TINY, dropout=0.1, attention_dropout=0.1)  # gated relative position bias
    yield "beats", (lambda: BEATsEncoder(beats_cfg, rngs=nnx.Rngs(0))), (2, 64, 128)


@pytest.mark.parametrize("name,make,shape", list(_models()), ids=lambda v: v if isinstance(v, str) else "")
@pytest.mark.parametrize("policy", ["dots", "full"])
def test_remat_gives_the_same_loss_and_gradients(name, make, shape, policy):
    feats = jax.random.normal(jax.random.key(1), shape)
    ref_loss, ref_grads = _loss_and_grads(make(), feats, "none")
    loss, grads = _loss_and_grads(make(), feats, policy)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-6)
    for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(ref_grads)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def _temp_bytes(policy: str) -> int:
    cfg = ASTConfig(dim=64, depth=6, num_heads=4, num_frames=256, pos_grid=(8, 16), mask_embed=False,
                    pretrain_heads=False)
    model = layers.set_remat(ASTEncoder(cfg, rngs=nnx.Rngs(0)), policy)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    feats = jax.ShapeDtypeStruct((8, 256, 128), jnp.float32)

    def loss(p, x):
        return jnp.mean(nnx.merge(graphdef, p, rest, copy=True)(x).tokens ** 2)

    compiled = jax.jit(jax.grad(loss)).lower(params, feats).compile()
    return int(compiled.memory_analysis().temp_size_in_bytes)


def test_remat_lowers_the_memory_the_backward_pass_holds():
    none, dots, full = (_temp_bytes(p) for p in ("none", "dots", "full"))
    assert full < dots < none, (none, dots, full)
    assert full < 0.6 * none, (none, full)


def test_unknown_remat_policy_is_refused():
    model = ASTEncoder(ASTConfig(dim=32, depth=1, num_heads=4, num_frames=64, pos_grid=(8, 4)), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="'dots', 'full'"):
        layers.set_remat(model, "everything")
