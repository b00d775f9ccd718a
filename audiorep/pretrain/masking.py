"""Masking and patchout over the patch grid: which patches an encoder hides or drops in pretraining.

Every function takes an explicit PRNG key, draws independently for every clip of the batch (vectorised,
no Python loop over clips) and returns arrays of a fixed size, so a training step compiles once whatever
the random draw:

* index arrays i32[B, M] of *masked* patches (`random_mask_indices`, `cluster_mask_indices`,
  `frame_mask_indices`); `indices_to_mask` turns them into the encoders' `mask: bool[B, N]` argument
  (SSAST-style: masked patches are replaced by the mask embedding) and `unmasked_indices` into
  `keep: i32[B, N - M]` (MAE-style: the encoder sees only the visible patches);
* index arrays i32[B, K] of *kept* patches for PaSST patchout (`structured_patchout_keep`,
  `unstructured_patchout_keep`, `patchout_keep`), the encoders' `keep` argument.
Indices come back in increasing order.

Token order. The grid is always given as (F, T): frequency patches x time patches, as in
`EncoderOutput.grid`. Flat token indices depend on the model family and are an argument here:
frequency-major (AST / SSAST / PaSST, `time_major=False`): n = f * T + t; time-major (BEATs,
`time_major=True`): n = t * F + f. Spatial masks (clusters, frames, structured patchout) are drawn on
the 2-D grid and then flattened in the given order, so the same key hides the same (f, t) cells for
either order.

Differences from the official code, on purpose: SSAST's `gen_maskid_patch` draws a flat start index
and adds `i * T + j`, so squares wrap from the end of one frequency row into the next and index 0 is
never masked; it then keeps `list(set(ids))[:mask_size]`, i.e. mostly the lowest indices. Here squares
are clipped at the grid's edges, every cell can be masked, and the last square is trimmed at random.
Official PaSST draws one patchout for the whole batch; here each clip draws its own (`shared=True`
gives the official behaviour).

Used by pretrain/objectives.py (MSPM, supervised + patchout) and models/* (`mask`, `keep`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _check_grid(grid: tuple[int, int]) -> tuple[int, int]:
    if len(grid) != 2 or min(grid) < 1:
        raise ValueError(f"grid must be (frequency patches, time patches), both >= 1; got {grid!r}.")
    return int(grid[0]), int(grid[1])


def _check_count(count: int, n: int, what: str) -> None:
    if not 0 <= count <= n:
        raise ValueError(f"{what}: cannot choose {count} of {n} patches; pass 0 <= count <= {n}.")


def flat_index(f: jax.Array, t: jax.Array, grid: tuple[int, int], time_major: bool = False) -> jax.Array:
    """(frequency, time) patch coordinates -> flat token index in the model's order."""
    nf, nt = grid
    return t * nf + f if time_major else f * nt + t


def grid_coords(idx: jax.Array, grid: tuple[int, int], time_major: bool = False) -> tuple[jax.Array, jax.Array]:
    """Flat token index -> (frequency, time) patch coordinates; the inverse of `flat_index`."""
    nf, nt = grid
    return (idx % nf, idx // nf) if time_major else (idx // nt, idx % nt)


def _smallest(scores: jax.Array, k: int) -> jax.Array:
    """Indices of the k smallest scores per row, in increasing index order.  f32[B, N] -> i32[B, k]."""
    _, idx = jax.lax.top_k(-scores, k)
    return jnp.sort(idx, axis=-1).astype(jnp.int32)


def indices_to_mask(idx: jax.Array, n: int) -> jax.Array:
    """i32[B, M] patch indices -> bool[B, n], True at those patches (the encoders' `mask`)."""
    b = idx.shape[0]
    return jnp.zeros((b, n), bool).at[jnp.arange(b)[:, None], idx].set(True)


def unmasked_indices(idx: jax.Array, n: int) -> jax.Array:
    """The patches NOT in idx, increasing: i32[B, M] (distinct per row) -> i32[B, n - M] (a `keep`)."""
    mask = indices_to_mask(idx, n)
    order = jnp.argsort(mask, axis=-1, stable=True)  # False (visible) first, each group in index order
    return order[:, : n - idx.shape[1]].astype(jnp.int32)


def random_mask_indices(key: jax.Array, grid: tuple[int, int], batch: int, count: int) -> jax.Array:
    """`count` distinct patches per clip, uniformly (BEATs / MAE random masking).  -> i32[B, count].

    Flat indices: uniform masking is the same in either token order.
    """
    nf, nt = _check_grid(grid)
    _check_count(count, nf * nt, "random_mask_indices")
    return _smallest(jax.random.uniform(key, (batch, nf * nt)), count)


def cluster_mask_indices(key: jax.Array, grid: tuple[int, int], batch: int, count: int, *,
                         min_side: int = 3, max_side: int = 5, time_major: bool = False) -> jax.Array:
    """SSAST patch masking: square clusters until `count` patches are covered.  -> i32[B, count].

    Per clip: one side length s in [min_side, max_side]; squares of s x s patches (frequency x time) at
    uniform random corners, clipped to the grid, are added in turn; the first `count` patches covered
    are masked (ties inside the last square broken at random). If the squares drawn never reach
    `count` (tiny grids), the rest are uniform random patches.
    """
    nf, nt = _check_grid(grid)
    n = nf * nt
    _check_count(count, n, "cluster_mask_indices")
    if not 1 <= min_side <= max_side:
        raise ValueError(f"cluster sides must satisfy 1 <= min_side <= max_side, got {min_side}..{max_side}.")
    # Enough squares that coverage of `count` cells is all but certain: ~6 x the cells / smallest square.
    squares = max(8, -(-6 * n // (min_side * min_side)))
    k_side, k_f, k_t, k_tie = jax.random.split(key, 4)
    side = jax.random.randint(k_side, (batch, 1, 1), min_side, max_side + 1)
    f0 = jax.random.randint(k_f, (batch, squares, 1), 0, nf)
    t0 = jax.random.randint(k_t, (batch, squares, 1), 0, nt)
    di, dj = jnp.divmod(jnp.arange(max_side * max_side), max_side)  # offsets inside the largest square
    f, t = f0 + di, t0 + dj  # [B, squares, max_side^2]
    valid = (di < side) & (dj < side) & (f < nf) & (t < nt)
    cells = jnp.where(valid, f * nt + t, n)  # frequency-major cell id; n = "no cell" (dropped below)
    rank = jnp.broadcast_to(jnp.arange(squares, dtype=jnp.float32)[None, :, None], cells.shape)
    first = jnp.full((batch, n + 1), jnp.inf).at[jnp.arange(batch)[:, None, None], cells].min(rank)[:, :n]
    tie = jax.random.uniform(k_tie, (batch, n))
    scores = jnp.where(jnp.isinf(first), squares + 1.0 + tie, first + tie)  # covered cells always come first
    chosen = _smallest(scores, count)  # frequency-major cell ids
    if time_major:
        cf, ct = grid_coords(chosen, grid, time_major=False)
        chosen = jnp.sort(flat_index(cf, ct, grid, time_major=True), axis=-1)
    return chosen.astype(jnp.int32)


def frame_mask_indices(key: jax.Array, grid: tuple[int, int], batch: int, frames: int, *,
                       time_major: bool = False) -> jax.Array:
    """Mask `frames` whole time columns of the grid per clip.  -> i32[B, frames * F].

    For SSAST's frame model (128 x 2 patches, grid (1, T)) this is its random frame masking.
    """
    nf, nt = _check_grid(grid)
    _check_count(frames, nt, "frame_mask_indices (time columns)")
    cols = _smallest(jax.random.uniform(key, (batch, nt)), frames)  # [B, frames]
    f = jnp.arange(nf)[None, None, :]
    idx = flat_index(f, cols[:, :, None], grid, time_major).reshape(batch, -1)
    return jnp.sort(idx, axis=-1).astype(jnp.int32)


def structured_patchout_keep(key: jax.Array, grid: tuple[int, int], batch: int, drop_t: int, drop_f: int, *,
                             time_major: bool = False, shared: bool = False) -> jax.Array:
    """PaSST structured patchout: drop `drop_t` random time columns and `drop_f` frequency rows.

    -> keep i32[B, (F - drop_f) * (T - drop_t)], increasing. `shared=True` draws once for the whole
    batch, as official PaSST does.
    """
    nf, nt = _check_grid(grid)
    if not (0 <= drop_t < nt and 0 <= drop_f < nf):
        raise ValueError(f"structured patchout: cannot drop {drop_t} of {nt} time columns and {drop_f} of {nf} "
                         "frequency rows; keep at least one of each (lower s_patchout_t / s_patchout_f).")
    draws = 1 if shared else batch
    k_t, k_f = jax.random.split(key)
    cols = _smallest(jax.random.uniform(k_t, (draws, nt)), nt - drop_t)
    rows = _smallest(jax.random.uniform(k_f, (draws, nf)), nf - drop_f)
    idx = flat_index(rows[:, :, None], cols[:, None, :], grid, time_major).reshape(draws, -1)
    idx = jnp.sort(idx, axis=-1).astype(jnp.int32)
    return jnp.broadcast_to(idx, (batch, idx.shape[1]))


def unstructured_patchout_keep(key: jax.Array, grid: tuple[int, int], batch: int, drop_u: int, *,
                               shared: bool = False) -> jax.Array:
    """PaSST unstructured patchout: drop `drop_u` random tokens.  -> keep i32[B, N - drop_u], increasing."""
    nf, nt = _check_grid(grid)
    n = nf * nt
    if not 0 <= drop_u < n:
        raise ValueError(f"unstructured patchout: cannot drop {drop_u} of {n} tokens; keep at least one.")
    draws = 1 if shared else batch
    keep = _smallest(jax.random.uniform(key, (draws, n)), n - drop_u)
    return jnp.broadcast_to(keep, (batch, n - drop_u))


def patchout_keep(key: jax.Array, grid: tuple[int, int], batch: int, *, drop_t: int = 0, drop_f: int = 0,
                  drop_u: int = 0, time_major: bool = False, shared: bool = False) -> jax.Array:
    """Structured then unstructured patchout, the PaSST recipe (AudioSet: drop_t=40, drop_f=4).

    -> keep i32[B, (F - drop_f) * (T - drop_t) - drop_u], increasing.
    """
    k_s, k_u = jax.random.split(key)
    keep = structured_patchout_keep(k_s, grid, batch, drop_t, drop_f, time_major=time_major, shared=shared)
    if drop_u == 0:
        return keep
    k = keep.shape[1]
    if drop_u >= k:
        raise ValueError(f"unstructured patchout: cannot drop {drop_u} of the {k} tokens left after structured "
                         "patchout; lower u_patchout.")
    pick = unstructured_patchout_keep(k_u, (1, k), keep.shape[0] if not shared else 1, drop_u)
    pick = jnp.broadcast_to(pick, (batch, k - drop_u))
    return jnp.take_along_axis(keep, pick, axis=1)
