r"""SSAST frame-based Base: masked spectrogram patch modelling on 128x2 frame patches (Gong et al., 2022).

  audiorep pretrain --config configs/ssast_frame_base.py --workdir gs://bucket/ssast-frame \
      --config.data.root=/data/audioset_librispeech_tfds

Same recipe as ssast_patch_base.py (run_mask_frame.sh) except the patches: 128 x 2 (one per two frames),
1 x 512 patches on 1024 frames, 400 masked by plain random sampling (the official code notes that
cluster masking hurts for frames). Frame-based SSAST is the stronger choice for speech tasks
(README averages: speech 84.0 vs 79.5 for patch-based).
"""

import ml_collections
import ssast_patch_base


def get_config(arg=None) -> ml_collections.ConfigDict:
    c = ssast_patch_base.get_config(arg)
    c.model.preset = "ssast-frame"
    c.objective.mask = "random"
    return c
