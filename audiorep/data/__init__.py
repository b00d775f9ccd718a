"""Local dataset readers, TFDS ArrayRecord builders, grain pipelines and the synthetic corpus."""
