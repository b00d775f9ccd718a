"""A very small encoder family that follows the encoder contract, for fast registry / embedder tests.

Non-overlapping patches -> Linear -> one global-mixing step (every token sees the mean of all tokens, as
attention would, so padding changes the output unless it is handled: `padding_mask` leaves padded patches out of
that mean, as attention's key mask does) -> Linear. Time-major tokens.
Registered as family 'toy' and as the named models 'toy' / 'toy-passt' (32 kHz PaSST frontend).
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
from flax import nnx

from audiorep.models import families, registry
from audiorep.models.layers import EncoderOutput, real_time_patches


@dataclasses.dataclass(frozen=True)
class ToyConfig:
    dim: int = 8
    patch: tuple[int, int] = (16, 4)
    stride: tuple[int, int] = (16, 4)
    num_mel_bins: int = 128
    num_frames: int = 64
    depth: int = 2

    def __post_init__(self):
        object.__setattr__(self, "patch", tuple(self.patch))
        object.__setattr__(self, "stride", tuple(self.stride))

    def grid_for(self, frames: int) -> tuple[int, int]:
        return self.num_mel_bins // self.patch[0], (frames - self.patch[1]) // self.stride[1] + 1

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["patch"], d["stride"] = list(self.patch), list(self.stride)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ToyConfig:
        return cls(**d)


PRESETS = {"toy": ToyConfig(), "toy-wide": ToyConfig(dim=12)}


class ToyEncoder(nnx.Module):
    def __init__(self, cfg: ToyConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        pf, pt = cfg.patch
        self.embed = nnx.Linear(pf * pt, cfg.dim, rngs=rngs)
        self.blocks = nnx.List([nnx.Linear(2 * cfg.dim, cfg.dim, rngs=rngs) for _ in range(cfg.depth)])
        self.cls_token = nnx.Param(jnp.zeros((1, 1, cfg.dim)))
        self.drop = nnx.Dropout(0.1, rngs=rngs)

    def grid_for(self, frames: int) -> tuple[int, int]:
        return self.cfg.grid_for(frames)

    def __call__(self, features, *, mask=None, keep=None, padding_mask=None, deterministic=True,
                 return_hidden=False) -> EncoderOutput:
        b, frames, mels = features.shape
        (pf, pt), (_, st) = self.cfg.patch, self.cfg.stride
        f, t = self.grid_for(frames)
        x = features[:, : (t - 1) * st + pt, : f * pf]
        x = x.reshape(b, t, pt, f, pf).transpose(0, 1, 3, 2, 4).reshape(b, t * f, pt * pf)  # time-major
        x = self.embed(x)
        valid = None if padding_mask is None else jnp.repeat(real_time_patches(padding_mask, pt, st, t), f, axis=1)
        weight = jnp.ones((b, t * f, 1)) if valid is None else valid[..., None].astype(x.dtype)
        weight = weight / jnp.maximum(weight.sum(axis=1, keepdims=True), 1.0)  # mean over the real tokens only
        hidden = [x]
        cls = jnp.broadcast_to(self.cls_token[...], (b, 1, self.cfg.dim))
        for block in self.blocks:
            ctx = jnp.broadcast_to((x * weight).sum(axis=1, keepdims=True), x.shape)
            x = jnp.tanh(block(jnp.concatenate([x, ctx], axis=-1)))
            x = self.drop(x, deterministic=deterministic)
            cls = cls + (x * weight).sum(axis=1, keepdims=True)
            hidden.append(x)
        return EncoderOutput(tokens=x, cls=cls, hidden=tuple(hidden) if return_hidden else None, grid=(f, t),
                             time_major=True, valid=valid)

families.register_family(families.Family("toy", __name__, "ToyConfig", "ToyEncoder",
                                         families.time_patch_from_config, families.presets_from_module(__name__)))
registry.register_model(registry.ModelSpec("toy", "toy", "toy", "beats", "mean", "toy encoder, BEATs fbank"))
registry.register_model(registry.ModelSpec("toy-passt", "toy", "toy", "passt", "cls", "toy encoder, PaSST mel"))
