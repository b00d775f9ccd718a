r"""BEATs (Chen et al., ICML 2023, arXiv 2212.09058): masked acoustic token prediction, paper scale.

  audiorep pretrain --config configs/beats_iter.py --workdir gs://bucket/beats \
      --config.data.root=/data/audioset_tfds
  audiorep pretrain --config configs/beats_iter.py --workdir gs://bucket/beats \
      --config.data.root=/data/audioset_tfds --config.iterations.count=3 --config.train.export_dir=/local/beats

The encoder is BEATS_BASE (models/beats.py: the released checkpoints' architecture, 90 M parameters: 12
post-LN DeepNorm layers of 768, T5 relative position bias with the gated variant, conv positional embedding)
on the 'beats' frontend (128-bin Kaldi fbank, 25 ms / 10 ms, the official normalisation). A 10 s AudioSet clip
gives 998 frames, of which the patch conv reads 992: 62 time x 8 frequency patches of 16 x 16 = 496 tokens,
ordered time-major. 75 % of them (372) are masked uniformly at random (the paper's random masking); the encoder
runs on the 124 visible patches only, with its relative position bias over their original positions; a label
predictor (pretrain/objectives.py `LabelPredictor`: the encoded patches back at their positions, a mask
embedding at each masked one, pre-LN blocks with their own relative position bias over the full grid) predicts
the tokenizer's label of each masked patch; loss = cross-entropy over the masked patches. Iteration 1's
tokenizer is a frozen random projection with 1024 codes (tokenizers/random_projection.py); later iterations
(`iterations.count > 1`, pretrain/iterations.py) learn the labels of a tokenizer made from the previous encoder.
The export (WORKDIR/export, or iterations' WORKDIR/iter<k>/export) is a family 'beats' model directory that
`audiorep.load` opens as it opens a converted official BEATs checkpoint.

From the paper: AudioSet-2M, 16 x 16 patches, 128-bin fbank, 75 % masking, random-projection tokenizer in
iteration 1, 1024-code tokenizers, a label predictor over encoded patches plus mask embeddings, the encoder
architecture (the released checkpoints). UNVERIFIED (recollections of the paper's implementation details, to
be checked against it before a paper-scale run): 400k steps, batch 5.6K seconds of audio (560 clips of 10 s),
peak lr 5e-4 with AdamW. Our choices, not from the paper: the label predictor's depth (3 blocks), its
relative position bias, the random projection's 16-d code space (BEST-RQ's), the 32k-step linear warm-up and
cosine decay, betas (0.9, 0.98) and eps 1e-6 (fairseq's usual), weight decay 0.01, gradient clipping at 10,
bfloat16 compute. The official release has no
training code, so none of this is checked against it. The data default is an ArrayRecord build
(`audiorep datasets prepare audioset --root ... --out ...`, data/tfds); any reader dataset works
(`--config.data.dataset=audioset --config.data.root=...`).
"""

import ml_collections

CLIP_FRAMES = 992  # 10 s of 'beats' fbank (998 frames) cut to whole 16-frame patches: 62 x 8 = 496 tokens
MASK_RATIO = 0.75  # the paper's masking ratio


def masked_count(frames: int, mel_bins: int = 128, patch: int = 16, ratio: float = MASK_RATIO) -> int:
    """How many of the (frames // patch) x (mel_bins // patch) patches `ratio` masks."""
    return int(round(ratio * (frames // patch) * (mel_bins // patch)))


def get_config(arg=None) -> ml_collections.ConfigDict:
    del arg
    c = ml_collections.ConfigDict()
    c.model = ml_collections.ConfigDict(dict(family="beats", preset="beats", overrides=ml_collections.ConfigDict()))
    c.frontend = "beats"
    c.data = ml_collections.ConfigDict(dict(root="/data/audioset_tfds", frames=CLIP_FRAMES))
    c.objective = ml_collections.ConfigDict(dict(
        name="masked_tokens", masked=masked_count(CLIP_FRAMES), mask="random", tokenizer="random_projection",
        codebook_size=1024, code_dim=16, tokenizer_seed=0, predictor_depth=3, visible_weight=0.0,
        visible_mse_weight=0.0, masked_mse_weight=0.0, target_norm="none", gain_db=0.0,
        teacher="", teacher_layer=-1, kmeans_batches=16, kmeans_iters=25, init_from_teacher=False))
    c.train = ml_collections.ConfigDict(dict(steps=400_000, batch_size=560, compute_dtype="bfloat16", log_every=100,
                                             checkpoint_every=5000))
    c.optim = ml_collections.ConfigDict(dict(
        lr=5e-4, schedule="cosine", warmup_steps=32_000, end_lr_ratio=0.0, b1=0.9, b2=0.98, eps=1e-6,
        weight_decay=0.01, clip_norm=10.0, layer_decay=1.0, ema_decay=0.0))
    c.export_pooling = "mean"
    return c
