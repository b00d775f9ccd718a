r"""Tiny masked token prediction (BEATs iteration 1 targets, BEST-RQ form) on the synthetic corpus: minutes on 2 CPUs.

  audiorep pretrain --config configs/tiny_masked_tokens.py --workdir /tmp/w
  audiorep pretrain --config configs/tiny_masked_tokens.py --workdir /tmp/w --config.train.steps=50   # smoke test

The demo's recipe (audiorep/demo.py) on the synthetic corpus alone: a 64-d, 2-block SSAST-patch encoder with
16 x 4 patches (16 mel bins x 40 ms) on 0.64 s windows (8 x 16 = 128 patches); every patch gets one of 1024
codes from a frozen random-projection tokenizer (tokenizers/random_projection.py); 5 whole time columns
(40 patches) are replaced by the mask embedding and the encoder predicts their codes (cross-entropy), while its
outputs at the visible patches reconstruct those patches (`visible_mse_weight=3`). `objective.predictor_depth=1`
is BEATs' form instead (the encoder sees only the visible patches, a label predictor predicts the codes). The
exported encoder embeds with statistics pooling of frequency-stacked tokens (`mean+std`, `stack`).
The corpus is written to $AUDIOREP_DATA/synthetic_ssast (default ~/audiorep_data) when it is missing.
"""

import os
from pathlib import Path

import ml_collections

from audiorep import demo


def get_config(arg=None) -> ml_collections.ConfigDict:
    del arg
    root = Path(os.environ.get("AUDIOREP_DATA", "~/audiorep_data")) / "synthetic_ssast"
    c = demo.demo_config(demo.DemoPlan(out_dir=root.parent, minutes=3000 / demo.STEPS_PER_MINUTE), data_root=root)
    c.data.dataset = "synthetic"
    c.data.synthetic = ml_collections.ConfigDict(dict(per_class=40, seconds=3.0, seed=0, sample_rate=16000))
    c.train.checkpoint_every = 500
    return c
