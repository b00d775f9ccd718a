r"""Tiny SSAST (patch-based MSPM) on the synthetic corpus: trains in a few minutes on a 2-core CPU.

  audiorep pretrain --config configs/tiny_ssast.py --workdir /tmp/w
  audiorep pretrain --config configs/tiny_ssast.py --workdir /tmp/w --config.train.steps=50   # smoke test

The first run writes the synthetic corpus (audiorep.data.synthetic, ~40 MB) to
$AUDIOREP_DATA/synthetic_ssast (default ~/audiorep_data) when it is missing. Ctrl-C saves and exits; the
same command resumes. The encoder is exported to /tmp/w/export (audiorep.load('/tmp/w/export')).
Same recipe as ssast_patch_base.py, shrunk: 64-d, 2 layers, 256 frames (8 x 16 patches, 100 masked).
"""

import os

import ml_collections
import ssast_patch_base


def get_config(arg=None) -> ml_collections.ConfigDict:
    c = ssast_patch_base.get_config(arg)
    c.model.preset = "ssast-patch-tiny"
    c.data.dataset = "synthetic"
    c.data.root = os.path.join(os.environ.get("AUDIOREP_DATA", "~/audiorep_data"), "synthetic_ssast")
    c.data.split = ""
    c.data.frames = 256
    c.data.worker_count = 0
    c.data.synthetic = ml_collections.ConfigDict(dict(per_class=40, seconds=3.0, seed=0, sample_rate=16000))
    c.objective.masked = 100
    c.train.update(dict(steps=300, batch_size=8, log_every=10, checkpoint_every=100))
    c.optim.update(dict(lr=1e-3, schedule="cosine", warmup_steps=30, weight_decay=0.01, clip_norm=1.0))
    return c
