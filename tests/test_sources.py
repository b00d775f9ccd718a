"""Dataset readers on miniature copies of the official layouts: folder, ESC-50, FSDD, audio checks, registry."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audiorep.data.sources import (
    ESC10_CLASSES,
    ESC50_CLASSES,
    READERS,
    DatasetError,
    Record,
    check_audio,
    read_dataset,
)


def write_clip(path: Path, seconds: float = 0.05, rate: int = 16000, fmt: str | None = None) -> Path:
    """A short noise clip in a real audio format (format from the suffix)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(abs(hash(path.name)) % 2**32)
    sf.write(str(path), (0.1 * rng.standard_normal(int(seconds * rate))).astype(np.float32), rate, format=fmt)
    return path


# ------------------------------------------------------------------------------------------ folder
def test_folder_labels_come_from_subfolders(tmp_path):
    for cls, n in (("dog", 2), ("cat", 3)):
        for i in range(n):
            write_clip(tmp_path / cls / f"{i}.wav")
    write_clip(tmp_path / "cat" / "x.flac")
    (tmp_path / "cat" / "notes.txt").write_text("not audio")
    idx = read_dataset("folder", tmp_path)
    assert idx.classes == ("cat", "dog")
    assert idx.class_counts() == {"cat": 4, "dog": 2}
    assert all(r.labels == (idx.classes.index(r.label_names[0]),) for r in idx.records)
    assert {r.split for r in idx.records} == {""}


def test_folder_follows_symlinked_subfolders_once_and_skips_hidden_ones(tmp_path):
    for cls in ("dog", "cat"):
        write_clip(tmp_path / "elsewhere" / cls / "0.wav")
    root = tmp_path / "corpus"
    root.mkdir()
    (root / "dog").symlink_to(tmp_path / "elsewhere" / "dog", target_is_directory=True)
    (root / "cat").symlink_to(tmp_path / "elsewhere" / "cat", target_is_directory=True)
    (tmp_path / "elsewhere" / "cat" / "loop").symlink_to(tmp_path / "elsewhere" / "cat", target_is_directory=True)
    write_clip(root / ".cache" / "dog" / "hidden.wav")
    idx = read_dataset("folder", root)
    assert idx.classes == ("cat", "dog") and len(idx) == 2  # the cycle is walked once; hidden skipped
    assert all(r.path.startswith(str(root)) for r in idx.records)  # paths as the user laid them out


def test_folder_without_subfolders_is_unlabelled(tmp_path):
    for i in range(3):
        write_clip(tmp_path / f"{i}.wav")
    idx = read_dataset("folder", tmp_path)
    assert idx.classes == () and len(idx) == 3
    assert all(r.labels == () for r in idx.records)


def test_folder_mixed_layout_error_names_a_loose_file(tmp_path):
    write_clip(tmp_path / "dog" / "a.wav")
    write_clip(tmp_path / "loose.wav")
    with pytest.raises(DatasetError, match="loose.wav"):
        read_dataset("folder", tmp_path)


def test_folder_split_folders_become_splits(tmp_path):
    write_clip(tmp_path / "train" / "dog" / "a.wav")
    write_clip(tmp_path / "train" / "cat" / "b.wav")
    write_clip(tmp_path / "val" / "dog" / "c.wav")
    write_clip(tmp_path / "test" / "cat" / "d.wav")
    idx = read_dataset("folder", tmp_path)
    assert idx.classes == ("cat", "dog")
    assert {Path(r.path).name: (r.split, r.label_names[0]) for r in idx.records} == {
        "a.wav": ("train", "dog"), "b.wav": ("train", "cat"), "c.wav": ("validation", "dog"), "d.wav": ("test", "cat")}


def test_folder_groups_from_meta_csv(tmp_path):
    write_clip(tmp_path / "dog" / "a.wav")
    write_clip(tmp_path / "dog" / "b.wav")
    (tmp_path / "meta.csv").write_text("path,label,group\ndog/a.wav,dog,g1\ndog/b.wav,dog,g2\n")
    idx = read_dataset("folder", tmp_path)
    assert [r.group for r in idx.records] == ["g1", "g2"]


def test_folder_empty_error_names_the_folder(tmp_path):
    (tmp_path / "readme.txt").write_text("x")
    with pytest.raises(DatasetError, match="no audio files found"):
        read_dataset("folder", tmp_path)


def test_folder_reads_fsdd_digits_and_speakers(fsdd_dir):
    idx = read_dataset("folder", fsdd_dir, label_regex=r"^(\d)_", group_regex=r"^\d_([a-z]+)_")
    assert len(idx) == 3000
    assert idx.classes == tuple(str(d) for d in range(10))
    assert set(idx.class_counts().values()) == {300}
    assert {r.group for r in idx.records} == {"george", "jackson", "lucas", "nicolas", "theo", "yweweler"}
    r = next(r for r in idx.records if Path(r.path).name == "7_theo_12.wav")
    assert r.label_names == ("7",) and r.labels == (7,) and r.group == "theo"


def test_label_regex_mismatch_names_the_file(tmp_path):
    write_clip(tmp_path / "0_a_1.wav")
    write_clip(tmp_path / "oops.wav")
    with pytest.raises(DatasetError, match="oops.wav"):
        read_dataset("folder", tmp_path, label_regex=r"^(\d)_")


# ------------------------------------------------------------------------------------------ ESC-50
ESC_HEADER = "filename,fold,target,category,esc10,src_file,take\n"


def make_esc50(root: Path, rows: list[tuple[int, str, str, str]]) -> Path:
    """rows: (fold, src_file, take, category) -> the official file naming and CSV."""
    lines = [ESC_HEADER]
    for fold, src, take, cat in rows:
        target = ESC50_CLASSES.index(cat)
        name = f"{fold}-{src}-{take}-{target}.wav"
        write_clip(root / "audio" / name, rate=44100)
        lines.append(f"{name},{fold},{target},{cat},{cat in ESC10_CLASSES},{src},{take}\n")
    (root / "meta").mkdir(parents=True, exist_ok=True)
    (root / "meta" / "esc50.csv").write_text("".join(lines))
    return root


ESC_ROWS = [(1, "100032", "A", "dog"), (1, "100032", "B", "dog"), (2, "56234", "A", "crow"),
            (3, "17367", "A", "chainsaw"), (4, "9999", "A", "hand_saw"), (5, "4321", "A", "rain")]


def test_esc50_reads_folds_labels_and_source_groups(tmp_path):
    idx = read_dataset("esc50", make_esc50(tmp_path, ESC_ROWS))
    assert len(idx) == 6 and idx.classes == ESC50_CLASSES and idx.folds == (1, 2, 3, 4, 5)
    crow = next(r for r in idx.records if r.label_names == ("crow",))
    assert crow.labels == (9,) and crow.fold == 2 and crow.group == "56234" and crow.split == ""
    assert Path(crow.path).name == "2-56234-A-9.wav"
    assert [r.group for r in idx.fold(1)] == ["100032", "100032"]


def test_esc10_keeps_ten_classes_reindexed(tmp_path):
    idx = read_dataset("esc50", make_esc50(tmp_path, ESC_ROWS), esc10=True)
    assert idx.classes == ESC10_CLASSES
    assert sorted(r.label_names[0] for r in idx.records) == ["chainsaw", "dog", "dog", "rain"]
    chainsaw = next(r for r in idx.records if r.label_names == ("chainsaw",))
    assert chainsaw.labels == (9,)


def test_esc50_folds_option_filters(tmp_path):
    idx = read_dataset("esc50", make_esc50(tmp_path, ESC_ROWS), folds=[1, 5])
    assert sorted(r.fold for r in idx.records) == [1, 1, 5]


def test_esc50_missing_csv_error_says_what_to_pass(tmp_path):
    (tmp_path / "audio").mkdir()
    with pytest.raises(DatasetError, match=r"meta/esc50.csv.*--root of `audiorep datasets`, --data-root of `audiorep "
                                           r"probe`"):
        read_dataset("esc50", tmp_path)


def test_esc50_missing_column_lists_found_and_expected(tmp_path):
    root = make_esc50(tmp_path, ESC_ROWS[:1])
    (root / "meta" / "esc50.csv").write_text("filename,fold,target,category\n1-1-A-0.wav,1,0,dog\n")
    with pytest.raises(DatasetError, match=r"esc50.csv, line 1: missing column\(s\) \['esc10', 'src_file', 'take'\]"
                       r".*Found columns \['filename', 'fold', 'target', 'category'\]"):
        read_dataset("esc50", root)


def test_esc50_short_row_names_the_line(tmp_path):
    root = make_esc50(tmp_path, ESC_ROWS[:2])
    csv_path = root / "meta" / "esc50.csv"
    csv_path.write_text(csv_path.read_text() + "5-1-A-0.wav,5,0\n")
    with pytest.raises(DatasetError, match=r"esc50.csv, line 4: the row has too few fields"):
        read_dataset("esc50", root)


def test_esc50_label_outside_class_list_names_the_line(tmp_path):
    root = make_esc50(tmp_path, ESC_ROWS[:2])
    csv_path = root / "meta" / "esc50.csv"
    csv_path.write_text(csv_path.read_text().replace("0,dog,True,100032,B", "0,wolf,True,100032,B"))
    with pytest.raises(DatasetError, match=r"esc50.csv, line 3: label .*'wolf'"):
        read_dataset("esc50", root)


def test_esc50_duplicate_filename_names_both_lines(tmp_path):
    root = make_esc50(tmp_path, ESC_ROWS[:2])
    csv_path = root / "meta" / "esc50.csv"
    lines = csv_path.read_text().splitlines()
    csv_path.write_text("\n".join([*lines, lines[1]]) + "\n")
    with pytest.raises(DatasetError, match=r"line 4: duplicate filename '1-100032-A-0.wav'.*line 2"):
        read_dataset("esc50", root)


def test_esc50_missing_audio_is_reported_not_fatal(tmp_path):
    root = make_esc50(tmp_path, ESC_ROWS)
    (root / "audio" / "2-56234-A-9.wav").unlink()
    idx = read_dataset("esc50", root)
    assert len(idx) == 5
    assert len(idx.problems) == 1 and "1 of 6" in idx.problems[0] and "2-56234-A-9.wav" in idx.problems[0]


def test_esc50_index_counts_the_listed_and_the_missing_files(tmp_path):
    root = make_esc50(tmp_path, ESC_ROWS)
    (root / "audio" / "2-56234-A-9.wav").unlink()
    (root / "audio" / "5-4321-A-10.wav").unlink()
    idx = read_dataset("esc50", root)
    assert not idx.complete
    assert idx.missing == [str(root.resolve() / "audio" / n) for n in ("2-56234-A-9.wav", "5-4321-A-10.wav")]
    assert idx.file_counts() == {"expected": 6, "present": 4, "missing": 2}


def test_a_folder_has_no_list_so_nothing_counts_as_missing(tmp_path):
    write_clip(tmp_path / "dog" / "a.wav")
    idx = read_dataset("folder", tmp_path)
    assert idx.complete and idx.file_counts() is None


# ------------------------------------------------------------------------------------------ check_audio
def test_check_audio_lists_unreadable_and_raises(tmp_path):
    good = write_clip(tmp_path / "good.wav", seconds=0.5)
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF garbage")
    recs = [Record(str(p), (), (), "", None, None, "folder") for p in (good, bad)]
    with pytest.raises(DatasetError, match=r"(?s)1 of 2 audio files are unreadable:\n  .*bad.wav.*--skip-unreadable"):
        check_audio(recs)


def test_check_audio_skips_unreadable_when_asked_and_sums_duration(tmp_path):
    good = write_clip(tmp_path / "good.wav", seconds=0.5)
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    recs = [Record(str(p), (), (), "", None, None, "folder") for p in (good, empty)]
    report = check_audio(recs, skip_unreadable=True)
    assert [r.path for r in report.records] == [str(good)]
    assert [Path(p).name for p, _ in report.unreadable] == ["empty.wav"]
    assert report.total_seconds == pytest.approx(0.5)


def test_check_audio_flags_windows_past_the_end(tmp_path):
    clip = write_clip(tmp_path / "noise.wav", seconds=1.5)
    recs = [Record(str(clip), (), (), "", None, None, "x", start_s=0.0, end_s=1.0),
            Record(str(clip), (), (), "", None, None, "x", start_s=1.0, end_s=2.0)]
    report = check_audio(recs, skip_unreadable=True)
    assert len(report.records) == 1 and "past the end" in report.unreadable[0][1]
    assert report.total_seconds == pytest.approx(1.0)


def test_check_audio_decode_catches_nan_samples(tmp_path):
    path = tmp_path / "nan.wav"
    sf.write(str(path), np.array([0.0, np.nan, 0.1], np.float32), 16000, subtype="FLOAT")
    recs = [Record(str(path), (), (), "", None, None, "folder")]
    assert check_audio(recs).records  # the header is fine
    with pytest.raises(DatasetError, match="NaN"):
        check_audio(recs, decode=True)


# ------------------------------------------------------------------------------------------ registry
def test_every_contract_reader_is_registered():
    assert set(READERS) == {"folder", "esc50", "speech_commands", "audioset", "sonics", "asvspoof2019_la",
                            "asvspoof2021_la", "asvspoof2021_df", "in_the_wild", "mlaad", "deepfake_folder"}
    assert all(r.layout for r in READERS.values())


def test_unknown_reader_and_option_errors_list_the_valid_ones(tmp_path):
    with pytest.raises(DatasetError, match="readers are"):
        read_dataset("esc5O", tmp_path)
    with pytest.raises(DatasetError, match=r"no option\(s\) \['esc_10'\].*esc10"):
        read_dataset("esc50", tmp_path, esc_10=True)
