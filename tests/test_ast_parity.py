"""SSAST encoder vs an independent PyTorch forward pass of the official model (tests/fixtures/make_ssast_tiny.py).

The fixtures are tiny checkpoints in the official layout (`module.` prefix, int64 p_input_*), converted by
`audiorep.models.convert.ssast`, and reference outputs computed with torch from the official semantics.
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
from audiorep.models.convert.ssast import encoder_from_state_dict

FIXTURES = Path(__file__).parent / "fixtures"
ATOL = 1e-5


@functools.partial(jax.jit, static_argnums=(0,))
def _forward(graph, state, x, mask=None):
    return nnx.merge(graph, state)(x, mask=mask, return_hidden=True)


def run(m, x, mask=None):
    graph, state = nnx.split(m)
    return _forward(graph, state, jnp.asarray(x), None if mask is None else jnp.asarray(mask))


@functools.cache
def _load(kind: str, stride: tuple[int, int] | None = None):
    sd = load_checkpoint(FIXTURES / f"ssast_{kind}_tiny.pt", reader="builtin")
    return encoder_from_state_dict(sd, num_heads=4, stride=stride)


@functools.cache
def _ref(kind: str) -> dict[str, np.ndarray]:
    with np.load(FIXTURES / f"ssast_{kind}_tiny_ref.npz") as z:
        return dict(z)


def _check(out, ref: dict, case: str) -> None:
    assert out.grid == tuple(ref[f"{case}/grid"])
    np.testing.assert_allclose(np.asarray(out.tokens), ref[f"{case}/tokens"], atol=ATOL, rtol=0)
    np.testing.assert_allclose(np.asarray(out.cls), ref[f"{case}/cls"], atol=ATOL, rtol=0)


def test_patch_model_matches_torch_on_the_pretraining_grid():
    _, enc = _load("patch")
    ref = _ref("patch")
    out = run(enc, ref["full/features"])
    _check(out, ref, "full")
    for got, want in zip(out.hidden, ref["full/hidden"], strict=True):
        np.testing.assert_allclose(np.asarray(got), want, atol=ATOL, rtol=0)


def test_pretext_heads_and_patch_targets_match_torch():
    _, enc = _load("patch")
    ref = _ref("patch")
    out = run(enc, ref["full/features"])
    np.testing.assert_allclose(np.asarray(enc.cpredlayer(out.tokens)), ref["full/cpred"], atol=ATOL, rtol=0)
    np.testing.assert_allclose(np.asarray(enc.gpredlayer(out.tokens)), ref["full/gpred"], atol=ATOL, rtol=0)
    np.testing.assert_array_equal(np.asarray(enc.patches(jnp.asarray(ref["full/features"]))), ref["full/unfold"])


def test_masked_patches_match_torch_mask_embedding():
    _, enc = _load("patch")
    ref = _ref("patch")
    _check(run(enc, ref["full/features"], mask=ref["masked/mask"]), ref, "masked")


@pytest.mark.parametrize("case", ["short", "long"])
def test_cut_and_interpolated_positional_embeddings_match_torch(case):
    _, enc = _load("patch")
    ref = _ref("patch")
    _check(run(enc, ref[f"{case}/features"]), ref, case)


def test_overlapping_fine_tune_stride_matches_torch():
    _, enc = _load("patch", (4, 4))
    ref = _ref("patch")
    _check(run(enc, ref["overlap/features"]), ref, "overlap")


@pytest.mark.parametrize("case", ["full", "short"])
def test_frame_model_matches_torch(case):
    _, enc = _load("frame")
    ref = _ref("frame")
    _check(run(enc, ref[f"{case}/features"]), ref, case)
