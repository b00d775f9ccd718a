r"""Tiny PaSST, supervised with structured patchout and mixup on the synthetic corpus (CPU, minutes).

  audiorep pretrain --config configs/tiny_passt.py --workdir /tmp/wp

The synthetic corpus (12 classes, 32 kHz, 3 s) is written to $AUDIOREP_DATA/synthetic_passt (default
~/audiorep_data) on first use. Same recipe as passt_s_audioset.py, shrunk: 64-d, 2 layers, 298 frames
(12 x 29 patches; 6 time columns and 2 frequency rows dropped), multi-class CE on 12 classes.
"""

import cpu_scale
import ml_collections
import passt_s_audioset


def get_config(arg=None) -> ml_collections.ConfigDict:
    c = passt_s_audioset.get_config(arg)
    c.model.preset = "passt-s-tiny"
    c.model.overrides.num_classes = 12
    c.objective.update(dict(multilabel=False, drop_t=6, drop_f=2))
    return cpu_scale.on_synthetic_corpus(c, corpus="synthetic_passt", frames=298, sample_rate=32000)
