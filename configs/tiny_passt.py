r"""Tiny PaSST, supervised with structured patchout and mixup on the synthetic corpus (CPU, minutes).

  audiorep pretrain --config configs/tiny_passt.py --workdir /tmp/wp

The synthetic corpus (12 classes, 32 kHz, 3 s) is written to $AUDIOREP_DATA/synthetic_passt (default
~/audiorep_data) on first use. Same recipe as passt_s_audioset.py, shrunk: 64-d, 2 layers, 298 frames
(12 x 29 patches; 6 time columns and 2 frequency rows dropped), multi-class CE on 12 classes.
"""

import os

import ml_collections
import passt_s_audioset


def get_config(arg=None) -> ml_collections.ConfigDict:
    c = passt_s_audioset.get_config(arg)
    c.model.preset = "passt-s-tiny"
    c.model.overrides.num_classes = 12
    c.data.dataset = "synthetic"
    c.data.root = os.path.join(os.environ.get("AUDIOREP_DATA", "~/audiorep_data"), "synthetic_passt")
    c.data.split = ""
    c.data.frames = 298
    c.data.worker_count = 0
    c.data.synthetic = ml_collections.ConfigDict(dict(per_class=40, seconds=3.0, seed=0, sample_rate=32000))
    c.objective.update(dict(multilabel=False, drop_t=6, drop_f=2))
    c.train.update(dict(steps=300, batch_size=8, log_every=10, checkpoint_every=100))
    c.optim.update(dict(lr=1e-3, schedule="cosine", warmup_steps=30, weight_decay=0.01, clip_norm=1.0))
    return c
