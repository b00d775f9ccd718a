r"""Tokenizer distillation through the trainer: BEATs' tokenizer of iteration k from encoder k-1 (arXiv 2212.09058,
section 3.2).

A frozen teacher encoder (a model directory: the previous iteration's export, or a converted official BEATs)
and an `AcousticTokenizer` read the same features; an estimator reconstructs the teacher's last layer from the
tokenizer's quantised codes (`Distillation`: cosine loss + VQ commitment; the models are in
tokenizers/distilled.py). It is a normal trainer run (pretrain/trainer.py): sharded over the mesh, checkpointed
(the VQ codebook state and the frozen teacher travel in the checkpoint as non-trained state) and resumed by
rerunning the same command; at the end the tokenizer alone is exported as a tokenizer directory
(tokenizers/tokenizer_dir.py), which `objective.tokenizer='distilled'` and `audiorep tokens extract` read.

Entry points (pretrain/iterations.py calls the first two for `iterations.tokenizer='distilled'`):

    cfg = distill.stage_config(config, teacher=ENCODER_DIR)   # experiment config -> the tokenizer stage's config
    result = distill.train(cfg, WORKDIR)                      # TrainResult; export_dir = the tokenizer directory
    task, make_iterator = distill.build(cfg)                  # what train() hands the Trainer

`stage_config` keeps the experiment's data, seed, mesh and train fields (steps, checkpointing, export_dir) and
applies the `config.distill` fields below; `train` and `build` also take `teacher=` and call it themselves.
The features are the teacher's frontend (the tokenizer reads what the teacher reads), so config.frontend is
not used.

`config.distill` (defaults in `default_distill_config`):
  teacher            model directory (or training workdir) of the frozen teacher encoder
  preset             '' (the teacher's own BEATs architecture, official 1024 x 256 codebook) or a
                     TOKENIZER_PRESETS name ('beats-tokenizer', 'beats-tokenizer-tiny')
  overrides          TokenizerConfig fields on top (e.g. quant_n=128)
  estimator_depth    Transformer blocks of the estimator (3; the paper says a small Transformer, the
                     3-block depth is our recollection of it, unverified)
  lr                 peak learning rate of the stage (0 keeps optim.lr); warmup_steps (-1 keeps optim's)
  batch_size         clips per step (0 keeps train.batch_size)
  frames             feature frames per training window (0: data.frames, else 1024 = 10.24 s, BEATs' window)
  restart_dead       re-seed codes whose EMA count falls below restart_threshold (not in the official code;
                     tokenizers/vq.py); restart_threshold (0.1: a code counts as dead below a tenth of the
                     average code's count per batch)

The teacher must cut the features into the tokenizer's patch grid: a BEATs encoder with 16 x 16 patches, or any
encoder (an AST with 16 x 16 patches, stride 16, on the same frontend) whose token grid is the same; its tokens
are put in time-major order. Anything else is refused naming the grids.
"""

from __future__ import annotations

import copy
import logging
import os

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from audiorep.data import pipeline
from audiorep.models import model_dir
from audiorep.pretrain import experiment
from audiorep.pretrain.config import ConfigError, load_named_directory
from audiorep.pretrain.objectives import fit_frames
from audiorep.pretrain.trainer import (
    IteratorFactory,
    Task,
    Trainer,
    TrainResult,
    check_workdir,
    default_train_config,
    with_defaults,
)
from audiorep.tokenizers.distilled import (
    TOKENIZER_PRESETS,
    AcousticTokenizer,
    DistillationModel,
    TokenizerConfig,
    time_major_tokens,
)
from audiorep.tokenizers.tokenizer_dir import save_tokenizer_dir
from audiorep.tokenizers.vq import l2norm

log = logging.getLogger(__name__)

DEFAULT_FRAMES = 1024  # BEATs' 10.24 s training window


class Distillation:
    """Tokenizer distillation (BEATs, arXiv 2212.09058 section 3.2): batch {'audio': f32[B, samples]} -> (loss,
    metrics), the trainer's objective signature.

    The frontend turns the audio into features, which the frozen teacher encoder and the tokenizer both read (so
    they share the patch grid); the tokenizer quantises its patches (the VQ updates its codebook from the batch),
    the estimator maps the quantised vectors (straight-through) to the teacher's last layer, and
    loss = mean over patches of (1 - cos(estimate, teacher)) + the VQ commitment loss (beta = 1).
    Metrics: cosine (mean cosine similarity), vq_loss, vq_usage, vq_perplexity (and vq_restarted with restart).
    frames: cut or pad the features to this many frames (None: as the frontend gives them).
    """

    def __init__(self, frontend, *, frames: int | None = None):
        self.frontend, self.frames = frontend, frames

    def features(self, audio: jax.Array, key: jax.Array) -> jax.Array:
        return fit_frames(self.frontend(audio, key=key, train=True), self.frames)

    def targets(self, model: DistillationModel, feats: jax.Array) -> jax.Array:
        """The teacher's last layer, never differentiated.  f32[B, frames, mels] -> f32[B, N, D_teacher]."""
        out = model.teacher(feats, deterministic=True)
        return jax.lax.stop_gradient(time_major_tokens(out).astype(jnp.float32))

    def __call__(self, model: DistillationModel, batch, rng: jax.Array):
        k_front, k_vq = jax.random.split(rng)
        feats = self.features(batch["audio"], k_front)
        target = self.targets(model, feats)
        vq = model.tokenizer(feats, train=True, rng=k_vq)
        if vq.quantized.shape[:2] != target.shape[:2]:
            raise ValueError(f"the teacher gives {target.shape[1]} tokens per clip and the tokenizer "
                             f"{vq.quantized.shape[1]}: they must cut the features into the same patch grid.")
        estimate = model.estimator(vq.quantized, deterministic=False).astype(jnp.float32)
        cosine = jnp.mean(jnp.sum(l2norm(estimate) * l2norm(target), axis=-1))
        loss = (1.0 - cosine) + vq.loss
        return loss, dict(vq.metrics, cosine=cosine)


def default_distill_config() -> ml_collections.ConfigDict:
    """The `config.distill` fields with their defaults (see the module docstring; kept with the trainer's other
    defaults, so `--config.distill.FIELD=...` works for every experiment file)."""
    return ml_collections.ConfigDict(default_train_config().distill.to_dict())


def distill_fields(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """config.distill on top of the defaults; an unknown field is refused."""
    d = default_distill_config()
    given = config.get("distill") or ml_collections.ConfigDict()
    unknown = sorted(set(given.keys()) - set(d.keys()))
    if unknown:
        raise ConfigError(f"config.distill has unknown fields {unknown}; known: {sorted(d.keys())}.")
    for k, v in given.items():
        d[k] = v
    return d


def stage_config(config: ml_collections.ConfigDict, *, teacher: str | os.PathLike) -> ml_collections.ConfigDict:
    """The config a tokenizer stage trains under: `config` with distill.teacher = `teacher` and the distill
    fields applied to the trainer (lr, warm-up, batch size); train.steps and train.export_dir stay as given."""
    c = ml_collections.ConfigDict(copy.deepcopy(with_defaults(config).to_dict()))
    d = distill_fields(c)
    d.teacher = str(teacher)
    c.distill = d
    if float(d.lr) > 0:
        c.optim.lr = float(d.lr)
    if int(d.warmup_steps) >= 0:
        c.optim.warmup_steps = int(d.warmup_steps)
    if int(d.batch_size) > 0:
        c.train.batch_size = int(d.batch_size)
    c.optim.layer_decay = 1.0  # the tokenizer and the estimator share no layer-wise schedule
    return c


def tokenizer_config(d: ml_collections.ConfigDict, teacher_cfg) -> TokenizerConfig:
    """The tokenizer's architecture from distill.preset / overrides ('' = the teacher's BEATs architecture)."""
    if d.preset:
        if d.preset not in TOKENIZER_PRESETS:
            raise ConfigError(f"distill.preset={d.preset!r}: '' (the teacher's architecture) or one of "
                              f"{sorted(TOKENIZER_PRESETS)}.")
        base = TOKENIZER_PRESETS[d.preset].to_dict()
    else:
        if not hasattr(teacher_cfg, "encoder_embed_dim"):
            raise ConfigError(f"distill.preset='' builds the tokenizer like the teacher, which is not a BEATs encoder "
                              f"({type(teacher_cfg).__name__}); set distill.preset to one of "
                              f"{sorted(TOKENIZER_PRESETS)}.")
        names = set(TokenizerConfig().to_dict())
        base = {k: v for k, v in teacher_cfg.to_dict().items() if k in names}
        base["layer_wise_gradient_decay_ratio"] = 1.0
    overrides = d.overrides.to_dict() if isinstance(d.overrides, ml_collections.ConfigDict) else dict(d.overrides)
    unknown = sorted(set(overrides) - set(base) - {"quant_n", "quant_dim"})
    if unknown:
        raise ConfigError(f"distill.overrides has unknown TokenizerConfig fields {unknown}; known: {sorted(base)}.")
    try:
        return TokenizerConfig.from_dict({**base, **overrides})
    except (TypeError, ValueError) as err:
        raise ConfigError(f"distill.preset={d.preset!r} with overrides {overrides} is not a valid tokenizer: "
                          f"{str(err).rstrip('.')}.") from err


def load_teacher(d: ml_collections.ConfigDict):
    """The teacher's model bundle (distill.teacher)."""
    return load_named_directory(
        "distill.teacher", d.teacher, model_dir.load_model_dir, what="model", errors=(model_dir.ModelDirError,),
        missing="tokenizer distillation needs distill.teacher: the model directory (or training workdir) of the "
                "encoder to distil from.")


def check_grids(teacher: nnx.Module, tokenizer: AcousticTokenizer, frames: int, mels: int, name: str) -> None:
    """Refuse a teacher that does not cut `frames` x `mels` features into the tokenizer's patch grid."""
    feats = jax.ShapeDtypeStruct((1, frames, mels), jnp.float32)
    try:
        t_out = nnx.eval_shape(lambda: teacher(jnp.zeros(feats.shape), deterministic=True))
    except (ValueError, TypeError) as err:
        raise ConfigError(f"distill.teacher={name!r} cannot read {frames} frames x {mels} mel bins ({err}); set "
                          f"distill.frames to a window the teacher reads.") from err
    grid = tokenizer.grid_for(frames)
    if tuple(t_out.grid) != tuple(grid) or t_out.tokens.shape[1] != grid[0] * grid[1]:
        raise ConfigError(f"distill.teacher={name!r} cuts {frames} frames into a {t_out.grid[0]} x {t_out.grid[1]} "
                          f"(freq x time) grid of {t_out.tokens.shape[1]} tokens, the tokenizer into {grid[0]} x "
                          f"{grid[1]} ({tokenizer.cfg.input_patch_size} x {tokenizer.cfg.input_patch_size} patches); "
                          f"distil from a BEATs encoder (or an encoder with the same 16 x 16 patch grid).")


def build(config: ml_collections.ConfigDict, teacher: str | os.PathLike | None = None
          ) -> tuple[Task, IteratorFactory]:
    """(Task, make_iterator) of a tokenizer stage (after `stage_config`, or give `teacher` here)."""
    if teacher is not None:
        config = stage_config(config, teacher=teacher)
    config = with_defaults(config)
    d = distill_fields(config)
    bundle = load_teacher(d)
    frontend = bundle.frontend
    tok_cfg = tokenizer_config(d, bundle.encoder_config)
    if int(frontend.num_mel_bins) != tok_cfg.num_mel_bins:
        raise ConfigError(f"distill.teacher={d.teacher!r} reads {frontend.num_mel_bins} mel bins ({frontend.name})"
                          f"; the tokenizer reads {tok_cfg.num_mel_bins}: distil from a teacher on the 'beats' "
                          f"frontend (128 mel bins) or set distill.overrides.num_mel_bins.")
    frames = int(d.frames) or int(config.data.get("frames") or 0) or DEFAULT_FRAMES
    seed = int(config.seed)
    tokenizer = AcousticTokenizer(tok_cfg, rngs=nnx.Rngs(seed + 11), restart_dead=bool(d.restart_dead),
                                  restart_threshold=float(d.restart_threshold))
    check_grids(bundle.encoder, tokenizer, frames, tok_cfg.num_mel_bins, str(d.teacher))
    teacher_dim = int(nnx.eval_shape(lambda: bundle.encoder(jnp.zeros((1, frames, tok_cfg.num_mel_bins)))).tokens
                      .shape[-1])
    model = DistillationModel(tokenizer, bundle.encoder, teacher_dim, estimator_depth=int(d.estimator_depth),
                              seed=seed)
    source, _, _ = experiment.data_source(config.data, frontend.sample_rate)
    if len(source) == 0:
        raise ConfigError(f"no training clips in {config.data.root} (split {config.data.get('split')!r}); check "
                          f"config.data.root and config.data.split.")
    clip_samples = experiment.clip_samples_for(frontend, frames)
    workers = int(config.data.get("worker_count", 0))

    def make_iterator(pid: int, pcount: int, local_batch: int):
        return iter(pipeline.train_dataset(source, clip_samples=clip_samples, batch_size=local_batch, seed=seed,
                                           shard=pipeline.Shard(pid, pcount), worker_count=workers))

    def export(model: DistillationModel, path: str) -> None:
        save_tokenizer_dir(path, model.tokenizer, config=tok_cfg, frontend=frontend, overwrite=True,
                           meta={"trained_with": "audiorep tokenizer distillation", "teacher": str(d.teacher),
                                 "steps": int(config.train.steps), "distill": d.to_dict()})

    log.info("tokenizer distillation: %d clips of %d samples (%d frames); tokenizer %d parameters, %d codes; "
             "teacher %s", len(source), clip_samples, frames, experiment.param_count(tokenizer), tok_cfg.quant_n,
             d.teacher)
    task = Task(model=model, loss=Distillation(frontend, frames=frames), export=export, num_layers=None,
                name="distill:tokenizer")
    return task, make_iterator


def train(config: ml_collections.ConfigDict, workdir: str | os.PathLike,
          teacher: str | os.PathLike | None = None) -> TrainResult:
    """Train (or resume) a tokenizer stage in `workdir`; its result's export_dir is the tokenizer directory."""
    if teacher is not None:
        config = stage_config(config, teacher=teacher)
    config = with_defaults(config)
    check_workdir(workdir)
    task, make_iterator = build(config)
    return Trainer(config, workdir, task, make_iterator).run()
