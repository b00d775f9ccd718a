r"""Tiny SSAST (patch-based MSPM) on the synthetic corpus: trains in a few minutes on a 2-core CPU.

  audiorep pretrain --config configs/tiny_ssast.py --workdir /tmp/w
  audiorep pretrain --config configs/tiny_ssast.py --workdir /tmp/w --config.train.steps=50   # smoke test

The first run writes the synthetic corpus (audiorep.data.synthetic, ~40 MB) to
$AUDIOREP_DATA/synthetic_ssast (default ~/audiorep_data) when it is missing. Ctrl-C saves and exits; the
same command resumes. The encoder is exported to /tmp/w/export (audiorep.load('/tmp/w/export')).
Same recipe as ssast_patch_base.py, shrunk: 64-d, 2 layers, 256 frames (8 x 16 patches, 100 masked).
"""

import cpu_scale
import ml_collections
import ssast_patch_base


def get_config(arg=None) -> ml_collections.ConfigDict:
    c = ssast_patch_base.get_config(arg)
    c.model.preset = "ssast-patch-tiny"
    c.objective.masked = 100
    return cpu_scale.on_synthetic_corpus(c, corpus="synthetic_ssast", frames=256, sample_rate=16000)
