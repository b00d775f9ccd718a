"""AudioSet (Gemmeke et al. 2017): local copies of the 10 s segments, 527 classes, multi-label."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

from audiorep.data.sources import common
from audiorep.data.sources.common import DatasetError, DatasetIndex, Record

AUDIOSET_SPLITS = {"balanced_train": "train", "unbalanced_train": "train", "eval": "test"}


def read_audioset(
    root: str | os.PathLike,
    *,
    splits: Sequence[str] | None = None,
    file_pattern: str = "{ytid}.wav",
    audio_dir: str = "{split}",
) -> DatasetIndex:
    """AudioSet (Gemmeke et al. 2017): 527 classes, multi-label, local copies of the 10 s segments.

    Layout: root/class_labels_indices.csv (index,mid,display_name), root/{split}_segments.csv (three `#`
    lines, then `YTID, start_seconds, end_seconds, "mid,mid"`), and the clips at
    root/<audio_dir>/<file_pattern>. Clips that are not on disk (deleted videos) are counted in
    `problems`, not fatal. Record.split: balanced_train/unbalanced_train -> 'train', eval -> 'test'; the
    AudioSet split name and segment times are in `Record.info`; group = YouTube id.

    Args:
      splits: among balanced_train, unbalanced_train, eval; default: each whose segments CSV exists.
      file_pattern: clip file name; placeholders {ytid}, {start}, {end} (as written in the CSV, e.g.
        30.000), {start_int}, {end_int}, {split}. Common: '{ytid}.wav', 'Y{ytid}.wav', '{ytid}_{start}.flac'.
      audio_dir: sub-folder of root holding the clips, may use {split}; '' = root itself.
    """
    root = common.require_dir(Path(root).expanduser().resolve(), "AudioSet folder",
                              "Pass the folder holding class_labels_indices.csv and the *_segments.csv files.")
    labels_csv = root / "class_labels_indices.csv"
    rows = common.read_csv_rows(labels_csv, ("index", "mid", "display_name"))
    mids, classes = [], []
    for expected, (line, row) in enumerate(rows):
        if common.parse_int(row["index"], labels_csv, line, "index") != expected:
            raise DatasetError(f"{labels_csv}, line {line}: index {row['index']} should be {expected} (rows in order).")
        mids.append(row["mid"])
        classes.append(row["display_name"])
    common.check_unique(((m, str(labels_csv), rows[i][0]) for i, m in enumerate(mids)), "mid")
    index_of = {m: i for i, m in enumerate(mids)}
    if splits is None:
        splits = [s for s in AUDIOSET_SPLITS if (root / f"{s}_segments.csv").is_file()]
        if not splits:
            raise DatasetError(f"{root}: no balanced_train/unbalanced_train/eval _segments.csv files found.")
    for s in splits:
        if s not in AUDIOSET_SPLITS:
            raise DatasetError(f"unknown AudioSet split {s!r}; splits are {list(AUDIOSET_SPLITS)}.")
    for key in re.findall(r"{(\w+)}", file_pattern + audio_dir):
        if key not in ("ytid", "start", "end", "start_int", "end_int", "split"):
            raise DatasetError(f"file_pattern/audio_dir placeholder {{{key}}} is unknown; use "
                               "{ytid}, {start}, {end}, {start_int}, {end_int}, {split}.")
    records, problems, seen, missing = [], [], [], []
    files = common.FileIndex()
    needs_ints = "_int}" in file_pattern + audio_dir
    for s in splits:
        seg_csv = root / f"{s}_segments.csv"
        seg_rows = common.read_csv_rows(seg_csv, ("YTID", "start_seconds", "end_seconds", "positive_labels"),
                                        skip_comment_lines=3, skipinitialspace=True,
                                        fieldnames=("YTID", "start_seconds", "end_seconds", "positive_labels"))
        split, split_records, n_listed, first_missing = AUDIOSET_SPLITS[s], [], 0, None
        base = os.path.normpath(os.path.join(str(root), audio_dir.format(split=s, ytid="", start="", end="",
                                                                          start_int="", end_int="")))
        per_clip_dir = any(k in audio_dir for k in ("{ytid", "{start", "{end"))
        for line, row in seg_rows:
            ytid, start, end, positive = row["YTID"], row["start_seconds"], row["end_seconds"], row["positive_labels"]
            if ytid.startswith("#"):
                continue
            if positive is None or end is None:
                raise DatasetError(f"{seg_csv}, line {line}: expected 4 fields `YTID, start, end, \"labels\"`.")
            seen.append((ytid, str(seg_csv), line))
            n_listed += 1
            try:
                idx = sorted({index_of[m.strip()] for m in positive.split(",")})
            except KeyError as err:
                raise DatasetError(f"{seg_csv}, line {line}: label {err.args[0]!r} is not in {labels_csv.name}; "
                                   "use the class_labels_indices.csv of the same AudioSet release.") from None
            fields = dict(ytid=ytid, start=start, end=end, split=s)
            if needs_ints:
                fields.update(start_int=int(common.parse_float(start, seg_csv, line, "start_seconds")),
                              end_int=int(common.parse_float(end, seg_csv, line, "end_seconds")))
            folder = os.path.normpath(os.path.join(str(root), audio_dir.format(**fields))) if per_clip_dir else base
            path = os.path.join(folder, file_pattern.format(**fields))
            if not files.exists(path):
                first_missing = first_missing or path
                missing.append(path)
                continue
            split_records.append(Record(
                path=path, labels=tuple(idx), label_names=tuple(classes[i] for i in idx), split=split, fold=None,
                group=ytid, dataset="audioset",
                extra=(("audioset_split", s), ("segment_end", end), ("segment_start", start), ("ytid", ytid)),
            ))
        if len(split_records) < n_listed:
            problems.append(f"{s}: {n_listed - len(split_records)} of {n_listed} clips missing "
                            f"(e.g. {first_missing}; check file_pattern/audio_dir if all are missing)")
        records.extend(split_records)
    common.check_unique(seen, "YTID")
    if not records:
        raise DatasetError(
            f"{root}: none of the clips listed in the segment CSVs exist; the first was expected at "
            f"{root / audio_dir} with file_pattern {file_pattern!r}. Set file_pattern/audio_dir to your copy's naming."
        )
    return DatasetIndex("audioset", records, tuple(classes), multilabel=True, problems=problems, root=str(root),
                        listed=len(records) + len(missing), missing=sorted(missing))
