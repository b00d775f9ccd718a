"""TFDS builders that read a manual dir and write ArrayRecord (no TensorFlow needed)."""
