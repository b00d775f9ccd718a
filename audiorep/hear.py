"""HEAR API entry point: `hear-validator audiorep.hear -m MODEL_DIR` (implementation: audiorep.downstream.hear)."""

from audiorep.downstream.hear import get_scene_embeddings, get_timestamp_embeddings, load_model

__all__ = ["get_scene_embeddings", "get_timestamp_embeddings", "load_model"]
