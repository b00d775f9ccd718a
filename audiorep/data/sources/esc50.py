"""ESC-50 and its ESC-10 subset (Piczak 2015): meta/esc50.csv + audio/*.wav, five official folds."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from audiorep.data.sources import common
from audiorep.data.sources.common import DatasetError, DatasetIndex, Record

ESC50_CLASSES = (
    "dog", "rooster", "pig", "cow", "frog", "cat", "hen", "insects", "sheep", "crow",
    "rain", "sea_waves", "crackling_fire", "crickets", "chirping_birds", "water_drops", "wind", "pouring_water",
    "toilet_flush", "thunderstorm", "crying_baby", "sneezing", "clapping", "breathing", "coughing", "footsteps",
    "laughing", "brushing_teeth", "snoring", "drinking_sipping", "door_wood_knock", "mouse_click",
    "keyboard_typing", "door_wood_creaks", "can_opening", "washing_machine", "vacuum_cleaner", "clock_alarm",
    "clock_tick", "glass_breaking", "helicopter", "chainsaw", "siren", "car_horn", "engine", "train",
    "church_bells", "airplane", "fireworks", "hand_saw",
)
ESC10_CLASSES = ("dog", "rooster", "rain", "sea_waves", "crackling_fire", "crying_baby", "sneezing",
                 "clock_tick", "helicopter", "chainsaw")


def read_esc50(root: str | os.PathLike, *, esc10: bool = False, folds: Sequence[int] | None = None) -> DatasetIndex:
    """ESC-50 (Piczak 2015): `meta/esc50.csv` + `audio/*.wav`, 50 classes, folds 1-5, group = source clip.

    Args:
      root: the folder holding `meta/` and `audio/` (ESC-50-master).
      esc10: keep only the ESC-10 subset (rows with esc10 == True), classes re-indexed 0..9.
      folds: keep only these folds (default all five).
    """
    root = Path(root).expanduser().resolve()
    meta = root / "meta" / "esc50.csv"
    common.require_file(
        meta, "ESC-50 metadata (meta/esc50.csv)",
        f"Point {common.DATASET_ROOT} at the unpacked ESC-50-master folder (it holds meta/ and audio/).")
    common.require_dir(root / "audio", "ESC-50 audio folder", "The archive's audio/ folder must sit next to meta/.")
    rows = common.read_csv_rows(meta, ("filename", "fold", "target", "category", "esc10", "src_file", "take"))
    common.check_unique(((r["filename"], str(meta), n) for n, r in rows), "filename")
    classes = ESC10_CLASSES if esc10 else ESC50_CLASSES
    index_of = {c: i for i, c in enumerate(classes)}
    wanted = None if folds is None else {int(f) for f in folds}
    records = []
    for line, row in rows:
        fold = common.parse_int(row["fold"], meta, line, "fold")
        target = common.parse_int(row["target"], meta, line, "target")
        if not 1 <= fold <= 5:
            raise DatasetError(f"{meta}, line {line}: fold {fold} is outside 1..5.")
        if not 0 <= target < len(ESC50_CLASSES) or ESC50_CLASSES[target] != row["category"]:
            raise DatasetError(
                f"{meta}, line {line}: label target={row['target']} category={row['category']!r} is not in the "
                f"ESC-50 class list (target {target} is {ESC50_CLASSES[target] if 0 <= target < 50 else 'out of range'}"
                "). The CSV is corrupt or from another dataset version; re-extract the original."
            )
        is_esc10 = common.parse_bool(row["esc10"], meta, line, "esc10")
        if is_esc10 != (row["category"] in ESC10_CLASSES):
            raise DatasetError(f"{meta}, line {line}: esc10={row['esc10']} disagrees with class {row['category']!r}.")
        if (esc10 and not is_esc10) or (wanted is not None and fold not in wanted):
            continue
        name = row["category"]
        records.append(Record(
            path=str(root / "audio" / row["filename"]), labels=(index_of[name],), label_names=(name,),
            split="", fold=fold, group=row["src_file"], dataset="esc50",
            extra=(("take", row["take"]), ("target", row["target"])),
        ))
    problems: list[str] = []
    listed = len(records)
    records, missing = common.drop_missing(records, problems, str(meta),
                                           "Check that audio/ holds the ESC-50 wav files.")
    return DatasetIndex("esc50", records, classes, multilabel=False, problems=problems, root=str(root),
                        listed=listed, missing=missing)
