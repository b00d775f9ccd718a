r"""PaSST-S supervised on AudioSet with patchout (Koutini et al., Interspeech 2022).

  audiorep pretrain --config configs/passt_s_audioset.py --workdir gs://bucket/passt-s \
      --config.data.root=/data/audioset_tfds

Recipe (kkoutini/PaSST ex_audioset.py, models/preprocess.py, models/passt.py): 32 kHz PaSST mel (128 bins,
hop 320, 10 s -> 998 frames, train-time fmin/fmax jitter), ViT-B with 16x16 patches at stride 10 (12 x 99
grid), structured patchout of 40 time columns and 4 frequency rows (474 of 1188 tokens kept), multi-label BCE on 527
classes, mixup alpha 0.3; AdamW lr 2e-5 (fine-tuning from ImageNet DeiT in the paper; from scratch
needs a larger lr), weight decay 1e-4, batch 12; schedule: exponential warm-up over 5 epochs, constant,
linear ramp-down from epoch 50 over 50 epochs to 1 %. An epoch here is 100k clips (PaSST's weighted
sampler epoch length: unverified) = 8334 steps at batch 12, so 130 epochs ~ 1.08M steps.
Not reproduced: the balanced (weighted) sampler, wav-mix and SWA; EMA (optim.ema_decay) is offered.
"""

import ml_collections
import ssast_patch_base

EPOCH = 100_000 // 12  # steps per epoch at batch 12


def get_config(arg=None) -> ml_collections.ConfigDict:
    c = ssast_patch_base.get_config(arg)
    c.model = ml_collections.ConfigDict(dict(family="passt", preset="passt-s",
                                             overrides=ml_collections.ConfigDict(dict(num_classes=527))))
    c.frontend = "passt"
    c.data.root = "/data/audioset_tfds"
    c.data.frames = 998
    c.objective = ml_collections.ConfigDict(dict(
        name="supervised", multilabel=True, mixup_alpha=0.3, drop_t=40, drop_f=4, drop_u=0, label_smoothing=0.0,
        shared_patchout=True))  # one patchout draw per batch, as official PaSST
    c.train.update(dict(steps=130 * EPOCH, batch_size=12, checkpoint_every=EPOCH))
    c.optim.update(dict(lr=2e-5, schedule="passt", warmup_steps=5 * EPOCH, weight_decay=1e-4, b1=0.9, b2=0.999,
                        clip_norm=0.0, rampdown_start=50 * EPOCH, rampdown_steps=50 * EPOCH, passt_last_ratio=0.01))
    c.export_pooling = "mean"
    return c
