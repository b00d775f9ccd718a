"""An experiment config -> what the trainer is handed: model, objective, data and (BEATs iterations) teacher.

`build(config)` reads `config.model`, `config.frontend`, `config.objective` and `config.data` (configs/*.py)
and returns the trainer's `Task` (model, loss = the objective of pretrain/objectives.py, export) and its
iterator factory over the training audio; `train(config, workdir)` checks the config and the workdir, builds,
and runs the trainer (pretrain/trainer.py), which knows nothing of configs, models or data; `export_latest`
writes the encoder of a run's newest checkpoint as a model directory (models/model_dir.py) that
`audiorep.load` opens. Used by pretrain/iterations.py (`audiorep pretrain`) and the demo.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx
from jax.experimental import multihost_utils

from audiorep.audio import frontends
from audiorep.data import pipeline, sources, synthetic
from audiorep.models import families, model_dir
from audiorep.models.beats import BEATsConfig
from audiorep.models.bundle import samples_for_frames
from audiorep.pretrain import distributed
from audiorep.pretrain.config import ConfigError, load_named_directory
from audiorep.pretrain.objectives import (
    MSPM,
    MaskedTokens,
    Supervised,
    TokenPredictor,
    check_masked_count,
    fit_frames,
    patch_values,
)
from audiorep.pretrain.trainer import (
    Task,
    Trainer,
    TrainError,
    TrainResult,
    check_train_config,
    check_workdir,
    with_defaults,
)
from audiorep.tokenizers import RandomProjectionTokenizer, TeacherTokenizer, load_tokenizer_dir
from audiorep.tokenizers.tokenizer_dir import TokenizerDirError

log = logging.getLogger(__name__)

IteratorFactory = Callable[[int, int, int], Iterator[Mapping[str, Any]]]


# ------------------------------------------------------------------------------------- the pieces
def build_frontend(spec):
    """A frontend from a preset name ('ssast', 'passt', 'beats') or a `to_dict()` mapping."""
    if isinstance(spec, str):
        return frontends.get_frontend(spec)
    spec = spec.to_dict() if isinstance(spec, ml_collections.ConfigDict) else dict(spec)
    return frontends.frontend_from_dict(spec)


def encoder_config(model_cfg: Mapping[str, Any]):
    """(family, XConfig) from config.model: family, preset, and `overrides` of config fields."""
    fam = families.get_family(model_cfg["family"])
    cfg = fam.preset(model_cfg["preset"])
    overrides = model_cfg.get("overrides") or {}
    if isinstance(overrides, ml_collections.ConfigDict):
        overrides = overrides.to_dict()
    if overrides:
        d = cfg.to_dict()
        unknown = sorted(set(overrides) - set(d))
        if unknown:
            raise ConfigError(f"config.model.overrides has unknown {fam.name} fields {unknown}; known: {sorted(d)}.")
        d.update(overrides)
        try:
            cfg = fam.classes()[0].from_dict(d)
        except (TypeError, ValueError) as err:
            raise ConfigError(f"config.model.overrides {overrides} do not make a valid {fam.name} encoder "
                              f"({model_cfg['preset']}): {str(err).rstrip('.')}.") from err
    return fam, cfg


def clip_samples_for(frontend, frames: int) -> int:
    """Samples per training clip so the frontend yields exactly `frames` frames."""
    return samples_for_frames(frontend, frames)


def training_frames(config: ml_collections.ConfigDict, enc_cfg) -> int:
    """Frames per training window: data.frames, else the encoder's own input length."""
    return int(config.data.frames) if config.data.get("frames") else int(enc_cfg.num_frames)


def make_objective(config: ml_collections.ConfigDict, frontend, enc_cfg, *, num_classes: int | None = None,
                   multilabel: bool = False, tokenizer=None):
    """The loss object for config.objective. `tokenizer`: a fitted teacher tokenizer (`build` makes it from the
    training data when objective.tokenizer='teacher')."""
    o = config.objective
    frames = int(config.data.frames) if config.data.get("frames") else None
    if o.name == "mspm":
        return MSPM(frontend, masked=o.masked, mask=o.mask, nce_weight=o.get("nce_weight", 1.0),
                    mse_weight=o.mse_weight, passes=o.get("passes", 2), frames=frames,
                    patchout_keep=o.get("patchout_keep", 1.0), target_norm=o.get("target_norm", "none"),
                    visible_weight=o.get("visible_weight", 0.0))
    if o.name == "masked_tokens":
        depth = int(o.get("predictor_depth", 0))
        beats = isinstance(enc_cfg, BEATsConfig)
        if not beats and (not hasattr(enc_cfg, "patch") or not hasattr(enc_cfg, "mask_embed")):
            raise ConfigError(f"objective.name='masked_tokens' trains an SSAST encoder (family 'ast') or a BEATs "
                              f"encoder (family 'beats'); got {type(enc_cfg).__name__}.")
        if depth < 0:
            raise ConfigError(f"objective.predictor_depth={depth}: 0 (BEST-RQ form) or the number of "
                              f"label-predictor blocks (BEATs form).")
        if beats and depth == 0:
            raise ConfigError("objective.predictor_depth=0 is the BEST-RQ form, which replaces masked patches by the "
                              "encoder's mask embedding; a BEATs encoder has none (BEATs pretraining runs the "
                              "encoder on the visible patches only): set objective.predictor_depth >= 1.")
        if beats and (o.get("visible_mse_weight", 0.0) or o.get("visible_weight", 0.0)):
            raise ConfigError("objective.visible_weight / visible_mse_weight belong to SSAST encoders (BEST-RQ "
                              "form, or the encoder's gpredlayer); a BEATs encoder has neither: set them to 0.")
        if depth == 0 and not enc_cfg.mask_embed:
            raise ConfigError("objective.name='masked_tokens' with predictor_depth=0 (BEST-RQ form) needs an "
                              "encoder with a mask embedding (model.overrides.mask_embed=True), or use the BEATs "
                              "form (objective.predictor_depth >= 1), where the encoder sees only the visible "
                              "patches.")
        kind = o.get("tokenizer", "random_projection")
        if kind not in ("random_projection", "teacher", "distilled"):
            raise ConfigError(f"objective.tokenizer={kind!r}: 'random_projection' (BEATs iteration 1), 'teacher' "
                              f"(a later iteration: k-means codes of objective.teacher's outputs) or 'distilled' "
                              f"(the labels of the tokenizer directory objective.tokenizer_dir).")
        if kind == "distilled" and tokenizer is None:
            tokenizer = distilled_tokenizer(config, frontend, enc_cfg)
        if kind == "teacher" and tokenizer is None:
            raise ConfigError("objective.tokenizer='teacher' is fitted on the training data: build the task with "
                              "experiment.build(config) (or pass tokenizer=TeacherTokenizer.fit(...)).")
        if kind == "random_projection":
            tokenizer = RandomProjectionTokenizer(in_dim=patch_values(enc_cfg),
                                                  codebook_size=int(o.get("codebook_size", 1024)),
                                                  code_dim=int(o.get("code_dim", 16)),
                                                  seed=int(o.get("tokenizer_seed", 0)))
        return MaskedTokens(frontend, tokenizer, masked=o.masked, mask=o.get("mask", "random"), frames=frames,
                            visible_weight=o.get("visible_weight", 0.0),
                            visible_mse_weight=o.get("visible_mse_weight", 0.0),
                            masked_mse_weight=o.get("masked_mse_weight", 0.0),
                            target_norm=o.get("target_norm", "none"),
                            gain_db=o.get("gain_db", 0.0))
    if o.name == "supervised":
        classes = num_classes or getattr(enc_cfg, "num_classes", 0)
        if not classes:
            raise ConfigError("the supervised objective needs an encoder head: set config.model.overrides.num_classes.")
        return Supervised(frontend, num_classes=classes, multilabel=bool(o.get("multilabel", multilabel)),
                          mixup_alpha=o.get("mixup_alpha", 0.0), drop_t=o.get("drop_t", 0),
                          drop_f=o.get("drop_f", 0), drop_u=o.get("drop_u", 0), frames=frames,
                          label_smoothing=o.get("label_smoothing", 0.0),
                          shared_patchout=o.get("shared_patchout", True))
    raise ConfigError(f"objective.name={o.name!r}: available objectives are 'mspm', 'masked_tokens' and "
                      f"'supervised'.")


def check_data_root(data: ml_collections.ConfigDict) -> Path:
    """data.root as a local path, refused with the fix when it cannot hold the dataset.

    'synthetic' writes the corpus there when it is missing (so a new folder is fine, a file is not); a
    reader dataset needs an existing folder; 'tfds' is any path tfds reads (local or gs://), checked by its reader.
    """
    if not str(data.get("root", "")).strip():
        raise ConfigError(f"data.root is not set: pass --config.data.root=the folder of the {data.dataset} dataset.")
    root = Path(str(data.root)).expanduser()
    if data.dataset == "tfds":
        return root
    if root.exists() and not root.is_dir():
        raise ConfigError(f"data.root={str(data.root)!r} is a file; set --config.data.root to the dataset's folder.")
    if data.dataset != "synthetic" and not root.is_dir():
        raise ConfigError(f"data.root={str(data.root)!r} does not exist; set --config.data.root to the folder of "
                          f"the {data.dataset} dataset (or data.dataset='synthetic' to generate a corpus there).")
    return root


def data_index(data: ml_collections.ConfigDict):
    """The dataset index named by config.data; the synthetic corpus is generated when missing."""
    root = check_data_root(data)
    if data.dataset == "synthetic":
        if not (root / "meta.csv").is_file():
            s = data.synthetic
            if jax.process_index() == 0:
                log.warning("synthetic corpus not found at %s: generating it with audiorep.data.synthetic "
                            "(%d clips per class, %.1f s, seed %d).", root, s.per_class, s.seconds, s.seed)
                synthetic.write_corpus(root, per_class=int(s.per_class), seed=int(s.seed), seconds=float(s.seconds),
                                       sample_rate=int(s.sample_rate), progress=True)
            if jax.process_count() > 1:
                multihost_utils.sync_global_devices("synthetic corpus written")
        return sources.read_dataset("folder", root)
    options = data.get("options") or {}
    if isinstance(options, ml_collections.ConfigDict):
        options = options.to_dict()
    return sources.read_dataset(str(data.dataset), root, **options)


def data_source(data: ml_collections.ConfigDict, sample_rate: int):
    """(grain source, class names, multilabel) for config.data: a reader dataset, 'synthetic', or 'tfds'
    (an ArrayRecord build of data/tfds at data.root, the scalable path for AudioSet-size corpora)."""
    split = data.get("split") or None
    balance = data.get("balance", "none")
    if data.dataset == "tfds":
        if balance != "none":
            raise ConfigError(f"data.balance={balance!r} works on folder readers; a TFDS build is sampled as built.")
        source = pipeline.tfds_source(str(data.root), split or "train", sample_rate=sample_rate)
        return source, tuple(getattr(source, "classes", ())), bool(getattr(source, "multilabel", False))
    index = data_index(data)
    records = index.records if split is None else [r for r in index.records if r.split == split]
    if balance == "folder":
        records = pipeline.balance_by_folder(records, index.root or data.root)
    elif balance != "none":
        raise ConfigError(f"data.balance={balance!r}: 'none' (every clip once per epoch) or 'folder' (each "
                          f"top-level folder of data.root as often as the largest).")
    source = pipeline.records_source(records, sample_rate, classes=index.classes, multilabel=index.multilabel)
    return source, tuple(index.classes), bool(index.multilabel)


def patch_grid(cfg) -> str:
    """How an encoder config cuts features into tokens, in words (teacher and student must agree)."""
    if isinstance(cfg, BEATsConfig):
        p = cfg.input_patch_size
        return f"{p}x{p} patches of {cfg.num_mel_bins} mel bins, time-major tokens"
    patch, stride = getattr(cfg, "patch", "?"), getattr(cfg, "stride", "?")
    return f"{tuple(patch)} patches, stride {tuple(stride)}, frequency-major tokens"


def load_teacher(config: ml_collections.ConfigDict, frontend, enc_cfg):
    """The exported encoder named by objective.teacher, checked to read what the student reads: the same family
    (SSAST or BEATs: the token order), patch grid and frontend."""
    path = config.objective.get("teacher")
    bundle = load_named_directory(
        "objective.teacher", path, model_dir.load_model_dir, what="model", errors=(model_dir.ModelDirError,),
        missing="objective.tokenizer='teacher' needs objective.teacher: the model directory (or training workdir) "
                "of the encoder pretrained in the previous iteration.")
    t_cfg = bundle.encoder_config
    student = "beats" if isinstance(enc_cfg, BEATsConfig) else "ast"  # the families masked_tokens trains
    if bundle.family != student or patch_grid(t_cfg) != patch_grid(enc_cfg):
        raise ConfigError(f"objective.teacher={path!r} is a family {bundle.family!r} encoder with "
                          f"{patch_grid(t_cfg)}; the teacher must code the student's patches in the student's token "
                          f"order: a family {student!r} encoder with {patch_grid(enc_cfg)}.")
    check_same_frontend("objective.teacher", path, bundle.frontend, frontend, what="teacher")
    return bundle


def check_same_frontend(field: str, path: str, theirs, frontend, *, what: str) -> None:
    """Refuse a teacher or tokenizer (`what`) that reads other features (`theirs`) than config.frontend."""
    if theirs.to_dict() != frontend.to_dict():
        raise ConfigError(f"{field}={path!r} reads other features ({theirs.name}) than config.frontend "
                          f"({frontend.name}); train the student on the {what}'s frontend.")


class DirectoryTokenizer:
    """The labels of a tokenizer directory (tokenizers/tokenizer_dir.py) as MaskedTokens' targets: it reads the
    features (`input = 'features'`).  f32[B, frames, mels] -> i32[B, N], time-major."""

    input = "features"

    def __init__(self, bundle):
        self.bundle = bundle
        self.codebook_size = int(bundle.codebook_size)

    def __call__(self, feats: jax.Array) -> jax.Array:
        return self.bundle.labels(feats)


def distilled_tokenizer(config: ml_collections.ConfigDict, frontend, enc_cfg) -> DirectoryTokenizer:
    """The tokenizer directory named by objective.tokenizer_dir (a distilled or a converted official tokenizer),
    checked to label the student's patch grid on the student's features."""
    path = config.objective.get("tokenizer_dir")
    bundle = load_named_directory(
        "objective.tokenizer_dir", path, load_tokenizer_dir, what="tokenizer", errors=(TokenizerDirError,),
        missing="objective.tokenizer='distilled' needs objective.tokenizer_dir: a tokenizer directory (a distilled "
                "tokenizer's export, or `audiorep convert beats-tokenizer` output).")
    if patch_grid(bundle.config.beats_config()) != patch_grid(enc_cfg):
        raise ConfigError(f"objective.tokenizer_dir={path!r} labels {patch_grid(bundle.config.beats_config())}; the "
                          f"student encodes {patch_grid(enc_cfg)}: train a BEATs encoder (model.family='beats') "
                          f"on it, or use objective.tokenizer='teacher' (k-means codes).")
    check_same_frontend("objective.tokenizer_dir", path, bundle.frontend, frontend, what="tokenizer")
    return DirectoryTokenizer(bundle)


def teacher_tokenizer(config: ml_collections.ConfigDict, teacher, feature_batches):
    """Fit objective.codebook_size k-means codes to the teacher's outputs on `feature_batches`."""
    o = config.objective
    t0 = time.perf_counter()
    tok = TeacherTokenizer.fit(teacher.encoder, feature_batches, codebook_size=int(o.get("codebook_size", 1024)),
                               layer=int(o.get("teacher_layer", -1)), iters=int(o.get("kmeans_iters", 25)),
                               seed=int(o.get("tokenizer_seed", 0)))
    log.info("teacher tokenizer: %d k-means codes of %s's outputs in %.1f s", tok.codebook_size, teacher.name,
             time.perf_counter() - t0)
    return tok


def check_masking(config: ml_collections.ConfigDict, enc_cfg) -> None:
    """Refuse objective.masked outside [1, patches - 1] of the training window's grid, before any data is read."""
    masked = config.objective.get("masked")
    if masked is None or not hasattr(enc_cfg, "grid_for"):
        return
    check_masked_count(int(masked), tuple(enc_cfg.grid_for(training_frames(config, enc_cfg))))


def param_count(model: nnx.Module) -> int:
    return int(sum(math.prod(x.shape) for x in jax.tree.leaves(nnx.state(model, nnx.Param))))


# ---------------------------------------------------------------------------------------- assembly
def build(config: ml_collections.ConfigDict) -> tuple[Task, IteratorFactory]:
    """(Task, make_iterator) for the trainer from an experiment config (the fields it leaves out get defaults)."""
    config = with_defaults(config)
    fam, enc_cfg = encoder_config(config.model)
    check_masking(config, enc_cfg)
    frontend = build_frontend(config.frontend)
    source, classes, multilabel = data_source(config.data, frontend.sample_rate)
    if len(source) == 0:
        raise ConfigError(f"no training clips in {config.data.root} (split {config.data.get('split')!r}); "
                          f"check config.data.root and config.data.split.")
    frames = training_frames(config, enc_cfg)
    clip_samples = clip_samples_for(frontend, frames)
    seed = int(config.seed)
    o = config.objective
    tokenizer = teacher = None
    if o.name == "masked_tokens" and o.get("tokenizer") == "distilled" and o.get("init_from_teacher", False):
        teacher = load_teacher(config, frontend, enc_cfg)  # only the weights: the targets come from tokenizer_dir
    if o.name == "masked_tokens" and o.get("tokenizer") == "teacher":
        teacher = load_teacher(config, frontend, enc_cfg)
        batches = int(o.get("kmeans_batches", 16))
        it = iter(pipeline.train_dataset(source, clip_samples=clip_samples, batch_size=int(config.train.batch_size),
                                         seed=seed + 1, shard=pipeline.Shard(0, 1), worker_count=0))
        feats = (fit_frames(frontend(jnp.asarray(next(it)["audio"])), frames) for _ in range(batches))
        tokenizer = teacher_tokenizer(config, teacher, feats)
    objective = make_objective(config, frontend, enc_cfg, num_classes=len(classes), multilabel=multilabel,
                               tokenizer=tokenizer)
    encoder = fam.build(enc_cfg, seed=seed)
    if teacher is not None and o.get("init_from_teacher", False):
        report = model_dir.shape_report(model_dir.flat_arrays(nnx.state(encoder, nnx.Param)),
                                        model_dir.flat_arrays(nnx.state(teacher.encoder, nnx.Param)))
        if report:
            raise ConfigError("objective.init_from_teacher=True copies the teacher's weights, but the student's "
                              f"parameters (config) differ from the teacher's (checkpoint):\n{report}\nBuild the "
                              f"student with the teacher's encoder config ({teacher.encoder_config}).")
        # host copies: restored weights are committed to one device, the trainer places the state on its mesh
        nnx.update(encoder, jax.tree.map(lambda x: jnp.asarray(np.asarray(x)), nnx.state(teacher.encoder, nnx.Param)))
    model = encoder
    if isinstance(objective, MaskedTokens):
        model = TokenPredictor(encoder, objective.tokenizer.codebook_size, seed=seed,
                               predictor_depth=int(config.objective.get("predictor_depth", 0)),
                               patch_head=objective.masked_mse_weight > 0)
    workers = int(config.data.get("worker_count", 0))

    def make_iterator(pid: int, pcount: int, local_batch: int):
        ds = pipeline.train_dataset(source, clip_samples=clip_samples, batch_size=local_batch, seed=seed,
                                    shard=pipeline.Shard(pid, pcount), worker_count=workers)
        return iter(ds)

    def export(model, path: str) -> None:
        if isinstance(model, TokenPredictor):
            model = model.encoder
        model_dir.save_model_dir(path, family=fam.name, encoder=model, encoder_config=enc_cfg, frontend=frontend,
                                 pooling=str(config.get("export_pooling", "mean")), window_frames=frames,
                                 frequency=str(config.get("export_frequency", "mean")),
                                 meta={"trained_with": "audiorep pretrain", "objective": config.objective.to_dict(),
                                       "steps": int(config.train.steps)}, overwrite=True)

    task = Task(model=model, loss=objective, export=export, num_layers=int(enc_cfg.depth),
                name=f"{config.objective.name}:{fam.name}")
    log.info("task %s: %d clips of %d samples (%d frames); encoder %s, %d parameters", task.name, len(source),
             clip_samples, frames, config.model.preset, param_count(encoder))
    return task, make_iterator


def check(config: ml_collections.ConfigDict, workdir: str | os.PathLike) -> ml_collections.ConfigDict:
    """`config` with the trainer's defaults, after refusing (ConfigError / TrainError, naming the fix) everything
    about it and `workdir` that can be refused before any data is read or written."""
    config = check_train_config(config)
    check_workdir(workdir)
    check_masking(config, encoder_config(config.model)[1])
    check_data_root(config.data)
    return config


def train(config: ml_collections.ConfigDict, workdir: str | os.PathLike) -> TrainResult:
    """Check `config` and `workdir`, build task and data from `config` (see configs/), run the trainer in `workdir`."""
    config = check(config, workdir)
    distributed.initialize(config.distributed.to_dict())
    task, make_iterator = build(config)
    return Trainer(config, workdir, task, make_iterator).run()


def export_latest(config: ml_collections.ConfigDict, workdir: str | os.PathLike,
                  path: str | os.PathLike | None = None) -> str:
    """Export the encoder of the newest intact checkpoint in `workdir` (EMA params when kept) to `path`."""
    config = check_train_config(config)
    Trainer.require_checkpoint(workdir)  # before building (which may generate a corpus): nothing to export
    task, make_iterator = build(config)
    tr = Trainer(config, workdir, task, make_iterator)
    step = tr.restore_latest()
    out = tr.export(path)
    if out is None:
        raise TrainError("this task has nothing to export (its Task has no export function).")
    log.info("exported step %d of %s to %s", step, workdir, out)
    return out
