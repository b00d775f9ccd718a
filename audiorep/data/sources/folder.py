"""The folder reader: any folder of audio files, labels from class sub-folders, file names or a labels.csv,
optional split folders and a group CSV (the synthetic corpus and FSDD are read with it; so is a user's own
labelled data, `audiorep probe --task folder`)."""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Sequence
from pathlib import Path

from audiorep.data.sources import common
from audiorep.data.sources.common import METADATA_KEYS, DatasetError, DatasetIndex, Record

FOLDER_SPLIT_NAMES = {"train": "train", "training": "train", "valid": "validation", "val": "validation",
                      "validation": "validation", "dev": "validation", "test": "test", "eval": "test",
                      "evaluation": "test"}


def read_folder(
    root: str | os.PathLike,
    *,
    labels: str = "auto",
    label_regex: str | None = None,
    group_regex: str | None = None,
    group_csv: str | None = "auto",
    splits: str = "auto",
    extensions: Sequence[str] | None = None,
    labels_csv: str | None = "auto",
    group_column: str | None = None,
) -> DatasetIndex:
    """A folder of audio files, searched recursively, or the clips a labels.csv lists.

    Layouts: `root/<class>/<file>` (labels from the sub-folder), `root/<file>` (unlabelled, or labels
    from the file name with `label_regex`), and either of them under split folders
    `root/{train,validation,test}/...` (also valid/val/dev, eval). Or `root/labels.csv` with columns `path`
    (relative to root) and `label`, optionally `split` (train/validation/test, as the split folders), a group
    column, and metadata columns (attack_id, speaker, gender, language, source, word) kept in `Record.info`.

    Args:
      labels: 'auto' (sub-folder names when every file sits in a sub-folder, none when all sit in the
        root), 'folder', or 'none'. Ignored when `label_regex` is given.
      label_regex: take the label from the file name (without its extension): the named group `label`
        or else group 1, e.g. r'^(\\d)_' for FSDD's `<digit>_<speaker>_<n>.wav`.
      group_regex: take the group from the file name likewise, e.g. r'^\\d_([a-z]+)_' (FSDD speakers).
      group_csv: a CSV (relative to root) with columns `path` (relative to root) and `group`; 'auto'
        uses `meta.csv` when it has those columns (the synthetic corpus writes one).
      splits: 'auto' (top-level folders named train/validation/test... are splits when all top-level
        folders are), 'folders' (they must be), or 'none'.
      extensions: file suffixes to include; default: every format soundfile reads.
      labels_csv: the labels CSV (relative to root): 'auto' reads labels.csv when it exists, None ignores it.
      group_column: the labels.csv column holding the group (default: `group`, else `speaker`, when present).
    """
    root = common.require_dir(Path(root).expanduser().resolve(), "audio folder",
                              "Pass the folder that holds the audio.")
    csv_labels = root / ("labels.csv" if labels_csv == "auto" else labels_csv) if labels_csv else None
    if csv_labels is not None and (labels_csv != "auto" or csv_labels.is_file()):
        return _from_labels_csv(root, csv_labels, group_column, group_regex)
    exts = frozenset(e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions) if extensions \
        else common.audio_extensions()
    if labels not in ("auto", "folder", "none"):
        raise DatasetError(f"labels must be 'auto', 'folder' or 'none', got {labels!r}.")
    if splits not in ("auto", "folders", "none"):
        raise DatasetError(f"splits must be 'auto', 'folders' or 'none', got {splits!r}.")
    files = common.files_under(root, exts)
    if not files:
        raise DatasetError(
            f"{root}: no audio files found (looked for {', '.join(sorted(exts))} in all sub-folders, "
            "symlinked ones included). "
            "Check the path, or pass extensions=... for other suffixes."
        )
    rels = [p.relative_to(root) for p in files]
    top = {r.parts[0] for r in rels if len(r.parts) > 1}
    at_root = [r for r in rels if len(r.parts) == 1]
    use_splits = False
    if splits == "folders" or (splits == "auto" and top and not at_root
                               and all(t.lower() in FOLDER_SPLIT_NAMES for t in top)):
        bad = sorted(t for t in top if t.lower() not in FOLDER_SPLIT_NAMES) + [str(r) for r in at_root[:1]]
        if bad:
            raise DatasetError(
                f"{root}: splits='folders' needs every file under a split folder "
                f"({sorted(set(FOLDER_SPLIT_NAMES))}); found {bad[0]!r}."
            )
        use_splits = True
    label_re = re.compile(label_regex) if label_regex else None
    group_re = re.compile(group_regex) if group_regex else None

    def from_regex(rx: re.Pattern, rel: Path, what: str) -> str:
        m = rx.search(Path(rel.name).stem)
        if not m:
            raise DatasetError(f"{root / rel}: file name does not match {what} {rx.pattern!r}; fix the regex.")
        return m.group("label" if "label" in rx.groupindex else "group" if "group" in rx.groupindex else 1) \
            if rx.groups else m.group(0)

    inner = [Path(*r.parts[1:]) if use_splits else r for r in rels]
    if label_re is None:
        mode = labels
        if mode == "auto":
            nested = [len(r.parts) > 1 for r in inner]
            if all(nested):
                mode = "folder"
            elif not any(nested):
                mode = "none"
            else:
                loose = next(rels[i] for i, n in enumerate(nested) if not n)
                raise DatasetError(
                    f"{root}: some files sit in class sub-folders and some do not (e.g. {loose}). Move every "
                    "file into a class folder, or pass labels='none' to read the folder unlabelled."
                )
        if mode == "folder":
            flat = [rels[i] for i, r in enumerate(inner) if len(r.parts) < 2]
            if flat:
                raise DatasetError(f"{root / flat[0]}: labels='folder' needs files in class sub-folders.")
        names = [r.parts[0] if mode == "folder" else None for r in inner]
    else:
        names = [from_regex(label_re, r, "label_regex") for r in rels]

    groups_by_path: dict[str, str] = {}
    if group_csv:
        csv_path = root / ("meta.csv" if group_csv == "auto" else group_csv)
        if group_csv != "auto" or csv_path.is_file():
            usable = True
            if group_csv == "auto":
                with open(csv_path, newline="", encoding="utf-8-sig") as f:
                    head = next(csv.reader(f), [])
                usable = {"path", "group"} <= {h.strip() for h in head}
            if usable:
                for _, row in common.read_csv_rows(csv_path, ("path", "group")):
                    groups_by_path[Path(row["path"]).as_posix()] = row["group"]

    classes = tuple(sorted({n for n in names if n is not None}))
    index_of = {c: i for i, c in enumerate(classes)}
    records = []
    for p, rel, name in zip(files, rels, names):
        group = from_regex(group_re, rel, "group_regex") if group_re else groups_by_path.get(rel.as_posix())
        split = FOLDER_SPLIT_NAMES[rel.parts[0].lower()] if use_splits else ""
        records.append(Record(
            path=str(p), labels=() if name is None else (index_of[name],), label_names=() if name is None else (name,),
            split=split, fold=None, group=group, dataset="folder",
        ))
    return DatasetIndex("folder", records, classes, multilabel=False, problems=[], root=str(root))


def _from_labels_csv(root: Path, path: Path, group_column: str | None, group_regex: str | None) -> DatasetIndex:
    """The folder reader's labels.csv layout (see `read_folder`)."""
    rows = common.read_csv_rows(path, ("path", "label"))
    header = set(rows[0][1]) if rows else set()
    if group_column is not None and group_column not in header:
        raise DatasetError(f"{path}: group_column {group_column!r} is not a column (found {sorted(header)}). "
                           "Name one of the columns, or leave group_column unset.")
    column = group_column or next((c for c in ("group", "speaker") if c in header), None)
    group_re = re.compile(group_regex) if group_regex else None
    if not rows:
        raise DatasetError(f"{path}: no rows. List one clip per line: path,label.")
    classes = tuple(sorted({row["label"] for _, row in rows if row["label"]}))
    records, keys = [], []
    for line, row in rows:
        if not row["path"] or not row["label"]:
            raise DatasetError(f"{path}, line {line}: empty {'path' if not row['path'] else 'label'}. Every row "
                               "names a clip (relative to the folder holding the CSV) and its label.")
        clip = Path(row["path"]) if os.path.isabs(row["path"]) else (root / row["path"]).resolve()
        split = ""
        if row.get("split"):
            split = FOLDER_SPLIT_NAMES.get(row["split"].lower(), "?")
            if split == "?":
                raise DatasetError(f"{path}, line {line}: split {row['split']!r} is not one of "
                                   f"{sorted(set(FOLDER_SPLIT_NAMES))}.")
        group = row.get(column) or None if column else None
        if group is None and group_re is not None:
            m = group_re.search(clip.stem)
            if not m:
                raise DatasetError(f"{clip}: file name does not match group_regex {group_re.pattern!r}; fix the regex.")
            group = m.group("group" if "group" in group_re.groupindex else 1 if group_re.groups else 0)
        keys.append((str(clip), str(path), line))
        records.append(Record(
            path=str(clip), labels=(classes.index(row["label"]),), label_names=(row["label"],), split=split, fold=None,
            group=group, dataset="folder", extra=common.metadata_extra({k: row.get(k) for k in METADATA_KEYS}),
        ))
    common.check_unique(keys, "path")
    problems: list[str] = []
    listed = len(records)
    records, missing = common.drop_missing(records, problems, str(path),
                                           f"Paths in {path.name} are relative to the folder that holds it.")
    return DatasetIndex("folder", records, classes, multilabel=False, problems=problems, root=str(root),
                        listed=listed, missing=missing)
