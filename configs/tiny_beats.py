r"""Tiny BEATs (masked acoustic token prediction) on the synthetic corpus: trains in minutes on a 2-core CPU.

  audiorep pretrain --config configs/tiny_beats.py --workdir /tmp/b
  audiorep pretrain --config configs/tiny_beats.py:steps=50 --workdir /tmp/b          # smoke test
  audiorep pretrain --config configs/tiny_beats.py --workdir /tmp/b --config.iterations.count=2

The recipe of beats_iter.py, shrunk: the `beats-tiny` encoder (models/beats.py: the BEATs layout -- patch conv,
conv positional embedding, DeepNorm post-LN layers with the gated T5 relative position bias -- at 64-d, 2
layers, 94 k parameters) on the 'beats' frontend; 1.6 s windows (160 frames: 10 time x 8 frequency
patches of 16 x 16 = 80 time-major tokens), 75 % of them (60) masked at random; the encoder sees the 20
visible patches, a 2-block label predictor with its own relative position bias fills the grid back in and
predicts each masked patch's code among 1024 of a frozen random-projection tokenizer (cross-entropy).
Batch 16, AdamW lr 1e-3 with warm-up (a tenth of the steps, at most 100) and cosine decay.

The first run writes the synthetic corpus (audiorep.data.synthetic, 40 clips per class of 3 s) to
$AUDIOREP_DATA/synthetic_beats (default ~/audiorep_data) when it is missing. Ctrl-C saves and exits; the same
command resumes. The encoder is exported to /tmp/b/export -- with iterations, /tmp/b/iter<k>/export -- a
family 'beats' model directory: `audiorep.load('/tmp/b/export')` embeds with it exactly as with a converted
official BEATs checkpoint. docs/results.md has what this encoder scored against its own random
initialisation and log-mel under the demo's probe.

arg: `steps=N` (default 1500).
"""

import beats_iter
import cpu_scale
import ml_collections

from audiorep.pretrain.config import parse_arg

FRAMES = 160  # 1.6 s: 10 time patches x 8 frequency patches


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    a = parse_arg(arg, steps=1500)
    c = beats_iter.get_config()
    c.model.preset = "beats-tiny"
    c.objective.masked = beats_iter.masked_count(FRAMES)
    c.objective.predictor_depth = 2
    c.train.compute_dtype = "float32"
    c.data.options = ml_collections.ConfigDict()
    c = cpu_scale.on_synthetic_corpus(c, corpus="synthetic_beats", frames=FRAMES, sample_rate=16000)
    c.train.update(dict(steps=a.steps, batch_size=16, checkpoint_every=500, keep_checkpoints=2))
    c.optim.update(dict(warmup_steps=min(100, a.steps // 10), b2=0.999, eps=1e-8, clip_norm=1.0))
    return c
