"""Speech Commands v2 (Warden 2018): 35 words or the 12-class KWS task, official split lists, speakers as
groups; also the official test-set package."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import soundfile as sf

from audiorep.data.sources import common
from audiorep.data.sources.common import DatasetError, DatasetIndex, Record

SPEECH_COMMANDS_WORDS = (
    "backward", "bed", "bird", "cat", "dog", "down", "eight", "five", "follow", "forward", "four", "go", "happy",
    "house", "learn", "left", "marvin", "nine", "no", "off", "on", "one", "right", "seven", "sheila", "six",
    "stop", "three", "tree", "two", "up", "visual", "wow", "yes", "zero",
)
KWS_WORDS = ("down", "go", "left", "no", "off", "on", "right", "stop", "up", "yes")
SILENCE, UNKNOWN, BACKGROUND_NOISE = "_silence_", "_unknown_", "_background_noise_"
KWS12_CLASSES = (*KWS_WORDS, SILENCE, UNKNOWN)  # tensorflow_datasets' order
_SPEAKER_RE = re.compile(r"([0-9a-f]{8})_nohash_", re.IGNORECASE)


def _speaker(name: str) -> str | None:
    m = _SPEAKER_RE.search(name)
    return m.group(1).lower() if m else None


def _read_list(path: Path) -> list[tuple[int, str]]:
    common.require_file(path, "Speech Commands split list",
                        "It ships in the speech_commands_v0.02 archive next to the word folders; re-extract it.")
    out = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if line:
            if line.count("/") != 1 or not line.endswith(".wav"):
                raise DatasetError(f"{path}, line {n}: expected '<word>/<file>.wav', got {line!r}.")
            out.append((n, line))
    return out


def _speech_commands_test_package(root: Path) -> DatasetIndex:
    """The official 12-class test set (speech_commands_test_set_v0.02): root/<class>/<file>."""
    index_of = {c: i for i, c in enumerate(KWS12_CLASSES)}
    found = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    extra = [d for d in found if d not in index_of]
    if extra:
        raise DatasetError(
            f"{root / extra[0]}: folder {extra[0]!r} is not one of the 12 test-set classes {list(KWS12_CLASSES)}. "
            "Is this the speech_commands_test_set_v0.02 package?"
        )
    records = []
    for cls in KWS12_CLASSES:
        for p in sorted((root / cls).glob("*.wav")) if (root / cls).is_dir() else ():
            records.append(Record(
                path=str(p), labels=(index_of[cls],), label_names=(cls,), split="test", fold=None,
                group=_speaker(p.name), dataset="speech_commands",
            ))
    if not records:
        raise DatasetError(f"{root}: no .wav files in the class folders of the Speech Commands test package.")
    return DatasetIndex("speech_commands", records, KWS12_CLASSES, multilabel=False, problems=[], root=str(root))


def read_speech_commands(
    root: str | os.PathLike,
    *,
    num_classes: int = 35,
    test_root: str | None = None,
    silence_seconds: float = 1.0,
    silence_hop_s: float = 0.5,
    silence_validation_files: Sequence[str] = ("running_tap.wav",),
) -> DatasetIndex:
    """Speech Commands v2 (Warden 2018); group = speaker (the hash before `_nohash_`).

    Layout: root/<word>/<speaker>_nohash_<n>.wav for 35 words, root/_background_noise_/*.wav,
    root/validation_list.txt and root/testing_list.txt (relative paths, one a line); train = every other
    word file. Given the official test-set package instead (folders already the 12 classes, file names
    such as `_unknown_/backward_0c540988_nohash_0.wav.wav`), every record is split 'test'.

    Args:
      num_classes: 35 (every word; background noise is left out) or 12 (10 command words + `_silence_` +
        `_unknown_`, the KWS task of tensorflow_datasets and SUPERB/HEAR: other words become `_unknown_`).
      test_root: with num_classes=12, take the test split from the official test-set package at this path
        (as tensorflow_datasets does) instead of testing_list.txt.
      silence_seconds, silence_hop_s: with num_classes=12, `_silence_` training records are windows of this
        length and hop cut from the `_background_noise_` files (records carry start_s/end_s).
      silence_validation_files: background-noise files whose windows go to the validation split
        (tensorflow_datasets puts running_tap.wav there); the others go to train.
    """
    root = common.require_dir(Path(root).expanduser().resolve(), "Speech Commands folder",
                              "Pass the folder that holds the word folders and validation_list.txt.")
    if num_classes not in (12, 35):
        raise DatasetError(f"num_classes must be 35 (all words) or 12 (KWS task), got {num_classes!r}.")
    if not (root / "validation_list.txt").exists() and (root / SILENCE).is_dir() and (root / UNKNOWN).is_dir():
        return _speech_commands_test_package(root)
    val = _read_list(root / "validation_list.txt")
    test = _read_list(root / "testing_list.txt")
    common.check_unique([(p, str(root / "validation_list.txt"), n) for n, p in val]
                        + [(p, str(root / "testing_list.txt"), n) for n, p in test], "path")
    split_of = {p: "validation" for _, p in val} | {p: "test" for _, p in test}
    classes = SPEECH_COMMANDS_WORDS if num_classes == 35 else KWS12_CLASSES
    index_of = {c: i for i, c in enumerate(classes)}
    folders = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    stray = [d for d in folders if d not in SPEECH_COMMANDS_WORDS and d != BACKGROUND_NOISE]
    if stray:
        raise DatasetError(
            f"{root / stray[0]}: folder {stray[0]!r} is not one of the 35 Speech Commands v2 words. "
            "Remove it, or read the folder with the 'folder' reader."
        )
    listed = [(p, n, "validation_list.txt") for n, p in val] + [(p, n, "testing_list.txt") for n, p in test]
    for rel, n, name in listed:
        if rel.split("/")[0] not in SPEECH_COMMANDS_WORDS:
            raise DatasetError(f"{root / name}, line {n}: {rel!r} is not in a Speech Commands word folder.")
    records, problems = [], []
    use_test_package = num_classes == 12 and test_root is not None
    for word in folders:
        if word == BACKGROUND_NOISE:
            continue
        cls = word if num_classes == 35 or word in KWS_WORDS else UNKNOWN
        for p in sorted((root / word).glob("*.wav")):
            rel = f"{word}/{p.name}"
            split = split_of.get(rel, "train")
            if split == "test" and use_test_package:
                continue
            records.append(Record(
                path=str(p), labels=(index_of[cls],), label_names=(cls,), split=split, fold=None,
                group=_speaker(p.name), dataset="speech_commands",
            ))
    on_disk = {f"{Path(r.path).parent.name}/{Path(r.path).name}" for r in records}
    listed_missing = [p for p in split_of if p not in on_disk and not (use_test_package and split_of[p] == "test")]
    if listed_missing:
        problems.append(f"{len(listed_missing)} files named in validation_list.txt/testing_list.txt are missing "
                        f"(e.g. {listed_missing[0]})")
    if num_classes == 12:
        noise_dir = root / BACKGROUND_NOISE
        if not noise_dir.is_dir():
            problems.append(f"{noise_dir} not found: no _silence_ training records")
        else:
            if silence_seconds <= 0 or silence_hop_s <= 0:
                raise DatasetError("silence_seconds and silence_hop_s must be positive.")
            val_files = set(silence_validation_files)
            for p in sorted(noise_dir.glob("*.wav")):
                try:
                    info = sf.info(str(p))
                except (sf.LibsndfileError, RuntimeError) as err:
                    problems.append(f"{p}: unreadable background noise ({err}); no _silence_ windows cut from it")
                    continue
                seconds = info.frames / info.samplerate
                split = "validation" if p.name in val_files else "train"
                n_windows = int(np.floor((seconds - silence_seconds) / silence_hop_s + 1e-9)) + 1
                for k in range(max(n_windows, 0)):
                    start = round(k * silence_hop_s, 6)
                    records.append(Record(
                        path=str(p), labels=(index_of[SILENCE],), label_names=(SILENCE,), split=split, fold=None,
                        group=f"{BACKGROUND_NOISE}/{p.name}", dataset="speech_commands",
                        start_s=start, end_s=round(start + silence_seconds, 6),
                    ))
        if use_test_package:
            pkg = _speech_commands_test_package(common.require_dir(
                Path(test_root).expanduser().resolve(), "Speech Commands test-set package",
                "Pass test_root= the unpacked speech_commands_test_set_v0.02 folder."))
            records.extend(pkg.records)
    if not records:
        raise DatasetError(f"{root}: no .wav files found in the word folders.")
    # Expected word files: those on disk plus those the split lists name but are not there (training files are
    # listed nowhere, so only validation/test files can be found missing).
    return DatasetIndex("speech_commands", records, classes, multilabel=False, problems=problems, root=str(root),
                        listed=len(on_disk) + len(listed_missing),
                        missing=sorted(str(root / p) for p in listed_missing))
