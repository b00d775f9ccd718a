"""In-the-Wild audio deepfakes (Müller et al., Interspeech 2022): a test-only set with speakers as groups."""

from __future__ import annotations

import os
from pathlib import Path

from audiorep.data.sources import common
from audiorep.data.sources.asvspoof import SPOOF_CLASSES
from audiorep.data.sources.common import DatasetError, DatasetIndex, Record


def read_in_the_wild(root: str | os.PathLike) -> DatasetIndex:
    """In-the-Wild audio deepfakes (Müller et al., Interspeech 2022): test-only, group = speaker.

    Layout: root/meta.csv (file, speaker, label with label in bona-fide / spoof) and flat root/<file>.
    Labels use the ASVspoof classes (bonafide = 0, spoof = 1) so a model trained there scores here; the speaker
    is also `info['speaker']`, the metadata protocols and per-group metrics read.
    """
    root = common.require_dir(Path(root).expanduser().resolve(), "In-the-Wild folder",
                              "Pass the release_in_the_wild folder (it holds meta.csv and the wav files).")
    meta = root / "meta.csv"
    rows = common.read_csv_rows(meta, ("file", "speaker", "label"))
    common.check_unique(((r["file"], str(meta), n) for n, r in rows), "file")
    names = {"bona-fide": "bonafide", "bonafide": "bonafide", "spoof": "spoof"}
    records = []
    for line, row in rows:
        name = names.get(row["label"].lower())
        if name is None:
            raise DatasetError(f"{meta}, line {line}: label {row['label']!r} is not bona-fide or spoof.")
        records.append(Record(
            path=str(root / row["file"]), labels=(SPOOF_CLASSES.index(name),), label_names=(name,), split="test",
            fold=None, group=row["speaker"], dataset="in_the_wild",
            extra=common.metadata_extra({"speaker": row["speaker"]}),
        ))
    problems: list[str] = []
    listed = len(records)
    records, missing = common.drop_missing(records, problems, str(meta), "The wav files belong next to meta.csv.")
    return DatasetIndex("in_the_wild", records, SPOOF_CLASSES, multilabel=False, problems=problems, root=str(root),
                        listed=listed, missing=missing)
