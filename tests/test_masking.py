"""Masking and patchout: exact counts, fixed shapes, clustering, token order, encoder-ready outputs."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audiorep.pretrain import masking

GRID = (8, 64)  # SSAST patch model: 128 mels x 1024 frames in 16 x 16 patches
N = GRID[0] * GRID[1]


def distinct_per_row(idx) -> bool:
    idx = np.asarray(idx)
    return all(len(set(r.tolist())) == idx.shape[1] for r in idx)


def to_cells(idx, grid, time_major):
    f, t = masking.grid_coords(np.asarray(idx), grid, time_major)
    out = np.zeros((idx.shape[0],) + tuple(grid), bool)
    for b in range(idx.shape[0]):
        out[b, f[b], t[b]] = True
    return out


@settings(max_examples=8, deadline=None)
@given(count=st.sampled_from([0, 1, 100, 400, N]), seed=st.integers(0, 2 ** 16))
def test_cluster_masks_exactly_count_distinct_patches(count, seed):
    idx = np.asarray(masking.cluster_mask_indices(jax.random.key(seed), GRID, 3, count))
    assert idx.shape == (3, count) and idx.dtype == np.int32
    assert distinct_per_row(idx) and (idx >= 0).all() and (idx < N).all()
    assert (np.diff(idx, axis=1) > 0).all()


def test_cluster_masks_are_clustered_unlike_random_masks():
    def neighbours(cells):  # mean number of masked 4-neighbours of a masked cell
        c = cells.astype(int)
        nb = np.zeros_like(c)
        nb[:, 1:] += c[:, :-1]
        nb[:, :-1] += c[:, 1:]
        nb[:, :, 1:] += c[:, :, :-1]
        nb[:, :, :-1] += c[:, :, 1:]
        return (nb * c).sum() / c.sum()

    key = jax.random.key(0)
    clustered = to_cells(masking.cluster_mask_indices(key, GRID, 16, 100), GRID, False)
    uniform = to_cells(masking.random_mask_indices(key, GRID, 16, 100), GRID, False)
    assert neighbours(clustered) > 2.0 > 1.0 > neighbours(uniform)


def test_cluster_side_is_drawn_per_clip_between_3_and_5():
    # count = 9: a 3 x 3 square is the whole mask; a 4 x 4 or 5 x 5 one is trimmed to 9 of its cells.
    idx = masking.cluster_mask_indices(jax.random.key(1), (40, 40), 300, 9)
    spans, full_3x3 = [], 0
    for c in to_cells(idx, (40, 40), False):
        f, t = np.nonzero(c)
        if f.max() >= 35 or t.max() >= 35:  # first square may have been clipped by the edge
            continue
        spans.append(max(f.max() - f.min(), t.max() - t.min()) + 1)
        full_3x3 += int(f.max() - f.min() == 2 and t.max() - t.min() == 2)
    assert max(spans) == 5 and min(spans) == 3
    assert 0.15 < full_3x3 / len(spans) < 0.55  # side 3 drawn for about a third of the clips


def test_same_key_masks_the_same_cells_in_either_token_order():
    key = jax.random.key(5)
    fm = masking.cluster_mask_indices(key, GRID, 4, 150, time_major=False)
    tm = masking.cluster_mask_indices(key, GRID, 4, 150, time_major=True)
    np.testing.assert_array_equal(to_cells(fm, GRID, False), to_cells(tm, GRID, True))
    assert not np.array_equal(np.asarray(fm), np.asarray(tm))


def test_frame_masking_hides_whole_time_columns():
    idx = masking.frame_mask_indices(jax.random.key(2), GRID, 5, 10, time_major=True)
    assert idx.shape == (5, 80) and distinct_per_row(idx)
    cells = to_cells(idx, GRID, True)
    assert (cells.all(axis=1).sum(axis=1) == 10).all() and (cells.any(axis=1) == cells.all(axis=1)).all()


def test_ssast_frame_model_masking_is_random_over_its_1xT_grid():
    idx = masking.frame_mask_indices(jax.random.key(3), (1, 512), 2, 400)
    assert idx.shape == (2, 400) and distinct_per_row(idx) and not np.array_equal(idx[0], idx[1])


def test_mask_and_keep_views_partition_the_grid():
    idx = masking.random_mask_indices(jax.random.key(4), GRID, 3, 384)
    mask = np.asarray(masking.indices_to_mask(idx, N))
    keep = np.asarray(masking.unmasked_indices(idx, N))
    assert mask.shape == (3, N) and mask.dtype == bool and (mask.sum(axis=1) == 384).all()
    assert keep.shape == (3, N - 384) and (np.diff(keep, axis=1) > 0).all()
    for b in range(3):
        assert not mask[b, keep[b]].any()


def test_structured_patchout_keeps_a_full_subgrid_per_clip():
    grid = (12, 99)  # PaSST-S, 10 s
    keep = masking.structured_patchout_keep(jax.random.key(0), grid, 4, drop_t=40, drop_f=4)
    assert keep.shape == (4, 8 * 59)
    for order in (False, True):
        keep = masking.structured_patchout_keep(jax.random.key(0), grid, 4, drop_t=40, drop_f=4, time_major=order)
        cells = to_cells(keep, grid, order)
        for c in cells:
            rows, cols = c.any(axis=1), c.any(axis=0)
            assert rows.sum() == 8 and cols.sum() == 59 and c[np.ix_(rows, cols)].all()
    assert not np.array_equal(keep[0], keep[1])


def test_shared_patchout_is_one_draw_for_the_batch_as_official_passt():
    keep = np.asarray(masking.patchout_keep(jax.random.key(0), (12, 99), 3, drop_t=40, drop_f=4, shared=True))
    assert (keep == keep[:1]).all()


def test_unstructured_and_combined_patchout_keep_the_promised_count():
    keep = masking.unstructured_patchout_keep(jax.random.key(0), (12, 99), 2, drop_u=400)
    assert keep.shape == (2, 1188 - 400) and distinct_per_row(keep)
    both = masking.patchout_keep(jax.random.key(1), (12, 99), 2, drop_t=10, drop_f=2, drop_u=100)
    assert both.shape == (2, 10 * 89 - 100) and distinct_per_row(both) and (np.diff(both, axis=1) > 0).all()


@pytest.mark.parametrize("time_major", [False, True])
def test_combined_patchout_drops_single_tokens_from_what_structured_patchout_kept(time_major):
    both = masking.patchout_keep(jax.random.key(1), (12, 99), 3, drop_t=10, drop_f=2, drop_u=100, time_major=time_major)
    for cells in to_cells(both, (12, 99), time_major):
        rows, cols = cells.any(axis=1), cells.any(axis=0)
        assert rows.sum() <= 10 and cols.sum() <= 89  # inside one 10 x 89 subgrid
        assert (~cells[np.ix_(rows, cols)]).sum() == rows.sum() * cols.sum() - (10 * 89 - 100)


def _drop_rates(keep, n: int) -> np.ndarray:
    """Fraction of the rows of keep (i32[draws, K]) that drop each of the n grid tokens."""
    kept = np.zeros((keep.shape[0], n), bool)
    kept[np.arange(keep.shape[0])[:, None], np.asarray(keep)] = True
    return 1 - kept.mean(0)


def test_patchout_drops_every_time_column_frequency_row_and_token_equally_often():
    key, grid = jax.random.key(9), (5, 10)  # 2,000 clips, one draw each
    cols = masking.structured_patchout_keep(key, (1, 10), 2000, drop_t=4, drop_f=0)
    rows = masking.structured_patchout_keep(key, (5, 1), 2000, drop_t=0, drop_f=2)
    np.testing.assert_allclose(_drop_rates(cols, 10), 0.4, atol=0.05)
    np.testing.assert_allclose(_drop_rates(rows, 5), 0.4, atol=0.05)
    for time_major in (False, True):  # a cell survives when its row (3 of 5) and its column (6 of 10) do
        cells = masking.structured_patchout_keep(key, grid, 2000, drop_t=4, drop_f=2, time_major=time_major)
        np.testing.assert_allclose(_drop_rates(cells, 50), 1 - 0.6 * 0.6, atol=0.05)
    single = masking.unstructured_patchout_keep(key, grid, 2000, drop_u=13)
    np.testing.assert_allclose(_drop_rates(single, 50), 13 / 50, atol=0.05)
    both = masking.patchout_keep(key, grid, 2000, drop_t=4, drop_f=2, drop_u=5)  # 18 - 5 of 50 kept
    np.testing.assert_allclose(_drop_rates(both, 50), 1 - 0.36 * 13 / 18, atol=0.05)


def test_steps_compile_once_for_every_key():
    f = jax.jit(lambda k: masking.cluster_mask_indices(k, GRID, 2, 400))
    g = jax.jit(lambda k: masking.patchout_keep(k, (12, 99), 2, drop_t=40, drop_f=4, drop_u=50))
    for s in range(3):
        f(jax.random.key(s))
        g(jax.random.key(s))
    assert f._cache_size() == 1 and g._cache_size() == 1


def test_impossible_counts_are_clear_errors():
    with pytest.raises(ValueError, match="cannot choose 600 of 512"):
        masking.cluster_mask_indices(jax.random.key(0), GRID, 1, 600)
    with pytest.raises(ValueError, match="lower s_patchout_t"):
        masking.structured_patchout_keep(jax.random.key(0), (12, 99), 1, drop_t=99, drop_f=0)
    with pytest.raises(ValueError, match="lower u_patchout"):
        masking.patchout_keep(jax.random.key(0), (2, 3), 1, drop_t=1, drop_f=1, drop_u=2)


def test_keep_drives_a_passt_encoder():
    from flax import nnx

    from audiorep.models.passt import PRESETS, PaSSTEncoder

    graphdef, state = nnx.split(nnx.eval_shape(lambda: PaSSTEncoder(PRESETS["passt-s-tiny"], rngs=nnx.Rngs(0))))
    grid = PRESETS["passt-s-tiny"].grid_for(100)
    keep = masking.patchout_keep(jax.random.key(0), grid, 2, drop_t=3, drop_f=2)
    feats = jax.ShapeDtypeStruct((2, 100, 128), jnp.float32)
    out = jax.eval_shape(lambda st, x, k: nnx.merge(graphdef, st)(x, keep=k).tokens, state, feats, keep)
    assert out.shape[1] == keep.shape[1] == (grid[0] - 2) * (grid[1] - 3)
