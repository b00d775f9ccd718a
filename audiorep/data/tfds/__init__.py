"""TFDS builders that read a manual dir and write ArrayRecord (no TensorFlow needed).

    from audiorep.data import tfds as atfds
    prepared = atfds.prepare("esc50", "/data/ESC-50-master", "/data/tfds", sample_rate=16000)
    source = atfds.data_source(prepared.path, "train")     # random access, numpy dicts, int16 audio

Importing this package registers the builders (`audiorep_folder`, `audiorep_esc50`, ...) with TFDS, so
`tfds.data_source("audiorep_esc50/16k", data_dir="/data/tfds")` works too. See builder.py.
"""

from audiorep.data.tfds.builder import (
    BUILDERS,
    UNSPLIT,
    AudioBuilder,
    AudioBuilderConfig,
    Prepared,
    PrepareError,
    builder_class,
    clip_lengths,
    config_name,
    data_source,
    find_prepared,
    from_pcm16,
    make_config,
    open_prepared,
    prepare,
    stale_builds,
    to_pcm16,
)

__all__ = [
    "BUILDERS", "UNSPLIT", "AudioBuilder", "AudioBuilderConfig", "Prepared", "PrepareError", "builder_class",
    "clip_lengths", "config_name", "data_source", "find_prepared", "from_pcm16", "make_config", "open_prepared",
    "prepare", "stale_builds", "to_pcm16",
]
