"""ASVspoof 2019 logical access: countermeasure protocols, bona fide vs spoof, speakers as groups.

`SPOOF_CLASSES` is the label set every spoofing reader shares, so a detector trained on one scores on another.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from audiorep.data.sources import common
from audiorep.data.sources.common import DatasetError, DatasetIndex, Record

SPOOF_CLASSES = ("bonafide", "spoof")
_ASV_SPLITS = {"train": ("train", "trn"), "dev": ("validation", "trl"), "eval": ("test", "trl")}


def read_asvspoof2019_la(
    root: str | os.PathLike,
    *,
    splits: Sequence[str] = ("train", "dev", "eval"),
) -> DatasetIndex:
    """ASVspoof 2019 logical access, countermeasure protocols; classes bonafide = 0, spoof = 1.

    Layout (root = the LA folder): ASVspoof2019_LA_cm_protocols/ASVspoof2019.LA.cm.{train.trn,dev.trl,
    eval.trl}.txt with whitespace-separated lines `SPEAKER FILE - SYSTEM KEY`, audio at
    ASVspoof2019_LA_{train,dev,eval}/flac/FILE.flac. Split: train -> 'train', dev -> 'validation',
    eval -> 'test'; group = speaker; the attack system (A01-A19, '-' for bona fide) is `info['system']`.
    """
    root = Path(root).expanduser().resolve()
    if not (root / "ASVspoof2019_LA_cm_protocols").is_dir() and (root / "LA" / "ASVspoof2019_LA_cm_protocols").is_dir():
        root = root / "LA"
    proto_dir = common.require_dir(root / "ASVspoof2019_LA_cm_protocols", "ASVspoof 2019 LA protocol folder",
                                   f"Point {common.DATASET_ROOT} at the unpacked LA folder.")
    records, keys, problems = [], [], []
    for s in splits:
        if s not in _ASV_SPLITS:
            raise DatasetError(f"unknown ASVspoof split {s!r}; splits are {list(_ASV_SPLITS)}.")
        split, suffix = _ASV_SPLITS[s]
        proto = common.require_file(proto_dir / f"ASVspoof2019.LA.cm.{s}.{suffix}.txt", "ASVspoof protocol file",
                                    "Re-extract LA.zip; the cm protocols ship in ASVspoof2019_LA_cm_protocols/.")
        flac = root / f"ASVspoof2019_LA_{s}" / "flac"
        for n, line in enumerate(proto.read_text().splitlines(), 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 5:
                raise DatasetError(f"{proto}, line {n}: expected 5 fields `SPEAKER FILE - SYSTEM KEY`, got {line!r}.")
            speaker, file, _, system, key = parts
            if key not in SPOOF_CLASSES:
                raise DatasetError(f"{proto}, line {n}: key {key!r} is not in {list(SPOOF_CLASSES)}.")
            keys.append((file, str(proto), n))
            records.append(Record(
                path=str(flac / f"{file}.flac"), labels=(SPOOF_CLASSES.index(key),), label_names=(key,),
                split=split, fold=None, group=speaker, dataset="asvspoof2019_la",
                extra=(("file_id", file), ("system", system)),
            ))
    common.check_unique(keys, "file")
    listed = len(records)
    records, missing = common.drop_missing(
        records, problems, f"the protocol files in {proto_dir}",
        "Audio belongs in ASVspoof2019_LA_{train,dev,eval}/flac/ next to the protocols.")
    return DatasetIndex("asvspoof2019_la", records, SPOOF_CLASSES, multilabel=False, problems=problems,
                        root=str(root), listed=listed, missing=missing)
