"""What the tiny configs share: a full recipe shrunk to train on the synthetic corpus in minutes on a CPU.

Imported by tiny_ssast.py and tiny_passt.py (the config loader puts this folder on the path).
"""

import os

import ml_collections


def on_synthetic_corpus(c: ml_collections.ConfigDict, *, corpus: str, frames: int,
                        sample_rate: int) -> ml_collections.ConfigDict:
    """Point recipe `c` at the synthetic corpus $AUDIOREP_DATA/`corpus` (default ~/audiorep_data; written on first
    use: 40 clips per class, 3 s at `sample_rate`), `frames` frames per example, read in-process, and give it the
    CPU schedule: 300 steps of batch 8, cosine lr 1e-3 with 30 warm-up steps, a checkpoint every 100."""
    c.data.dataset = "synthetic"
    c.data.root = os.path.join(os.environ.get("AUDIOREP_DATA", "~/audiorep_data"), corpus)
    c.data.split = ""
    c.data.frames = frames
    c.data.worker_count = 0
    c.data.synthetic = ml_collections.ConfigDict(dict(per_class=40, seconds=3.0, seed=0, sample_rate=sample_rate))
    c.train.update(dict(steps=300, batch_size=8, log_every=10, checkpoint_every=100))
    c.optim.update(dict(lr=1e-3, schedule="cosine", warmup_steps=30, weight_decay=0.01, clip_norm=1.0))
    return c
