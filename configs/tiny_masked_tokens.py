r"""Tiny masked token prediction (BEATs iteration 1 targets, BEST-RQ form) on the synthetic corpus: minutes on 2 CPUs.

  audiorep pretrain --config configs/tiny_masked_tokens.py --workdir /tmp/w
  audiorep pretrain --config configs/tiny_masked_tokens.py:steps=50 --workdir /tmp/w   # smoke test

This is the demo's recipe (`audiorep demo` runs this file with `steps` from its --minutes, its own seed and
data). A 64-d, 2-block SSAST-patch encoder with 16 x 4 patches (16 mel bins x 40 ms) on 0.64 s windows
(64 frames = 8 x 16 = 128 patches); every clip is scaled to -25 dB RMS before the filterbank (FSDD's speakers
were recorded 23 dB apart). Every patch gets one of 1024 codes from a frozen random-projection tokenizer
(tokenizers/random_projection.py); 5 whole time columns (40 of the 128 patches) are replaced by the mask
embedding and the encoder's outputs there predict their codes (cross-entropy): the masked 40 ms steps must be
inferred from their neighbours in time. Its outputs at the 88 visible patches reconstruct those patches
through `gpredlayer` (MSE, `visible_mse_weight=3`), so the tokens a probe reads keep their own patch's detail
beside the context. The top-level folders of data.root are sampled equally (`data.balance='folder'`: the demo
mixes the synthetic corpus with unlabelled speech). AdamW with warm-up (a tenth of the steps, at most 100) and
cosine decay. Exported with statistics pooling over time of the frequency-stacked tokens (`mean+std`,
`stack`). `objective.predictor_depth=1` is BEATs' form instead (the encoder sees only the visible patches, a
label predictor predicts the codes): under a converged linear probe it was ahead on FSDD but behind its own
random initialisation on the synthetic sounds (docs/results.md); this form is ahead of both baselines on both.

arg: `steps=N` (default 3000; the warm-up follows it). The corpus is written to
$AUDIOREP_DATA/synthetic_ssast (default ~/audiorep_data) when it is missing.
"""

import os
from pathlib import Path

import ml_collections

from audiorep.audio.frontends import KaldiFbank, get_frontend
from audiorep.pretrain.config import parse_arg

LEVEL_DB = -25.0  # every clip to this RMS level before the filterbank (FbankConfig.level_db), in training and embedding


def level_frontend(preset: str, level_db: float) -> dict:
    """A frontend preset's description with per-clip level normalisation switched on."""
    base = get_frontend(preset)
    return KaldiFbank(base.cfg.replace(level_db=float(level_db)), name=f"{base.name}@{level_db:g}dB").to_dict()


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    a = parse_arg(arg, steps=3000)
    root = Path(os.environ.get("AUDIOREP_DATA", "~/audiorep_data")) / "synthetic_ssast"
    c = ml_collections.ConfigDict()
    overrides = ml_collections.ConfigDict(dict(patch=(16, 4), stride=(16, 4), pred_dim=64, pretrain_heads=True))
    c.model = ml_collections.ConfigDict(dict(family="ast", preset="ssast-patch-tiny", overrides=overrides))
    c.frontend = ml_collections.ConfigDict(level_frontend("ssast", LEVEL_DB))
    c.data = ml_collections.ConfigDict(dict(
        dataset="synthetic", root=str(root), split="", frames=64, worker_count=0, balance="folder",
        synthetic=ml_collections.ConfigDict(dict(per_class=40, seconds=3.0, seed=0, sample_rate=16000))))
    c.objective = ml_collections.ConfigDict(dict(
        name="masked_tokens", masked=40, mask="frame", tokenizer="random_projection", codebook_size=1024,
        code_dim=16, tokenizer_seed=0, predictor_depth=0, visible_weight=0.0, visible_mse_weight=3.0,
        masked_mse_weight=0.0, teacher="", teacher_layer=-1, kmeans_batches=16, kmeans_iters=25,
        init_from_teacher=False))
    c.train = ml_collections.ConfigDict(dict(steps=a.steps, batch_size=16, log_every=10, checkpoint_every=500,
                                             keep_checkpoints=2))
    c.optim = ml_collections.ConfigDict(dict(lr=1e-3, schedule="cosine", warmup_steps=min(100, a.steps // 10),
                                             weight_decay=0.01, clip_norm=1.0))
    # later iterations (--config.iterations.count=2): k-means codes of the previous encoder; the distilled tokenizer
    # labels BEATs' 16 x 16 grid, not this encoder's 16 x 4 patches
    c.iterations = ml_collections.ConfigDict(dict(tokenizer="kmeans"))
    c.export_pooling = "mean+std"
    c.export_frequency = "stack"
    return c
