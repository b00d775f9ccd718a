"""The reader table: names for `read_dataset`, each with the layout it expects (`audiorep datasets list`)."""

from __future__ import annotations

import functools
import inspect
import os
from collections.abc import Callable
from dataclasses import dataclass

from audiorep.data.sources.asvspoof import read_asvspoof2019_la, read_asvspoof2021_df, read_asvspoof2021_la
from audiorep.data.sources.audioset import read_audioset
from audiorep.data.sources.common import DatasetError, DatasetIndex
from audiorep.data.sources.deepfake import read_deepfake_folder
from audiorep.data.sources.esc50 import read_esc50
from audiorep.data.sources.folder import read_folder
from audiorep.data.sources.inthewild import read_in_the_wild
from audiorep.data.sources.mlaad import read_mlaad
from audiorep.data.sources.sonics import read_sonics
from audiorep.data.sources.speech_commands import read_speech_commands


@dataclass(frozen=True)
class Reader:
    """A registered reader: the function and a one-paragraph description of the layout it expects."""

    name: str
    fn: Callable[..., DatasetIndex]
    layout: str

    @property
    def options(self) -> dict[str, inspect.Parameter]:
        """Keyword options of the reader (everything but root, and what a `functools.partial` reader fixes)."""
        fixed = set(self.fn.keywords) if isinstance(self.fn, functools.partial) else set()
        params = inspect.signature(self.fn).parameters
        return {k: p for k, p in params.items() if k != "root" and k not in fixed}


READERS: dict[str, Reader] = {
    "folder": Reader("folder", read_folder,
                     "root/<class>/<clip>.<ext> (labels from sub-folders) or flat root/<clip> (unlabelled or "
                     "label_regex); optional root/{train,validation,test}/ split folders; optional meta.csv "
                     "(path, group); or root/labels.csv (path, label [, split, group/speaker, metadata columns])"),
    "esc50": Reader("esc50", read_esc50,
                    "root/meta/esc50.csv (filename,fold,target,category,esc10,src_file,take) + root/audio/*.wav"),
    "speech_commands": Reader("speech_commands", read_speech_commands,
                              "root/<word>/<speaker>_nohash_<n>.wav, root/_background_noise_/, "
                              "root/validation_list.txt, root/testing_list.txt; or the test-set package "
                              "root/{yes,...,_silence_,_unknown_}/"),
    "audioset": Reader("audioset", read_audioset,
                       "root/class_labels_indices.csv, root/{balanced_train,unbalanced_train,eval}_segments.csv, "
                       "clips at root/<audio_dir>/<file_pattern> (default {split}/{ytid}.wav)"),
    "sonics": Reader("sonics", read_sonics,
                     "root/real_songs.csv + root/real_songs/<filename>.{mp3,wav}, root/fake_songs.csv + "
                     "root/fake_songs/<filename>.{mp3,wav}"),
    "asvspoof2019_la": Reader("asvspoof2019_la", read_asvspoof2019_la,
                              "root/ASVspoof2019_LA_cm_protocols/ASVspoof2019.LA.cm.{train.trn,dev.trl,eval.trl}.txt "
                              "+ root/ASVspoof2019_LA_{train,dev,eval}/flac/<FILE>.flac"),
    "asvspoof2021_la": Reader("asvspoof2021_la", read_asvspoof2021_la,
                              "root/ASVspoof2021_LA_eval/flac/<TRIAL>.flac + root/keys/LA/CM/trial_metadata.txt "
                              "(LA-keys-full: SPEAKER TRIAL CODEC TRANSMISSION ATTACK KEY TRIM SUBSET)"),
    "asvspoof2021_df": Reader("asvspoof2021_df", read_asvspoof2021_df,
                              "root/ASVspoof2021_DF_eval[_partNN/ASVspoof2021_DF_eval]/flac/<TRIAL>.flac + "
                              "root/keys/DF/CM/trial_metadata.txt (DF-keys-full: 13 columns, SPEAKER TRIAL CODEC "
                              "SOURCE ATTACK KEY TRIM SUBSET VOCODER TASK TEAM GENDER_PAIR LANGUAGE)"),
    "in_the_wild": Reader("in_the_wild", read_in_the_wild, "root/meta.csv (file,speaker,label) + root/<file>.wav"),
    "mlaad": Reader("mlaad", read_mlaad,
                    "root/fake/<language>/<system>/meta.csv (path|original_file|language|...|model_name|...) + the "
                    "clips beside it; bona fide from an M-AILABS tree (bonafide_root: <locale>/by_book/<gender>/"
                    "<speaker>/<book>/wavs/*.wav)"),
    "deepfake_folder": Reader("deepfake_folder", read_deepfake_folder,
                              "root/bonafide/**/<clip> + root/spoof/<attack>/**/<clip>, or root/labels.csv (path, "
                              "label = bonafide|spoof [, attack_id, speaker, gender, language, source, word])"),
}


def read_dataset(name: str, root: str | os.PathLike, **options) -> DatasetIndex:
    """Read a dataset's local copy with the named reader (see `READERS`).

    Raises:
      DatasetError: unknown reader or option, or a layout/metadata problem (naming the file and line).
    """
    if name not in READERS:
        raise DatasetError(f"unknown dataset reader {name!r}; readers are {sorted(READERS)}.")
    reader = READERS[name]
    unknown = sorted(set(options) - set(reader.options))
    if unknown:
        raise DatasetError(f"reader {name!r} has no option(s) {unknown}; its options are {sorted(reader.options)}.")
    return reader.fn(root, **options)
