r"""SSAST patch-based Base: masked spectrogram patch modelling, 16x16 patches (Gong et al., AAAI 2022).

  audiorep pretrain --config configs/ssast_patch_base.py --workdir gs://bucket/ssast-patch \
      --config.data.root=/data/audioset_tfds --config.train.steps=1_000_000

Paper recipe (YuanGongND/ssast src/pretrain/run_mask_patch.sh, src/traintest_mask.py): AudioSet-2M +
LibriSpeech-960, 128 x 1024 Kaldi fbank (SSAST normalisation), 8 x 64 = 512 patches of which 400 are
masked in clusters of side 3-5; loss = InfoNCE + 10 * MSE, two passes (mpc, mpg) with independent masks;
batch 24, Adam lr 1e-4 (betas 0.95, 0.999, weight decay 5e-7), 1000-step linear warm-up, then the lr is
halved when the loss stops improving (patience 2 checks of 4000 steps); no SpecAugment, no mixup.
Differences: weight decay here is decoupled (AdamW; at 5e-7 both are negligible); the plateau rule
watches the training loss averaged over 4000 steps (official: the mpc accuracy on held-out data).
About 10 epochs of AS-2M + LS-960 at batch 24 is ~1M steps. The data default is an ArrayRecord build
(`audiorep datasets prepare audioset --root ... --out ...`, data/tfds); any reader dataset works
(`--config.data.dataset=audioset`).
"""

import ml_collections


def get_config(arg=None) -> ml_collections.ConfigDict:
    del arg
    c = ml_collections.ConfigDict()
    c.model = ml_collections.ConfigDict(dict(family="ast", preset="ssast-patch", overrides=ml_collections.ConfigDict()))
    c.frontend = "ssast"
    c.data = ml_collections.ConfigDict(dict(
        root="/data/audioset_librispeech_tfds",
        frames=1024,  # SSAST target_length: clips are cut/padded to 10.24 s
    ))
    c.objective = ml_collections.ConfigDict(dict(
        name="mspm", masked=400, mask="cluster", nce_weight=1.0, mse_weight=10.0, passes=2, patchout_keep=1.0,
        target_norm="none", visible_weight=0.0))
    c.train = ml_collections.ConfigDict(dict(steps=1_000_000, batch_size=24, log_every=100, checkpoint_every=4000))
    c.optim = ml_collections.ConfigDict(dict(
        lr=1e-4, schedule="ssast", warmup_steps=1000, end_lr_ratio=0.0, b1=0.95, b2=0.999, eps=1e-8,
        weight_decay=5e-7, clip_norm=0.0, layer_decay=1.0, ema_decay=0.0,
        plateau_factor=0.5, plateau_patience=2, plateau_steps=4000,
        rampdown_start=0, rampdown_steps=1, passt_last_ratio=0.01))
    c.export_pooling = "mean"
    return c
