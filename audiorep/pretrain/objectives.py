"""Training objectives: the losses the trainer differentiates (pretrain/trainer.py).

Every objective is a callable `loss(model, batch, rng) -> (f32[] scalar, {name: f32[]})`; batches hold raw
waveforms ('audio' f32[B, samples], plus 'label' for supervised objectives) and the objective runs the frontend
itself, inside the jitted step.

- `MSPM`: SSAST masked spectrogram patch modelling (Gong et al., 2022). Per clip, M patches are masked
  (cluster masks for 16x16 patches, random for 128x2 frames; pretrain/masking.py); the encoder replaces them by
  its mask embedding; `cpredlayer` outputs are scored against the raw patches of the same clip by InfoNCE
  (negatives: the other masked patches of that clip), `gpredlayer` outputs regress the raw patches (MSE);
  loss = nce + 10 * mse. As in the official `mpc` / `mpg`, the two terms use two forward passes with
  independent masks (`passes=2`); `passes=1` shares one pass (cheaper). `patchout_keep < 1` additionally drops
  unmasked patches (the encoder sees the masked ones plus that fraction of the rest).
- `MaskedTokens`: masked token prediction (BEATs, BEST-RQ): a frozen tokenizer (tokenizers/) codes every
  patch -- random projection for BEATs' first iteration, or k-means codes of the outputs of an encoder
  pretrained in the previous iteration (tokenizers/teacher.py), or any tokenizer object with `input='features'`,
  `codebook_size` and `__call__(feats) -> i32[B, N]`; the model predicts the codes of the masked patches
  (`TokenPredictor`: BEST-RQ form with the encoder's mask embedding, or BEATs' form with the encoder over the
  visible patches and a label predictor); cross-entropy, optionally plus patch reconstruction terms. Trains
  SSAST encoders (both forms) and BEATs encoders (BEATs' form; time-major tokens).
- `Supervised`: multi-label BCE or multi-class CE on the encoder's head, optional mixup (PaSST's symmetric
  Beta mixup on features), PaSST structured / unstructured patchout via `keep`.

Which objective a config asks for, with which tokenizer and data, is assembled by pretrain/experiment.py.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from audiorep.audio import augment
from audiorep.models.beats import relative_position_bias
from audiorep.models.layers import LayerNorm, Linear, TransformerBlock, trunc_normal_02
from audiorep.pretrain import masking
from audiorep.pretrain.config import ConfigError

MaskFn = Callable[[jax.Array, tuple[int, int], int, int], jax.Array]


# ----------------------------------------------------------------------------------------------- helpers
def fit_frames(feats: jax.Array, frames: int | None, pad_value: float = 0.0) -> jax.Array:
    """Cut or pad time-major features to `frames` frames (SSAST's target_length).  f32[B, T, M] -> f32[B, frames, M]."""
    if frames is None or feats.shape[1] == frames:
        return feats
    if feats.shape[1] > frames:
        return feats[:, :frames]
    return jnp.pad(feats, ((0, 0), (0, frames - feats.shape[1]), (0, 0)), constant_values=pad_value)


def standardise_patches(patches: jax.Array) -> jax.Array:
    """Each patch to zero mean, unit variance over its own values (MAE's norm_pix).  f32[..., P] -> f32[..., P]."""
    mean = patches.mean(-1, keepdims=True)
    return (patches - mean) * jax.lax.rsqrt(patches.var(-1, keepdims=True) + 1e-6)


def mean_where(where: jax.Array, x: jax.Array) -> jax.Array:
    """Mean of x over the positions where `where` is True (0 when there are none).  bool[...], f32[...] -> f32[]."""
    return jnp.sum(jnp.where(where, x, 0.0)) / jnp.maximum(jnp.sum(where), 1)


def check_masked_count(masked: int, grid: tuple[int, int]) -> None:
    """Refuse masking every patch (or more than exist): some must stay visible for the encoder to read."""
    if masked < 1 or masked >= grid[0] * grid[1]:
        raise ConfigError(f"objective.masked={masked} but the {grid[0]}x{grid[1]} grid has only {grid[0] * grid[1]} "
                          f"patches; set objective.masked between 1 and {grid[0] * grid[1] - 1} (SSAST masks 400 "
                          f"of 512).")


def gather_tokens(x: jax.Array, idx: jax.Array) -> jax.Array:
    """x f32[B, N, D], idx i32[B, M] -> f32[B, M, D]."""
    return jnp.take_along_axis(x, idx[..., None].astype(jnp.int32), axis=1)


def info_nce(targets: jax.Array, preds: jax.Array) -> tuple[jax.Array, jax.Array]:
    """SSAST's discriminative loss over the masked patches of each clip.

    targets, preds f32[B, M, P]. Per clip, scores[m, n] = <target_m, pred_n>; nce = -mean_m log_softmax over
    n of scores[m, m] (negatives are the clip's other masked patches); accuracy: for each prediction n the
    target with the highest score is n (official `argmax(softmax(total), dim=0)`). -> (nce f32[], acc f32[]).
    """
    scores = jnp.einsum("bmp,bnp->bmn", targets.astype(jnp.float32), preds.astype(jnp.float32))
    logp = jax.nn.log_softmax(scores, axis=-1)
    nce = -jnp.mean(jnp.diagonal(logp, axis1=1, axis2=2))
    m = scores.shape[1]
    acc = jnp.mean((jnp.argmax(scores, axis=1) == jnp.arange(m)[None]).astype(jnp.float32))
    return nce, acc


def mask_function(kind: str, *, time_major: bool = False) -> MaskFn:
    """Masked-patch draw of pretrain/masking.py: (key, grid, batch, count) -> i32[B, count], flat indices in the
    encoder's token order (frequency-major for AST / SSAST, `time_major=True` for BEATs).

    'cluster': SSAST patch masking (squares of side 3-5); 'random': uniform (SSAST frame masking, BEATs);
    'frame': whole time columns (count must then be a multiple of the frequency patches).
    """
    if kind == "cluster":
        return functools.partial(masking.cluster_mask_indices, time_major=time_major)
    if kind == "random":
        return masking.random_mask_indices
    if kind == "frame":
        def frames(key, grid, batch, count):
            if count % grid[0]:
                raise ConfigError(f"objective.masked={count} is not a whole number of time columns of {grid[0]} "
                                  f"patches; use a multiple of {grid[0]} with mask='frame'.")
            return masking.frame_mask_indices(key, grid, batch, count // grid[0], time_major=time_major)

        return frames
    raise ConfigError(f"objective.mask={kind!r}: use 'cluster' (16x16 patches), 'random' (128x2 frames) or 'frame'.")


def keep_with_masked(key: jax.Array, mask_idx: jax.Array, n: int, keep_unmasked: int) -> jax.Array:
    """Patchout inside masked prediction: the masked patches first, then `keep_unmasked` random others.

    mask_idx i32[B, M] -> keep i32[B, M + keep_unmasked]; position m < M of the encoder output is masked
    patch mask_idx[:, m].
    """
    b = mask_idx.shape[0]
    masked = masking.indices_to_mask(mask_idx, n)
    score = jnp.where(masked, jnp.inf, jax.random.uniform(key, (b, n)))
    others = jnp.argsort(score, axis=1)[:, :keep_unmasked].astype(jnp.int32)
    return jnp.concatenate([mask_idx.astype(jnp.int32), others], axis=1)


# ----------------------------------------------------------------------------------------------- MSPM
class MSPM:
    """SSAST masked spectrogram patch modelling.  batch {'audio': f32[B, samples]} -> (loss, metrics).

    The model is an `ASTEncoder` built with `mask_embed=True, pretrain_heads=True`.
    target_norm='patch' standardises each target patch over its own values (MAE's norm_pix_loss) before the
    InfoNCE and MSE; 'none' (SSAST) uses the raw features. visible_weight > 0 adds that weight times the
    `gpredlayer` reconstruction MSE of the unmasked patches (not in SSAST): the encoder's outputs at visible
    positions, which frozen-embedding probes read, are otherwise never trained directly.
    """

    def __init__(self, frontend, *, masked: int = 400, mask: str = "cluster", nce_weight: float = 1.0,
                 mse_weight: float = 10.0, passes: int = 2, frames: int | None = None,
                 patchout_keep: float = 1.0, target_norm: str = "none", visible_weight: float = 0.0,
                 mask_fn: MaskFn | None = None):
        if target_norm not in ("none", "patch"):
            raise ConfigError(f"objective.target_norm={target_norm!r}: 'none' (SSAST) or 'patch' (MAE norm_pix).")
        if visible_weight < 0 or (visible_weight > 0 and patchout_keep < 1.0):
            raise ConfigError(f"objective.visible_weight={visible_weight}: use >= 0, and > 0 only with "
                              f"patchout_keep=1 (every patch encoded; got {patchout_keep}).")
        self.target_norm = target_norm
        self.visible_weight = float(visible_weight)
        if passes not in (1, 2):
            raise ConfigError(f"objective.passes={passes}: 2 (official: separate mpc and mpg passes) or 1 (shared).")
        if not 0.0 < patchout_keep <= 1.0:
            raise ConfigError(f"objective.patchout_keep={patchout_keep} must be in (0, 1] (fraction of unmasked "
                              f"patches the encoder sees).")
        self.frontend = frontend
        self.masked = int(masked)
        self.nce_weight, self.mse_weight = float(nce_weight), float(mse_weight)
        self.passes = passes
        self.frames = frames
        self.patchout_keep = float(patchout_keep)
        self.mask_fn = mask_fn or mask_function(mask)

    def features(self, audio: jax.Array, key: jax.Array) -> jax.Array:
        return fit_frames(self.frontend(audio, key=key, train=True), self.frames)

    def _pass(self, model, feats, targets, key, head: str):
        b, n = targets.shape[:2]
        grid = model.grid_for(feats.shape[1])
        check_masked_count(self.masked, grid)
        k_mask, k_keep = jax.random.split(key)
        idx = self.mask_fn(k_mask, grid, b, self.masked)
        keep = None
        if self.patchout_keep < 1.0:
            keep = keep_with_masked(k_keep, idx, n, int(round((n - self.masked) * self.patchout_keep)))
        out = model(feats, mask=masking.indices_to_mask(idx, n), keep=keep, deterministic=False)
        tokens = out.tokens[:, : self.masked] if keep is not None else gather_tokens(out.tokens, idx)
        target = jax.lax.stop_gradient(gather_tokens(targets, idx))
        outs = {}
        if head in ("c", "both"):
            outs["c"] = model.cpredlayer(tokens)
        if head in ("g", "both") and self.visible_weight > 0:  # every patch encoded (keep is None): predict all
            every = model.gpredlayer(out.tokens)
            outs["g"] = gather_tokens(every, idx)
            visible = ~masking.indices_to_mask(idx, n)
            err = jnp.mean((every.astype(jnp.float32) - targets) ** 2, axis=-1)
            outs["visible_mse"] = mean_where(visible, err)
        elif head in ("g", "both"):
            outs["g"] = model.gpredlayer(tokens)
        return outs, target

    def targets(self, model, feats: jax.Array) -> jax.Array:
        """The reconstruction / InfoNCE targets: raw patches, standardised per patch when target_norm='patch'.

        f32[B, frames, mels] -> f32[B, N, patch values].
        """
        targets = model.patches(feats).astype(jnp.float32)
        return standardise_patches(targets) if self.target_norm == "patch" else targets

    def __call__(self, model, batch: Mapping[str, jax.Array], rng: jax.Array):
        k_front, k1, k2 = jax.random.split(rng, 3)
        feats = self.features(batch["audio"], k_front)
        targets = self.targets(model, feats)
        if self.passes == 2:
            c, t_c = self._pass(model, feats, targets, k1, "c")
            g, t_g = self._pass(model, feats, targets, k2, "g")
        else:
            both, t_c = self._pass(model, feats, targets, k1, "both")
            c, g, t_g = both, both, t_c
        nce, acc = info_nce(t_c, c["c"])
        mse = jnp.mean((g["g"].astype(jnp.float32) - t_g) ** 2)
        loss = self.nce_weight * nce + self.mse_weight * mse
        metrics = {"nce": nce, "mse": mse, "acc": acc}
        if self.visible_weight > 0:
            loss = loss + self.visible_weight * g["visible_mse"]
            metrics["visible_mse"] = g["visible_mse"]
        return loss, metrics


# ------------------------------------------------------------------------------- masked token prediction
class LabelPredictor(nnx.Module):
    """BEATs' label predictor: a small Transformer that fills the masked positions back in.

    The encoder saw only the visible patches; their outputs go back to their grid positions, every masked
    position gets the learned `mask_token`, and `depth` pre-LN blocks of the encoder's width mix them. How the
    blocks know where each position is depends on the encoder:
    - absolute (AST / SSAST): the encoder's patch positional embeddings `pos` are added to every position;
    - relative (BEATs, `relative=(num_buckets, max_distance)`): BEATs has no absolute positional embedding, so
      the predictor carries its own T5-bucketed relative position bias (one table f32[num_buckets, heads]
      shared by its blocks, as BEATs' encoder shares one across its layers) over the flat token indices of the
      full grid -- the same distances the encoder's bias measures. The paper gives the label predictor the
      encoded patches with mask embeddings at the masked positions and does not say how it sees positions;
      the relative bias is our choice (it keeps the encoder's notion of position and needs no new input).
    f32[B, K, dim] (+ keep i32[B, K]) -> f32[B, N, dim].
    """

    def __init__(self, dim: int, num_heads: int, depth: int, *, rngs: nnx.Rngs,
                 relative: tuple[int, int] | None = None):
        self.mask_token = nnx.Param(trunc_normal_02(rngs.params(), (1, 1, dim)))
        self.blocks = nnx.List([TransformerBlock(dim, num_heads, 4 * dim, pre_norm=True, kernel_init=trunc_normal_02,
                                                 rngs=rngs) for _ in range(depth)])
        self.norm = LayerNorm(dim, rngs=rngs)
        self.relative = None if relative is None else (int(relative[0]), int(relative[1]))
        self.relative_attention_bias = (None if relative is None else nnx.Param(
            0.02 * jax.random.normal(rngs.params(), (self.relative[0], num_heads))))

    def position_bias(self, n: int) -> jax.Array | None:
        """The relative position bias over the full grid of n positions, f32[1, H, n, n] (None: absolute form)."""
        if self.relative_attention_bias is None:
            return None
        return relative_position_bias(self.relative_attention_bias[...], n, *self.relative)

    def __call__(self, visible: jax.Array, keep: jax.Array, pos: jax.Array | None = None, *, n: int | None = None,
                 deterministic: bool = True) -> jax.Array:
        """visible f32[B, K, dim] at grid indices keep i32[B, K] -> f32[B, N, dim].

        Absolute form: pos f32[N, dim] (N = its length). Relative form: n = N, the full grid's token count, in
        the encoder's token order (time-major for BEATs).
        """
        b, _, dim = visible.shape
        if (pos is None) == (self.relative_attention_bias is None):
            raise ValueError("this label predictor reads positions " + (
                "from its relative position bias: pass n=N (the grid's token count), not pos."
                if self.relative_attention_bias is not None else
                "as absolute embeddings: pass pos f32[N, dim] (the encoder's patch_pos_embed(grid))."))
        if pos is not None:
            n = pos.shape[0]
        elif n is None:
            raise ValueError("the relative label predictor needs n, the grid's token count.")
        x = jnp.broadcast_to(self.mask_token[...].astype(visible.dtype), (b, n, dim))
        x = x.at[jnp.arange(b)[:, None], keep].set(visible)
        if pos is not None:
            x = x + pos.astype(visible.dtype)
        bias = self.position_bias(n)
        for blk in self.blocks:
            x = blk(x, bias=bias, deterministic=deterministic)
        return self.norm(x)


def has_mask_embedding(encoder: nnx.Module) -> bool:
    """Whether the encoder can replace masked patches by its own mask embedding (SSAST's `mask_embed`)."""
    return bool(getattr(encoder.cfg, "mask_embed", False))


def patch_values(cfg) -> int:
    """Values in one raw patch of an encoder config: ASTConfig `patch` (freq, time), BEATsConfig 16 x 16."""
    if hasattr(cfg, "patch"):
        return int(cfg.patch[0] * cfg.patch[1])
    return int(cfg.patch_values)


class TokenPredictor(nnx.Module):
    """An encoder plus what predicts tokenizer codes from its outputs: a linear softmax head, and with
    `predictor_depth > 0` BEATs' label predictor (`LabelPredictor`) in front of it.

    AST / SSAST encoders: both forms (predictor_depth = 0 needs the encoder's mask embedding). BEATs encoders
    (no mask embedding, no absolute positions): the BEATs form only, with a relative-position label predictor.
    Pretraining trains all of it; `export` writes the encoder alone (the rest exists only for the pretext task).
    """

    def __init__(self, encoder: nnx.Module, codebook_size: int, *, seed: int = 0, predictor_depth: int = 0,
                 patch_head: bool = False):
        cfg = encoder.cfg
        dim = int(cfg.dim)
        self.encoder = encoder
        absolute = hasattr(encoder, "patch_pos_embed")
        if predictor_depth <= 0 and not has_mask_embedding(encoder):
            what = ("a BEATs encoder has no mask embedding: BEATs pretraining is the label-predictor form"
                    if not absolute else "this encoder has no mask embedding (model.overrides.mask_embed=True)")
            raise ConfigError(f"masked token prediction in BEST-RQ form (objective.predictor_depth=0) replaces the "
                              f"masked patches by the encoder's mask embedding, but {what}; set "
                              f"objective.predictor_depth >= 1 (the encoder then sees only the visible patches).")
        self.head = Linear(dim, int(codebook_size), rngs=nnx.Rngs(params=jax.random.fold_in(
            jax.random.PRNGKey(seed), 1)))
        if patch_head and predictor_depth <= 0:
            raise ConfigError("a patch head (objective.masked_mse_weight > 0) reconstructs the masked patches from "
                              "the label predictor's outputs: set objective.predictor_depth >= 1 (BEATs form).")
        key = jax.random.fold_in(jax.random.PRNGKey(seed), 2)
        relative = None
        if not absolute:  # BEATs: positions by relative bias, bucketed as the encoder buckets them
            relative = (int(cfg.num_buckets), int(cfg.max_distance))
        self.predictor = (LabelPredictor(dim, int(cfg.num_heads), int(predictor_depth), relative=relative,
                                         rngs=nnx.Rngs(params=key, dropout=jax.random.fold_in(key, 1)))
                          if predictor_depth > 0 else None)
        # MAE's generative target beside the codes (`masked_mse_weight`): the label predictor's outputs at the
        # masked positions -> their raw patches.
        self.patch_head = (Linear(dim, patch_values(cfg), rngs=nnx.Rngs(params=jax.random.fold_in(
            jax.random.PRNGKey(seed), 3))) if patch_head else None)

    def fill(self, visible: jax.Array, keep: jax.Array, grid: tuple[int, int], *,
             deterministic: bool = True) -> jax.Array:
        """The label predictor over the full grid: encoder outputs f32[B, K, dim] of the kept patches keep
        i32[B, K] -> f32[B, F * T, dim] in the encoder's token order."""
        if self.predictor.relative is not None:
            return self.predictor(visible, keep, n=grid[0] * grid[1], deterministic=deterministic)
        return self.predictor(visible, keep, self.encoder.patch_pos_embed(grid), deterministic=deterministic)


class MaskedTokens:
    """Masked token prediction (BEATs iteration 1, BEST-RQ).  batch {'audio': f32[B, samples]} -> (loss, metrics).

    Each spectrogram patch of the clip gets a code from a frozen tokenizer (tokenizers/random_projection.py);
    the model predicts the codes of the masked patches; loss = cross-entropy over the masked patches. Two forms,
    chosen by the model (`TokenPredictor`):
    - BEST-RQ form (no label predictor): the encoder sees the clip with the masked patches replaced by its
      mask embedding (`ASTEncoder(mask_embed=True)`) and its outputs at the masked positions go through the
      linear head. Options: `visible_weight` (cross-entropy at the visible patches too, whose outputs
      frozen-embedding probes read), `visible_mse_weight` (the encoder's `gpredlayer` reconstructs the visible
      raw patches).
    - BEATs form (`TokenPredictor(predictor_depth > 0)`): the encoder sees only the visible patches (MAE
      style, `keep`), so every output it computes is trained to carry what the label predictor needs to fill
      in the masked ones; the label predictor (a small Transformer) then predicts the masked codes. Options:
      `visible_mse_weight` (as above: the encoder's outputs keep the detail of their own patches) and
      `masked_mse_weight` (MAE's generative target beside the codes: the model's `patch_head` maps the label
      predictor's outputs at the masked positions to their raw patches).
    A BEATs encoder (models/beats.py: no mask embedding, no absolute positions, time-major tokens n = t * F + f)
    trains in the BEATs form only: its raw patches (`BEATsEncoder.patches`), the tokenizer's codes, the mask
    draw (`mask_function(..., time_major=True)` for 'cluster' / 'frame'; 'random', the paper's, is order-free)
    and every gather use its time-major order; the encoder runs on the visible patches with its relative
    position bias over their original indices, and the label predictor's relative bias spans the full grid.
    target_norm='patch' codes each patch after removing its mean (codes then ignore the recording level);
    gain_db > 0 scales each clip by a random gain in [-gain_db, gain_db] dB before the frontend.
    """

    def __init__(self, frontend, tokenizer, *, masked: int, mask: str = "random", frames: int | None = None,
                 visible_weight: float = 0.0, visible_mse_weight: float = 0.0, masked_mse_weight: float = 0.0,
                 target_norm: str = "none", gain_db: float = 0.0, mask_fn: MaskFn | None = None):
        if min(visible_weight, visible_mse_weight, masked_mse_weight, gain_db) < 0:
            raise ConfigError(f"objective.visible_weight={visible_weight}, visible_mse_weight={visible_mse_weight}, "
                              f"masked_mse_weight={masked_mse_weight} and gain_db={gain_db} must be >= 0.")
        if target_norm not in ("none", "patch"):
            raise ConfigError(f"objective.target_norm={target_norm!r}: 'none' (code the raw patch) or 'patch' "
                              f"(code each patch after removing its mean: level-free codes).")
        if target_norm != "none" and getattr(tokenizer, "input", "patches") != "patches":
            raise ConfigError(f"objective.target_norm={target_norm!r} codes raw patches; a teacher tokenizer reads the "
                              f"features itself: set objective.target_norm='none'.")
        self.frontend, self.tokenizer = frontend, tokenizer
        self.masked, self.frames = int(masked), frames
        self.visible_weight, self.visible_mse_weight = float(visible_weight), float(visible_mse_weight)
        self.masked_mse_weight = float(masked_mse_weight)
        self.target_norm, self.gain_db = target_norm, float(gain_db)
        mask_function(mask)  # refuse an unknown kind now; the draw itself follows the encoder's token order
        self.mask, self.mask_fn = mask, mask_fn

    def features(self, audio: jax.Array, key: jax.Array) -> jax.Array:
        return fit_frames(self.frontend(audio, key=key, train=True), self.frames)

    def codes(self, encoder, feats: jax.Array) -> jax.Array:
        """The targets: one code per patch.  f32[B, frames, mels] -> i32[B, N]."""
        return self._codes_of(feats, encoder.patches(feats).astype(jnp.float32))

    def _codes_of(self, feats: jax.Array, patches: jax.Array) -> jax.Array:
        """features f32[B, frames, mels] and their raw patches f32[B, N, P] -> i32[B, N]."""
        if getattr(self.tokenizer, "input", "patches") == "features":  # a teacher encoder reads the whole window
            return jax.lax.stop_gradient(self.tokenizer(feats))
        if self.target_norm == "patch":
            patches = standardise_patches(patches)
        return jax.lax.stop_gradient(self.tokenizer(patches))

    def __call__(self, model: TokenPredictor, batch: Mapping[str, jax.Array], rng: jax.Array):
        enc = model.encoder
        k_front, k_mask, k_gain = jax.random.split(rng, 3)
        audio = batch["audio"]
        if self.gain_db > 0:
            audio = augment.random_gain(k_gain, audio, -self.gain_db, self.gain_db)
        feats = self.features(audio, k_front)
        patches = enc.patches(feats).astype(jnp.float32)
        codes = self._codes_of(feats, patches)
        b, n = codes.shape
        grid = enc.grid_for(feats.shape[1])
        if n != grid[0] * grid[1] or patches.shape[1] != n:
            raise ValueError(f"the tokenizer coded {n} patches and the encoder cut {patches.shape[1]}, but the "
                             f"{grid[0]}x{grid[1]} grid has {grid[0] * grid[1]}: the tokenizer must read the "
                             f"student's patch grid (same patch size, mel bins and frontend).")
        check_masked_count(self.masked, grid)
        mask_fn = self.mask_fn or mask_function(self.mask, time_major=bool(getattr(enc, "time_major", False)))
        idx = mask_fn(k_mask, grid, b, self.masked)  # i32[B, M], flat indices in the encoder's token order
        masked = masking.indices_to_mask(idx, n)
        used = jnp.zeros(self.tokenizer.codebook_size, bool).at[codes.reshape(-1)].set(True)
        metrics = {"codes_used": jnp.mean(used.astype(jnp.float32))}
        # The head scores the masked positions only, unless the visible ones are scored too (BEST-RQ form).
        every_position = model.predictor is None and self.visible_weight > 0
        if (self.masked_mse_weight > 0) != (getattr(model, "patch_head", None) is not None):
            raise ValueError(f"objective.masked_mse_weight={self.masked_mse_weight} and the model's patch head go "
                              f"together: build TokenPredictor(patch_head=True) (BEATs form) exactly when "
                              f"masked_mse_weight > 0.")
        visible_patches = patches
        if model.predictor is not None:
            if self.visible_weight > 0:
                raise ConfigError("objective.visible_weight belongs to the BEST-RQ form; with a label predictor "
                                 "(predictor_depth > 0) the encoder never sees the masked patches and all its "
                                 "outputs are trained already: set it to 0.")
            keep = masking.unmasked_indices(idx, n)
            out = enc(feats, keep=keep, deterministic=False)
            tokens = model.fill(out.tokens, keep, grid, deterministic=False)
            visible_patches = gather_tokens(patches, keep)  # the encoder's outputs are the visible ones, in keep order
        else:
            out = enc(feats, mask=masked, deterministic=False)
            tokens = out.tokens
        if every_position:
            targets = codes
        else:
            tokens = gather_tokens(tokens, idx)  # [B, M, dim]
            targets = jnp.take_along_axis(codes, idx, axis=1)
        logits = model.head(tokens).astype(jnp.float32)  # [B, N or M, codebook]
        ce = -jnp.take_along_axis(jax.nn.log_softmax(logits), targets[..., None], axis=-1)[..., 0]
        hit = (jnp.argmax(logits, axis=-1) == targets).astype(jnp.float32)
        if every_position:
            masked_ce, metrics["acc"] = mean_where(masked, ce), mean_where(masked, hit)
        else:
            masked_ce, metrics["acc"] = jnp.mean(ce), jnp.mean(hit)
        metrics["ce"] = masked_ce
        loss = masked_ce
        if self.visible_weight > 0:
            visible_ce = mean_where(~masked, ce)
            loss = loss + self.visible_weight * visible_ce
            metrics["visible_ce"] = visible_ce
        if self.visible_mse_weight > 0:
            if getattr(enc, "gpredlayer", None) is None:
                raise ConfigError("objective.visible_mse_weight > 0 reconstructs the visible patches with the "
                                 "encoder's `gpredlayer`: build it with pretrain_heads=True.")
            err = jnp.mean((enc.gpredlayer(out.tokens).astype(jnp.float32) - visible_patches) ** 2, axis=-1)
            visible_mse = jnp.mean(err) if model.predictor is not None else mean_where(~masked, err)
            loss = loss + self.visible_mse_weight * visible_mse
            metrics["visible_mse"] = visible_mse
        if self.masked_mse_weight > 0:
            masked_mse = jnp.mean((model.patch_head(tokens).astype(jnp.float32) - gather_tokens(patches, idx)) ** 2)
            loss = loss + self.masked_mse_weight * masked_mse
            metrics["masked_mse"] = masked_mse
        return loss, metrics


# ----------------------------------------------------------------------------------------- supervised
class Supervised:
    """Classification with patchout (PaSST recipe).  batch {'audio', 'label'} -> (loss, metrics).

    label: i32[B] class indices (multi-class, softmax CE) or f32[B, C] multi-hot (multi-label, BCE).
    Patchout: `drop_t` time columns and `drop_f` frequency rows (structured) and `drop_u` single patches
    (unstructured) are dropped after the positional embedding; one draw per batch as official PaSST
    (`shared_patchout=False`: one per clip).
    The model needs `logits(out)` (PaSST head, or AST `mlp_head`).
    """

    def __init__(self, frontend, *, num_classes: int, multilabel: bool, mixup_alpha: float = 0.0,
                 drop_t: int = 0, drop_f: int = 0, drop_u: int = 0, frames: int | None = None,
                 label_smoothing: float = 0.0, shared_patchout: bool = True):
        self.frontend = frontend
        self.num_classes = int(num_classes)
        self.multilabel = bool(multilabel)
        self.mixup_alpha = float(mixup_alpha)
        self.drop = (int(drop_t), int(drop_f), int(drop_u))
        self.frames = frames
        self.label_smoothing = float(label_smoothing)
        self.shared_patchout = bool(shared_patchout)

    def targets(self, label: jax.Array) -> jax.Array:
        if label.ndim == 2:
            if label.shape[1] != self.num_classes:
                raise ValueError(f"labels have {label.shape[1]} classes, the objective {self.num_classes}.")
            return label.astype(jnp.float32)
        return jax.nn.one_hot(label, self.num_classes, dtype=jnp.float32)

    def __call__(self, model, batch: Mapping[str, jax.Array], rng: jax.Array):
        k_front, k_mix, k_keep = jax.random.split(rng, 3)
        feats = fit_frames(self.frontend(batch["audio"], key=k_front, train=True), self.frames)
        y = self.targets(batch["label"])
        if self.mixup_alpha > 0:
            feats, y, _ = augment.mixup(k_mix, feats, y, self.mixup_alpha)
        keep = None
        if any(self.drop):
            grid = model.grid_for(feats.shape[1])
            keep = masking.patchout_keep(k_keep, grid, feats.shape[0], drop_t=self.drop[0], drop_f=self.drop[1],
                                 drop_u=self.drop[2], shared=self.shared_patchout)
        out = model(feats, keep=keep, deterministic=False)
        logits = model.logits(out).astype(jnp.float32)
        if self.label_smoothing:
            y = y * (1 - self.label_smoothing) + self.label_smoothing / self.num_classes
        if self.multilabel:
            loss = optax.sigmoid_binary_cross_entropy(logits, y).mean()
            metrics = {"bce": loss}
        else:
            loss = optax.softmax_cross_entropy(logits, y).mean()
            acc = jnp.mean((jnp.argmax(logits, -1) == jnp.argmax(y, -1)).astype(jnp.float32))
            metrics = {"ce": loss, "acc": acc}
        if keep is not None:
            metrics["tokens"] = jnp.asarray(keep.shape[1], jnp.float32)
        return loss, metrics
