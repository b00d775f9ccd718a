"""Flax NNX encoders (BEATs, SSAST/AST, PaSST) and what turns them into models.

layers.py, deit.py (the DeiT trunk SSAST/AST and PaSST share) and one module per encoder; families.py (family
name -> config and encoder classes), bundle.py (frontend + encoder + pooling + window), model_dir.py (the on-disk
model directory), registry.py (named models, `get_bundle`), convert/ (official PyTorch checkpoints -> model
directories).
"""
