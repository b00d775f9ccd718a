"""PaSST encoder vs an independent PyTorch forward pass of the official model (tests/fixtures/make_passt_tiny.py).

The fixture is a tiny plain state dict with the official key names, converted by
`audiorep.models.convert.passt`; reference outputs (tokens, cls/dist, per-layer states, logits) come from torch
code written from the official `forward_features` / `forward`.
"""

from __future__ import annotations

import functools
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from audiorep.models.convert.common import load_checkpoint
from audiorep.models.convert.passt import encoder_from_state_dict

FIXTURES = Path(__file__).parent / "fixtures"
ATOL = 1e-5


@functools.partial(jax.jit, static_argnums=(0,))
def _forward(graph, state, x, keep=None, time_offset=None):
    model = nnx.merge(graph, state)
    out = model(x, keep=keep, time_offset=time_offset, return_hidden=True)
    return out, model.logits(out)


def run(m, x, keep=None, time_offset=None):
    graph, state = nnx.split(m)
    return _forward(graph, state, jnp.asarray(x), None if keep is None else jnp.asarray(keep, jnp.int32),
                    time_offset)


@pytest.fixture(scope="module")
def encoder():
    sd = load_checkpoint(FIXTURES / "passt_tiny.pt", reader="builtin")
    return encoder_from_state_dict(sd, num_heads=4, stride=6, num_mel_bins=32)[1]


@pytest.fixture(scope="module")
def ref() -> dict[str, np.ndarray]:
    with np.load(FIXTURES / "passt_tiny_ref.npz") as z:
        return dict(z)


def _check(res, ref: dict, case: str) -> None:
    out, logits = res
    assert out.grid == tuple(ref[f"{case}/grid"])
    np.testing.assert_allclose(np.asarray(out.tokens), ref[f"{case}/tokens"], atol=ATOL, rtol=0)
    np.testing.assert_allclose(np.asarray(out.cls), ref[f"{case}/cls"], atol=ATOL, rtol=0)
    np.testing.assert_allclose(np.asarray(logits), ref[f"{case}/logits"], atol=ATOL, rtol=0)


def test_full_input_matches_torch(encoder, ref):
    res = run(encoder, ref["full/features"])
    _check(res, ref, "full")
    for got, want in zip(res[0].hidden, ref["full/hidden"], strict=True):
        np.testing.assert_allclose(np.asarray(got), want, atol=ATOL, rtol=0)


def test_structured_patchout_matches_torch(encoder, ref):
    rows, cols = ref["structured/keep_f"], ref["structured/keep_t"]
    keep = np.tile((rows[:, None] * 10 + cols[None, :]).reshape(1, -1), (2, 1))
    _check(run(encoder, ref["full/features"], keep=keep), ref, "structured")


def test_unstructured_patchout_matches_torch(encoder, ref):
    keep = np.tile(ref["unstructured/keep_u"][None], (2, 1))
    _check(run(encoder, ref["full/features"], keep=keep), ref, "unstructured")


def test_shorter_input_in_eval_matches_torch(encoder, ref):
    _check(run(encoder, ref["short/features"]), ref, "short")


@pytest.mark.parametrize("offset", [1, 4])
def test_training_time_offsets_match_torch(encoder, ref, offset):
    _check(run(encoder, ref["short/features"], time_offset=jnp.int32(offset)), ref, f"short_offset{offset}")


def test_longer_input_is_cut_like_torch(encoder, ref):
    _check(run(encoder, ref["long/features"]), ref, "long")
