"""Local dataset readers: a dataset's canonical on-disk layout -> a list of `Record`s.

Every training, export and probing job reads data through this package (directly, or through the TFDS
builders in `data/tfds/` and the grain pipelines in `data/pipeline.py`). Nothing here downloads or decodes
audio: readers parse metadata, check that the files exist, and say precisely what is wrong with a layout
(which file, which line, what was expected). `check_audio` is the separate, explicit pass that opens the
audio files.

    index = read_dataset("esc50", "/data/ESC-50-master", esc10=True)
    index.records[0]   # Record(path='/data/.../1-100038-A-14.wav', labels=(3,), ..., fold=1, group='100038')

One module per dataset family: folder, esc50, speech_commands, audioset, sonics, asvspoof (2019 LA, 2021
LA / DF), inthewild, mlaad, deepfake (a user's bona fide / spoof folder); `common` holds Record /
DatasetIndex / DatasetError and the shared parsing helpers, `check` the audio check, `registry` the reader
table. Readers (names for `read_dataset`): folder, esc50, speech_commands, audioset, sonics,
asvspoof2019_la, asvspoof2021_la, asvspoof2021_df, in_the_wild, mlaad, deepfake_folder. `READERS` describes
each one's expected layout and options (`audiorep datasets list`). A `Record.group` is the unit that must not
be split across train and test (speaker, source recording, artist, generation prompt), so protocols can keep
groups disjoint. Spoofing readers put the metadata they know (`METADATA_KEYS`: attack_id, speaker, gender,
language, source, word) in `Record.info`, for the cross-domain protocols and per-group metrics.
"""

from audiorep.data.sources.asvspoof import (
    SPOOF_CLASSES,
    read_asvspoof2019_la,
    read_asvspoof2021,
    read_asvspoof2021_df,
    read_asvspoof2021_la,
)
from audiorep.data.sources.audioset import AUDIOSET_SPLITS, read_audioset
from audiorep.data.sources.check import AudioCheck, check_audio
from audiorep.data.sources.common import (
    METADATA_KEYS,
    SPLITS,
    DatasetError,
    DatasetIndex,
    FileIndex,
    Record,
    audio_extensions,
    check_unique,
    drop_missing,
    files_under,
    metadata_extra,
    parse_bool,
    parse_float,
    parse_int,
    read_csv_rows,
    require_dir,
    require_file,
)
from audiorep.data.sources.deepfake import read_deepfake_folder
from audiorep.data.sources.esc50 import ESC10_CLASSES, ESC50_CLASSES, read_esc50
from audiorep.data.sources.folder import FOLDER_SPLIT_NAMES, read_folder
from audiorep.data.sources.inthewild import read_in_the_wild
from audiorep.data.sources.mlaad import read_mlaad
from audiorep.data.sources.registry import READERS, Reader, read_dataset
from audiorep.data.sources.sonics import SONICS_CLASSES, read_sonics
from audiorep.data.sources.speech_commands import (
    BACKGROUND_NOISE,
    KWS12_CLASSES,
    KWS_WORDS,
    SILENCE,
    SPEECH_COMMANDS_WORDS,
    UNKNOWN,
    read_speech_commands,
)

__all__ = [
    "AUDIOSET_SPLITS", "BACKGROUND_NOISE", "ESC10_CLASSES", "ESC50_CLASSES", "FOLDER_SPLIT_NAMES", "KWS12_CLASSES",
    "KWS_WORDS", "METADATA_KEYS", "READERS", "SILENCE", "SONICS_CLASSES", "SPEECH_COMMANDS_WORDS", "SPLITS",
    "SPOOF_CLASSES", "UNKNOWN", "AudioCheck", "DatasetError", "DatasetIndex", "FileIndex", "Reader", "Record",
    "audio_extensions", "check_audio", "check_unique", "drop_missing", "files_under", "metadata_extra",
    "parse_bool", "parse_float", "parse_int", "read_asvspoof2019_la", "read_asvspoof2021",
    "read_asvspoof2021_df", "read_asvspoof2021_la", "read_audioset", "read_csv_rows", "read_dataset",
    "read_deepfake_folder", "read_esc50", "read_folder", "read_in_the_wild", "read_mlaad", "read_sonics",
    "read_speech_commands", "require_dir", "require_file",
]
