"""BEATs' self-distilled acoustic tokenizer (arXiv 2212.09058 section 3.2; official `beats/Tokenizers.py`).

The tokenizer is a BEATs-style Transformer over 16x16 fbank patches (`encoder`, a models.beats.BEATsEncoder),
a quantize layer (`quantize_layer`: Linear(D, D) -> tanh -> Linear(D, quant_dim)) and a NormEMA codebook
(`quantize`, tokenizers/vq.py). A patch's label is the index of the codeword nearest to its quantize-layer
output (official `extract_labels`); labels are time-major (token n = t * F + f), like the encoder's tokens.

    tok = AcousticTokenizer(TOKENIZER_PRESETS['beats-tokenizer-tiny'], rngs=nnx.Rngs(0))
    labels = tok.labels(feats)          # f32[B, frames, 128] ('beats' frontend) -> i32[B, (frames // 16) * 8]

Official checkpoints (Tokenizer_iter3.pt ...) load into it through models/convert/beats_tokenizer.py; trained
ones are written as tokenizer directories (tokenizers/tokenizer_dir.py).

Training (section 3.2): an `Estimator` (a small Transformer) reconstructs a frozen teacher encoder's last layer
from the tokenizer's quantised vectors; `DistillationModel` holds the three (the teacher's weights frozen by
`freeze`), pretrain/distill.py has the objective and runs it through the trainer.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from audiorep.models.beats import OFFICIAL_DEFAULTS, BEATsConfig, BEATsEncoder
from audiorep.models.layers import LayerNorm, Linear, SmallHead, TransformerBlock, trunc_normal_02
from audiorep.tokenizers.vq import NormEMAVectorQuantizer, VQOutput


@dataclasses.dataclass(frozen=True)
class TokenizerConfig(BEATsConfig):
    """The tokenizer's architecture: the BEATs encoder's fields (official names, `BEATsConfig`) and the codebook
    (`quant_n` codes of `quant_dim` values), as in the official `TokenizersConfig`. No fine-tuning head: the
    `finetuned_model` / `predictor_*` fields stay unused.

    Defaults are the released BEATs checkpoints' encoder architecture with the official 1024 x 256 codebook, not
    the official class defaults (`from_official` applies those to a checkpoint's cfg). The tokenizer does not
    decay its layers' gradients (layer_wise_gradient_decay_ratio 1.0).
    """

    layer_wise_gradient_decay_ratio: float = 1.0
    quant_n: int = 1024
    quant_dim: int = 256

    def __post_init__(self):
        super().__post_init__()
        if self.finetuned_model:
            raise ValueError("finetuned_model=True: a tokenizer has no classifier head; leave it False.")
        if self.quant_n < 2 or self.quant_dim < 1:
            raise ValueError(f"quant_n={self.quant_n}, quant_dim={self.quant_dim}: the codebook needs quant_n >= 2 "
                             f"codes of quant_dim >= 1 values (official 1024 x 256).")

    def beats_config(self) -> BEATsConfig:
        """The encoder's BEATsConfig (same field values; no fine-tuning head)."""
        names = {f.name for f in dataclasses.fields(BEATsConfig)}
        return BEATsConfig(**{k: v for k, v in self.to_dict().items() if k in names})

    @classmethod
    def from_official(cls, cfg: dict[str, Any]) -> TokenizerConfig:
        """From the `cfg` dict of an official tokenizer checkpoint; missing fields take the official
        `TokenizersConfig` class defaults, unknown ones are ignored with a warning (the official model ignores
        them too)."""
        defaults = {k: v for k, v in OFFICIAL_DEFAULTS.items() if k != "layer_wise_gradient_decay_ratio"}
        return cls.from_official_cfg(cfg, official_defaults=defaults, what="tokenizer", local=("num_mel_bins",))


TOKENIZER_BASE = TokenizerConfig()
"""The released size: a BEATs-base Transformer (12 x 768) and a 1024 x 256 codebook."""

TOKENIZER_TINY = TokenizerConfig(embed_dim=32, encoder_layers=2, encoder_embed_dim=64, encoder_ffn_embed_dim=128,
                                 encoder_attention_heads=4, conv_pos=16, conv_pos_groups=4, num_buckets=32,
                                 max_distance=64, quant_n=128, quant_dim=32)
"""Same structure, tiny sizes (the `beats-tiny` encoder, 128 x 32 codebook), for CPU tests and the demo."""

TOKENIZER_PRESETS = {"beats-tokenizer": TOKENIZER_BASE, "beats-tokenizer-tiny": TOKENIZER_TINY}


class AcousticTokenizer(nnx.Module):
    """BEATs' tokenizer: fbank f32[B, frames, mels] -> labels i32[B, N] (see module docstring).

    restart_dead / restart_threshold: the codebook's dead-code restart for training (tokenizers/vq.py; off in
    the official code). The codebook starts empty and takes k-means of the first training batch (official
    kmeans_init); labels of a tokenizer never trained nor loaded are all 0.
    """

    def __init__(self, cfg: TokenizerConfig = TOKENIZER_BASE, *, rngs: nnx.Rngs, restart_dead: bool = False,
                 restart_threshold: float = 0.1):
        self.cfg = cfg
        self.encoder = BEATsEncoder(cfg.beats_config(), rngs=rngs)
        # Linear(D, D) -> tanh -> Linear(D, quant_dim): official `quantize_layer.0` / `.2`.
        self.quantize_layer = SmallHead(cfg.encoder_embed_dim, cfg.quant_dim, act=jnp.tanh, rngs=rngs)
        self.quantize = NormEMAVectorQuantizer(cfg.quant_n, cfg.quant_dim, decay=0.99, beta=1.0, kmeans_init=True,
                                               restart_dead=restart_dead, restart_threshold=restart_threshold,
                                               rngs=rngs)

    @property
    def codebook_size(self) -> int:
        return self.cfg.quant_n

    def grid_for(self, frames: int) -> tuple[int, int]:
        """(F, T) patch grid of `frames` input frames."""
        return self.encoder.grid_for(frames)

    def quantize_input(self, feats: jax.Array, *, padding_mask: jax.Array | None = None,
                       deterministic: bool = True) -> jax.Array:
        """The vectors the codebook quantises.  f32[B, frames, mels] -> f32[B, N, quant_dim]."""
        x = self.encoder(feats, padding_mask=padding_mask, deterministic=deterministic).tokens
        return self.quantize_layer(x)

    def labels(self, feats: jax.Array, *, padding_mask: jax.Array | None = None) -> jax.Array:
        """Official `extract_labels` on features: f32[B, frames, mels] -> i32[B, N], time-major.

        padding_mask: bool[B, frames], True on padded frames (official convention); padded tokens still get labels.
        """
        return self.quantize.codes(self.quantize_input(feats, padding_mask=padding_mask))

    def __call__(self, feats: jax.Array, *, train: bool = False, rng: jax.Array | None = None) -> VQOutput:
        """Training forward: quantised vectors (straight-through), labels, commitment loss and codebook metrics;
        with train=True the codebook state is updated from this batch.  f32[B, frames, mels] -> VQOutput."""
        return self.quantize(self.quantize_input(feats, deterministic=not train), train=train, rng=rng)


# ------------------------------------------------------------------------------------------ training
def sincos_positions(n: int, dim: int) -> jax.Array:
    """Fixed sinusoidal embeddings of token indices 0..n-1 (Vaswani et al., 2017).  -> f32[n, dim]."""
    half = dim // 2
    freq = jnp.exp(-jnp.log(10000.0) * jnp.arange(half, dtype=jnp.float32) / max(half, 1))
    angle = jnp.arange(n, dtype=jnp.float32)[:, None] * freq[None, :]
    pe = jnp.concatenate([jnp.sin(angle), jnp.cos(angle)], axis=-1)
    return jnp.pad(pe, ((0, 0), (0, dim - 2 * half)))


class Estimator(nnx.Module):
    """The tokenizer estimator (paper section 3.2): a small Transformer that reconstructs the teacher's last layer
    from the quantised codes.  f32[B, N, in_dim] -> f32[B, N, out_dim].

    Linear(in_dim, dim) + fixed sinusoidal embeddings of the (time-major) token index -> `depth` pre-LN blocks
    -> LayerNorm -> Linear(dim, out_dim). The paper gives no more detail than a small Transformer; the sinusoidal
    positions are our choice (no length limit, no parameters), so the estimator can mix codes by where they sit.
    """

    def __init__(self, in_dim: int, dim: int, num_heads: int, depth: int, out_dim: int, *, rngs: nnx.Rngs):
        self.proj = Linear(in_dim, dim, kernel_init=trunc_normal_02, rngs=rngs)
        self.blocks = nnx.List([TransformerBlock(dim, num_heads, 4 * dim, pre_norm=True, kernel_init=trunc_normal_02,
                                                 rngs=rngs) for _ in range(depth)])
        self.norm = LayerNorm(dim, rngs=rngs)
        self.head = Linear(dim, out_dim, kernel_init=trunc_normal_02, rngs=rngs)

    def __call__(self, codes: jax.Array, *, deterministic: bool = True) -> jax.Array:
        x = self.proj(codes)
        x = x + sincos_positions(x.shape[1], x.shape[2]).astype(x.dtype)
        for blk in self.blocks:
            x = blk(x, deterministic=deterministic)
        return self.head(self.norm(x))


class FrozenWeight(nnx.Variable):
    """A weight of the frozen teacher: carried with the model's state, never differentiated nor optimised."""


def freeze(module: nnx.Module) -> nnx.Module:
    """Every nnx.Param of `module` becomes a FrozenWeight, in place (the trainer trains nnx.Param only).

    The values are copied through the host into uncommitted arrays: weights restored from a checkpoint sit on
    one device, and the trainer places every array on its own mesh."""
    for path, node in list(nnx.iter_graph(module)):
        if not isinstance(node, nnx.Param):
            continue
        parent = module
        for name in path[:-1]:
            parent = parent[name] if isinstance(parent, (list, nnx.List)) else getattr(parent, name)
        frozen = FrozenWeight(jnp.asarray(np.asarray(node[...])))
        if isinstance(parent, (list, nnx.List)):
            parent[path[-1]] = frozen
        else:
            setattr(parent, path[-1], frozen)
    if jax.tree.leaves(nnx.state(module, nnx.Param)):
        raise ValueError("could not freeze every parameter of the teacher (a parameter shared between modules?).")
    return module


def time_major_tokens(out) -> jax.Array:
    """An EncoderOutput's full-grid tokens in time-major order (token n = t * F + f).  -> f32[B, N, D]."""
    if out.time_major:
        return out.tokens
    b, _, d = out.tokens.shape
    return out.tokens_by_time().reshape(b, -1, d)


class DistillationModel(nnx.Module):
    """What tokenizer distillation trains, plus the frozen teacher it reads.

    tokenizer: AcousticTokenizer (trained; its codebook by EMA). estimator: Estimator (trained; thrown away at
    export). teacher: an encoder whose parameters are FrozenWeight (see `freeze`), so the trainer carries them as
    state, checkpoints them with the run, and never updates them.
    """

    def __init__(self, tokenizer: AcousticTokenizer, teacher: nnx.Module, teacher_dim: int, *, estimator_depth: int = 3,
                 seed: int = 0):
        self.tokenizer = tokenizer
        cfg = tokenizer.cfg
        self.estimator = Estimator(cfg.quant_dim, cfg.encoder_embed_dim, cfg.encoder_attention_heads,
                                   int(estimator_depth), int(teacher_dim),
                                   rngs=nnx.Rngs(jax.random.fold_in(jax.random.PRNGKey(seed), 7)))
        self.teacher = freeze(teacher)
