"""Pretraining: masking, objectives, the sharded resumable trainer, multi-host setup."""
