"""ASVspoof 2019 logical access and ASVspoof 2021 LA / DF: countermeasure protocols and keys, bona fide vs
spoof, speakers as groups.

`SPOOF_CLASSES` is the label set every spoofing reader shares, so a detector trained on one scores on another.
Every record carries the metadata the protocols hold out (`attack_id` on spoofed clips, `speaker`, and for
2021 DF the data `source`), beside the dataset's own fields (codec, transmission, vocoder, ...).
"""

from __future__ import annotations

import functools
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
    eval -> 'test'; group = speaker; the attack system (A01-A19, '-' for bona fide) is `info['system']`, and
    `info['attack_id']` on spoofed clips.
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
                extra=tuple(sorted({"file_id": file, "system": system, "speaker": speaker,
                                    **({"attack_id": system} if key == "spoof" else {})}.items())),
            ))
    common.check_unique(keys, "file")
    listed = len(records)
    records, missing = common.drop_missing(
        records, problems, f"the protocol files in {proto_dir}",
        "Audio belongs in ASVspoof2019_LA_{train,dev,eval}/flac/ next to the protocols.")
    return DatasetIndex("asvspoof2019_la", records, SPOOF_CLASSES, multilabel=False, problems=problems,
                        root=str(root), listed=listed, missing=missing)


# ------------------------------------------------------------------------------------------ ASVspoof 2021
# The CM key columns of trial_metadata.txt (LA-keys-full / DF-keys-full), as the official evaluation package
# names them (asvspoof-challenge/2021, eval-package/config.py).
ASV2021_COLUMNS = {
    "LA": ("speaker", "trial", "codec", "transmission", "attack", "key", "trim", "subset"),
    "DF": ("speaker", "trial", "codec", "source", "attack", "key", "trim", "subset", "vocoder", "task", "team",
           "gender_pair", "language"),
}
ASV2021_SUBSETS = ("eval", "progress", "hidden")


def _keys_file(root: Path, track: str, keys: str | None) -> Path:
    """The CM trial_metadata.txt: `keys` (absolute or relative to root), else the first known location."""
    hint = (f"Download {track}-keys-full.tar.gz (asvspoof.org, ASVspoof 2021 keys and meta labels) and unpack it "
            f"in {root}, or pass -o keys=PATH/TO/trial_metadata.txt (reader option keys).")
    if keys is not None:
        path = Path(keys).expanduser()
        return common.require_file(path if path.is_absolute() else root / path, f"ASVspoof 2021 {track} key file",
                                   hint)
    candidates = [root / "keys" / track / "CM" / "trial_metadata.txt",
                  root / f"{track}-keys-full" / "keys" / track / "CM" / "trial_metadata.txt",
                  root / track / "CM" / "trial_metadata.txt", root / "CM" / "trial_metadata.txt"]
    for c in candidates:
        if c.is_file():
            return c
    raise DatasetError(f"{candidates[0]}: ASVspoof 2021 {track} key file not found (also looked for "
                       f"{', '.join(str(c.relative_to(root)) for c in candidates[1:])}). {hint}")


def _flac_dirs(root: Path, track: str, audio_dir: str | None) -> list[Path]:
    """Folders that may hold the eval flac files: `audio_dir`, else ASVspoof2021_<T>_eval/flac and the DF
    archive parts ASVspoof2021_DF_eval_partNN/ASVspoof2021_DF_eval/flac."""
    if audio_dir is not None:
        path = Path(audio_dir).expanduser()
        return [common.require_dir(path if path.is_absolute() else root / path, f"ASVspoof 2021 {track} audio folder",
                                   "Pass the folder holding the eval .flac files (reader option audio_dir).")]
    found = sorted({*root.glob(f"ASVspoof2021_{track}_eval*/flac"),
                    *root.glob(f"ASVspoof2021_{track}_eval*/ASVspoof2021_{track}_eval/flac")})
    if (root / "flac").is_dir():
        found.append(root / "flac")
    if not found:
        raise DatasetError(f"{root / f'ASVspoof2021_{track}_eval' / 'flac'}: ASVspoof 2021 {track} audio folder not "
                           f"found (nor any ASVspoof2021_{track}_eval_partNN/ASVspoof2021_{track}_eval/flac). Unpack "
                           f"ASVspoof2021_{track}_eval*.tar.gz in {root}, or pass -o audio_dir=FOLDER.")
    return found


def read_asvspoof2021(
    root: str | os.PathLike,
    *,
    track: str = "LA",
    keys: str | None = None,
    audio_dir: str | None = None,
    subsets: Sequence[str] = ("eval",),
    train_root: str | None = None,
) -> DatasetIndex:
    """ASVspoof 2021 logical access ('LA') or speech deepfake ('DF') evaluation set with its keys; bonafide = 0,
    spoof = 1, group = speaker. The registered readers asvspoof2021_la / asvspoof2021_df are this reader with the
    track fixed (`read_asvspoof2021_la`, `read_asvspoof2021_df`).

    Layout (root), LA: ASVspoof2021_LA_eval/flac/<TRIAL>.flac and the unpacked LA-keys-full.tar.gz,
    keys/LA/CM/trial_metadata.txt (also found at LA-keys-full/keys/LA/CM/, LA/CM/ or CM/). Key lines are
    `SPEAKER TRIAL CODEC TRANSMISSION ATTACK KEY TRIM SUBSET`, e.g. `LA_0009 LA_E_9332881 alaw ita_tx A07 spoof
    notrim eval`. Records: split 'test'; metadata speaker, attack_id (A07-A19, spoofed clips), and info codec,
    transmission, trim, subset.

    Layout (root), DF: ASVspoof2021_DF_eval/flac/<TRIAL>.flac, or the four archive parts
    ASVspoof2021_DF_eval_partNN/ASVspoof2021_DF_eval/flac/, and the unpacked DF-keys-full.tar.gz,
    keys/DF/CM/trial_metadata.txt (also found at DF-keys-full/keys/DF/CM/, DF/CM/ or CM/). Key lines are
    `SPEAKER TRIAL CODEC SOURCE ATTACK KEY TRIM SUBSET VOCODER TASK TEAM GENDER_PAIR LANGUAGE`, e.g.
    `LA_0023 DF_E_2000011 nocodec asvspoof A14 spoof notrim progress traditional_vocoder - - - -`. Records:
    split 'test'; metadata speaker, attack_id (spoofed clips), source (asvspoof, vcc2018, vcc2020), language
    where given; info codec, vocoder, task, team, gender_pair, trim, subset.

    Args:
      track: 'LA' or 'DF'.
      keys: the trial_metadata.txt to read (absolute or relative to root), when it is elsewhere.
      audio_dir: the folder of the eval .flac files, when it is elsewhere.
      subsets: key subsets to keep: 'eval' (the official scoring subset), 'progress', 'hidden'.
      train_root: an ASVspoof 2019 LA folder: its train (-> 'train') and dev (-> 'validation') protocols are
        added, which is the challenge's protocol (train on 2019 LA, score on 2021).
    """
    if track not in ASV2021_COLUMNS:
        raise DatasetError(f"unknown ASVspoof 2021 track {track!r}; tracks are {sorted(ASV2021_COLUMNS)}.")
    subsets = tuple(subsets)
    name = f"asvspoof2021_{track.lower()}"
    root = common.require_dir(Path(root).expanduser().resolve(), f"ASVspoof 2021 {track} folder",
                              f"Pass the folder holding ASVspoof2021_{track}_eval/ and the unpacked {track} keys.")
    bad = sorted(set(subsets) - set(ASV2021_SUBSETS))
    if bad or not subsets:
        raise DatasetError(f"unknown ASVspoof 2021 subset(s) {bad or list(subsets)}; subsets are "
                           f"{list(ASV2021_SUBSETS)}.")
    key_file = _keys_file(root, track, keys)
    dirs = _flac_dirs(root, track, audio_dir)
    where = {}
    for d in reversed(dirs):  # the first folder holding a file wins
        where.update({e.name: d for e in os.scandir(d) if e.name.endswith(".flac")})
    columns = ASV2021_COLUMNS[track]
    records, keys_seen, problems = [], [], []
    skipped = 0
    for n, line in enumerate(key_file.read_text().splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != len(columns):
            raise DatasetError(
                f"{key_file}, line {n}: expected {len(columns)} fields `{' '.join(c.upper() for c in columns)}` "
                f"(the full {track} keys, {track}-keys-full.tar.gz), got {len(parts)}: {line!r}.")
        row = dict(zip(columns, parts))
        if row["key"] not in SPOOF_CLASSES:
            raise DatasetError(f"{key_file}, line {n}: key {row['key']!r} is not in {list(SPOOF_CLASSES)}.")
        if row["subset"] not in ASV2021_SUBSETS:
            raise DatasetError(f"{key_file}, line {n}: subset {row['subset']!r} is not one of {list(ASV2021_SUBSETS)}.")
        keys_seen.append((row["trial"], str(key_file), n))
        if row["subset"] not in subsets:
            skipped += 1
            continue
        spoof = row["key"] == "spoof"
        meta = {"speaker": row["speaker"], "attack_id": row["attack"] if spoof else None,
                "source": row.get("source"), "language": row.get("language")}
        other = {k: v for k, v in row.items() if k not in ("speaker", "trial", "attack", "key", "source", "language")}
        records.append(Record(
            path=str(where.get(f"{row['trial']}.flac", dirs[0]) / f"{row['trial']}.flac"),
            labels=(SPOOF_CLASSES.index(row["key"]),), label_names=(row["key"],), split="test", fold=None,
            group=row["speaker"], dataset=name,
            extra=common.metadata_extra(meta, file_id=row["trial"], **other)))
    common.check_unique(keys_seen, "trial")
    if skipped:
        problems.append(f"{key_file.name}: {skipped} trials of other subsets than {', '.join(subsets)} left out "
                        "(reader option subsets)")
    listed = len(records)
    records, missing = common.drop_missing(
        records, problems, str(key_file),
        f"Unpack every ASVspoof2021_{track}_eval archive part in {root}, or pass -o audio_dir=FOLDER.")
    if train_root is not None:
        train = read_asvspoof2019_la(train_root, splits=("train", "dev"))
        problems += [f"ASVspoof 2019 LA: {p}" for p in train.problems]
        records = train.records + records
        listed += train.listed or 0
        missing = sorted(missing + train.missing)
    return DatasetIndex(name, records, SPOOF_CLASSES, multilabel=False, problems=problems, root=str(root),
                        listed=listed, missing=missing)


read_asvspoof2021_la = functools.partial(read_asvspoof2021, track="LA")
read_asvspoof2021_df = functools.partial(read_asvspoof2021, track="DF")
