"""SONICS (Rahman et al., ICLR 2025): real vs AI-generated songs, the official filter and split."""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from audiorep.data.sources import common
from audiorep.data.sources.common import DatasetError, DatasetIndex, Record

SONICS_CLASSES = ("real", "fake")
_SONICS_SPLITS = {"train": "train", "valid": "validation", "validation": "validation", "test": "test"}


def read_sonics(
    root: str | os.PathLike,
    *,
    min_duration: float = 30.0,
    drop_no_vocal: bool = True,
    audio_ext: str | Sequence[str] = (".mp3", ".wav"),
) -> DatasetIndex:
    """SONICS (Rahman et al., ICLR 2025): real vs AI-generated (Suno/Udio) songs, binary labels.

    Layout: root/real_songs.csv + root/real_songs/<filename>.<ext>, root/fake_songs.csv +
    root/fake_songs/<filename>.<ext>. The fake songs are distributed as mp3; the real ones are fetched from YouTube
    by the user (the official downloader writes wav), so each file is looked up with every suffix of `audio_ext`
    in turn and the first that exists is used. The official split (data_split.py) keeps duration >= 30 s and, for
    real songs, no_vocal == False (fake_songs.csv has no no_vocal column), then uses the `split` column
    (train/valid/test). Labels: real = 0, fake = 1 (the `target` column); the fake sub-type (full / half /
    mostly fake), the platform (`source`: Suno / Udio), the generator version (`algorithm`, e.g. chirp-v3.5,
    udio-120s) and the listed `duration` are in `Record.info`. Group: real songs by artist; fake songs by generation
    id (the file name without the `_<n>` take suffix: both takes of one prompt share a group).

    Args:
      min_duration: drop songs shorter than this (seconds, `duration` column).
      drop_no_vocal: drop real songs marked no_vocal.
      audio_ext: suffix of the audio files, or suffixes tried in order (a sequence or a comma-separated string;
        the first present file wins; a song found under none is listed as missing with the first suffix).
    """
    suffixes = tuple(e.strip() for e in audio_ext.split(",") if e.strip()) if isinstance(audio_ext, str) \
        else tuple(audio_ext)  # a string may list several: '.mp3,.wav' (-o audio_ext=.mp3,.wav)
    if not suffixes:
        raise DatasetError("audio_ext is empty; pass a suffix such as '.mp3' or several, e.g. ('.mp3', '.wav').")
    files = common.FileIndex()
    root = common.require_dir(Path(root).expanduser().resolve(), "SONICS folder",
                              "Pass the folder holding real_songs.csv, fake_songs.csv, real_songs/ and fake_songs/.")
    records, problems, keys = [], [], []
    for kind, label in (("real", 0), ("fake", 1)):
        csv_path = root / f"{kind}_songs.csv"
        required = ["filename", "duration", "split", "label"] + (["artist", "no_vocal"] if kind == "real" else [])
        rows = common.read_csv_rows(csv_path, required)
        dropped = Counter()
        for line, row in rows:
            keys.append((row["filename"], str(csv_path), line))
            split = _SONICS_SPLITS.get(row["split"].lower())
            if split is None:
                raise DatasetError(f"{csv_path}, line {line}: split {row['split']!r} is not train/valid/test.")
            if common.parse_float(row["duration"], csv_path, line, "duration") < min_duration:
                dropped["shorter than min_duration"] += 1
                continue
            if kind == "real" and drop_no_vocal and common.parse_bool(row["no_vocal"], csv_path, line, "no_vocal"):
                dropped["no_vocal"] += 1
                continue
            target = row.get("target")
            if target not in (None, "") and common.parse_int(target, csv_path, line, "target") != label:
                raise DatasetError(f"{csv_path}, line {line}: target {row['target']} but every row of "
                                   f"{csv_path.name} must be {label} ({kind}).")
            if kind == "real":
                group = f"artist:{row['artist']}"
                extra = {"subtype": row["label"], "duration": row["duration"]}
            else:
                group = "gen:" + re.sub(r"_\d+$", "", row["filename"])
                extra = {"subtype": row["label"], "source": row.get("source") or "",
                         "algorithm": row.get("algorithm") or "", "duration": row["duration"]}
            candidates = [str(root / f"{kind}_songs" / f"{row['filename']}{ext}") for ext in suffixes]
            path = next((c for c in candidates if files.exists(c)), candidates[0])
            records.append(Record(
                path=path, labels=(label,),
                label_names=(SONICS_CLASSES[label],), split=split, fold=None, group=group, dataset="sonics",
                extra=tuple(sorted(extra.items())),
            ))
        for why, n in sorted(dropped.items()):
            problems.append(f"{csv_path.name}: {n} songs dropped ({why}, official filter)")
    common.check_unique(keys, "filename")
    listed = len(records)
    records, missing = common.drop_missing(records, problems, "real_songs.csv/fake_songs.csv",
                                           "Real songs are not distributed: fetch them by youtube_id into real_songs/.")
    return DatasetIndex("sonics", records, SONICS_CLASSES, multilabel=False, problems=problems, root=str(root),
                        listed=listed, missing=missing)
