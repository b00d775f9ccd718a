"""Readers for Speech Commands, AudioSet, SONICS, ASVspoof 2019 LA and In-the-Wild on miniature official layouts."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_sources import write_clip

from audiorep.data.sources import KWS12_CLASSES, SPEECH_COMMANDS_WORDS, DatasetError, check_audio, read_dataset


# ------------------------------------------------------------------------------------------ Speech Commands
def make_speech_commands(root: Path) -> Path:
    files = ["yes/0a7c2a8d_nohash_0.wav", "yes/0a7c2a8d_nohash_1.wav", "yes/1b2c3d4e_nohash_0.wav",
             "no/1b2c3d4e_nohash_0.wav", "bed/0a7c2a8d_nohash_0.wav", "bed/9f8e7d6c_nohash_0.wav",
             "marvin/9f8e7d6c_nohash_0.wav"]
    for f in files:
        write_clip(root / f, seconds=0.05)
    write_clip(root / "_background_noise_" / "white_noise.wav", seconds=3.0)  # windows at 0, .5, 1, 1.5, 2
    write_clip(root / "_background_noise_" / "running_tap.wav", seconds=2.2)  # windows at 0, .5, 1
    (root / "validation_list.txt").write_text("yes/1b2c3d4e_nohash_0.wav\nbed/9f8e7d6c_nohash_0.wav\n")
    (root / "testing_list.txt").write_text("no/1b2c3d4e_nohash_0.wav\nmarvin/9f8e7d6c_nohash_0.wav\n")
    (root / "LICENSE").write_text("CC-BY-4.0")
    return root


def make_test_package(root: Path) -> Path:
    for f in ["yes/0c540988_nohash_0.wav", "_unknown_/backward_0c540988_nohash_0.wav.wav",
              "_unknown_/bed_1b2c3d4e_nohash_1.wav.wav", "_silence_/1024.wav", "_silence_/17.wav"]:
        write_clip(root / f, seconds=0.05)
    return root


def test_speech_commands_35_words_splits_and_speakers(tmp_path):
    idx = read_dataset("speech_commands", make_speech_commands(tmp_path))
    assert idx.classes == SPEECH_COMMANDS_WORDS and len(SPEECH_COMMANDS_WORDS) == 35
    assert len(idx) == 7  # background noise is not a word
    by_name = {f"{Path(r.path).parent.name}/{Path(r.path).name}": r for r in idx.records}
    assert by_name["yes/1b2c3d4e_nohash_0.wav"].split == "validation"
    assert by_name["marvin/9f8e7d6c_nohash_0.wav"].split == "test"
    assert by_name["yes/0a7c2a8d_nohash_1.wav"].split == "train"
    assert by_name["bed/0a7c2a8d_nohash_0.wav"].group == "0a7c2a8d"
    assert by_name["marvin/9f8e7d6c_nohash_0.wav"].labels == (SPEECH_COMMANDS_WORDS.index("marvin"),)


def test_speech_commands_12_class_unknown_and_silence_windows(tmp_path):
    idx = read_dataset("speech_commands", make_speech_commands(tmp_path), num_classes=12)
    assert idx.classes == KWS12_CLASSES
    counts = {s: idx.class_counts(idx.split(s)) for s in idx.splits}
    assert counts["train"] == {"yes": 2, "_unknown_": 1, "_silence_": 5}
    assert counts["validation"] == {"yes": 1, "_unknown_": 1, "_silence_": 3}
    assert counts["test"] == {"no": 1, "_unknown_": 1}
    windows = [(r.start_s, r.end_s) for r in idx.records if Path(r.path).name == "white_noise.wav"]
    assert windows == [(0.0, 1.0), (0.5, 1.5), (1.0, 2.0), (1.5, 2.5), (2.0, 3.0)]
    assert check_audio(idx.records).total_seconds == pytest.approx(7 * 0.05 + 8.0)


def test_speech_commands_counts_listed_files_missing_from_disk(tmp_path):
    root = make_speech_commands(tmp_path)
    (root / "marvin" / "9f8e7d6c_nohash_0.wav").unlink()
    idx = read_dataset("speech_commands", root)
    assert idx.missing == [str(root.resolve() / "marvin" / "9f8e7d6c_nohash_0.wav")]
    assert idx.file_counts() == {"expected": 7, "present": 6, "missing": 1}


def test_speech_commands_test_package_alone_is_the_12_class_test_split(tmp_path):
    idx = read_dataset("speech_commands", make_test_package(tmp_path))
    assert idx.classes == KWS12_CLASSES and idx.splits == ("test",)
    assert idx.class_counts() == {"yes": 1, "_unknown_": 2, "_silence_": 2}
    unk = next(r for r in idx.records if r.path.endswith("backward_0c540988_nohash_0.wav.wav"))
    assert unk.group == "0c540988" and unk.labels == (KWS12_CLASSES.index("_unknown_"),)


def test_speech_commands_12_class_test_from_the_official_package(tmp_path):
    idx = read_dataset("speech_commands", make_speech_commands(tmp_path / "full"), num_classes=12,
                       test_root=str(make_test_package(tmp_path / "test")))
    test = idx.split("test")
    assert len(test) == 5 and all("/test/" in r.path for r in test)
    assert idx.class_counts(test)["_silence_"] == 2


def test_speech_commands_bad_list_line_is_named(tmp_path):
    root = make_speech_commands(tmp_path)
    (root / "testing_list.txt").write_text("no/1b2c3d4e_nohash_0.wav\nmarvin 9f8e7d6c_nohash_0.wav\n")
    with pytest.raises(DatasetError, match=r"testing_list.txt, line 2"):
        read_dataset("speech_commands", root)


def test_speech_commands_missing_validation_list_is_an_error(tmp_path):
    root = make_speech_commands(tmp_path)
    (root / "validation_list.txt").unlink()
    with pytest.raises(DatasetError, match="validation_list.txt"):
        read_dataset("speech_commands", root)


# ------------------------------------------------------------------------------------------ AudioSet
LABELS_CSV = ('index,mid,display_name\n0,/m/09x0r,"Speech"\n1,/m/04rlf,"Music"\n'
              '2,/t/dd00088,"Gush"\n3,/m/0jbk,"Animal"\n')
HEADER = ("# Segments csv created Sun Mar  5 10:54:31 2017\n"
          "# num_ytids=3, num_segs=3, num_unique_labels=3, num_positive_labels=4\n"
          "# YTID, start_seconds, end_seconds, positive_labels\n")


def make_audioset(root: Path, pattern: str = "{ytid}.wav") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "class_labels_indices.csv").write_text(LABELS_CSV)
    (root / "balanced_train_segments.csv").write_text(
        HEADER + '--PJHxphWEs, 30.000, 40.000, "/m/09x0r,/t/dd00088"\n'
                 '-0RWZT-miFs, 420.000, 430.000, "/m/04rlf"\n'
                 'abcDEF_1234, 0.000, 10.000, "/m/0jbk"\n')
    (root / "eval_segments.csv").write_text(HEADER + 'zzzEval0001, 10.000, 20.000, "/m/04rlf,/m/09x0r"\n')
    clips = [("balanced_train", "--PJHxphWEs", "30.000"), ("balanced_train", "-0RWZT-miFs", "420.000"),
             ("eval", "zzzEval0001", "10.000")]
    for split, ytid, start in clips:
        write_clip(root / split / pattern.format(ytid=ytid, start=start), seconds=0.05)
    return root


def test_audioset_multilabel_records_and_missing_clips_reported(tmp_path):
    idx = read_dataset("audioset", make_audioset(tmp_path))
    assert idx.multilabel and idx.classes == ("Speech", "Music", "Gush", "Animal")
    assert len(idx) == 3
    first = next(r for r in idx.records if r.group == "--PJHxphWEs")
    assert first.labels == (0, 2) and first.label_names == ("Speech", "Gush") and first.split == "train"
    assert first.info["segment_start"] == "30.000" and first.info["audioset_split"] == "balanced_train"
    ev = idx.split("test")
    assert [r.labels for r in ev] == [(0, 1)]
    assert len(idx.problems) == 1 and "1 of 3 clips missing" in idx.problems[0] and "abcDEF_1234" in idx.problems[0]


def test_audioset_index_counts_the_clips_not_on_disk(tmp_path):
    root = make_audioset(tmp_path)
    idx = read_dataset("audioset", root)
    assert idx.missing == [str(root.resolve() / "balanced_train" / "abcDEF_1234.wav")]
    assert idx.file_counts() == {"expected": 4, "present": 3, "missing": 1}


def test_audioset_file_pattern_is_configurable(tmp_path):
    root = make_audioset(tmp_path, pattern="Y{ytid}_{start}.flac")
    idx = read_dataset("audioset", root, file_pattern="Y{ytid}_{start}.flac", splits=["eval"])
    assert [Path(r.path).name for r in idx.records] == ["YzzzEval0001_10.000.flac"]


def test_audioset_wrong_pattern_everything_missing_explains(tmp_path):
    root = make_audioset(tmp_path)
    with pytest.raises(DatasetError, match="file_pattern"):
        read_dataset("audioset", root, file_pattern="Y{ytid}.wav")


def test_audioset_unknown_label_names_file_and_line(tmp_path):
    root = make_audioset(tmp_path)
    (root / "eval_segments.csv").write_text(HEADER + 'zzzEval0001, 10.000, 20.000, "/m/04rlf,/m/nope"\n')
    with pytest.raises(DatasetError, match=r"eval_segments.csv, line 4: label '/m/nope'"):
        read_dataset("audioset", root)


def test_audioset_duplicate_ytid_names_both_lines(tmp_path):
    root = make_audioset(tmp_path)
    (root / "eval_segments.csv").write_text(HEADER + '-0RWZT-miFs, 420.000, 430.000, "/m/04rlf"\n')
    with pytest.raises(DatasetError, match=r"eval_segments.csv, line 4: duplicate YTID.*balanced_train_segments.csv, "
                                           r"line 5"):
        read_dataset("audioset", root)


# ------------------------------------------------------------------------------------------ SONICS
REAL_HEADER = ("id,filename,title,artist,year,lyrics,lyrics_features,duration,youtube_id,label,artist_overlap,"
               "target,skip_time,no_vocal,split\n")
FAKE_HEADER = "id,filename,title,duration,algorithm,style,source,lyrics_features,topic,genre,mood,label,target,split\n"


def make_sonics(root: Path) -> Path:
    real = [("real_1", "Artist A", 200.5, False, "train"), ("real_2", "Artist A", 180.0, False, "train"),
            ("real_3", "Artist B", 25.0, False, "test"), ("real_4", "Artist C", 240.0, True, "valid"),
            ("real_5", "Artist C", 240.0, False, "valid")]
    fake = [("fake_10_suno_0", "Suno", 120.0, "train", "full fake"), ("fake_10_suno_1", "Suno", 119.0, "train",
                                                                       "full fake"),
            ("fake_11_udio_0", "Udio", 32.0, "test", "half fake"), ("fake_12_udio_0", "Udio", 29.9, "test",
                                                                    "mostly fake")]
    lines = [REAL_HEADER] + [f'{i},{f},"Song, {i}",{a},2001,"la la",x,{d},yt{i},real,False,0,0,{nv},{s}\n'
                             for i, (f, a, d, nv, s) in enumerate(real)]
    (root / "real_songs.csv").parent.mkdir(parents=True, exist_ok=True)
    (root / "real_songs.csv").write_text("".join(lines))
    lines = [FAKE_HEADER] + [f"{i},{f},t,{d},chirp-v3.5,pop,{src},x,love,pop,happy,{lab},1,{s}\n"
                             for i, (f, src, d, s, lab) in enumerate(fake)]
    (root / "fake_songs.csv").write_text("".join(lines))
    for f, *_ in real:
        write_clip(root / "real_songs" / f"{f}.wav", seconds=0.05)
    for f, *_ in fake:
        write_clip(root / "fake_songs" / f"{f}.wav", seconds=0.05)
    return root


def test_sonics_official_filters_splits_and_groups(tmp_path):
    idx = read_dataset("sonics", make_sonics(tmp_path), audio_ext=".wav")
    names = {Path(r.path).stem: r for r in idx.records}
    assert sorted(names) == ["fake_10_suno_0", "fake_10_suno_1", "fake_11_udio_0", "real_1", "real_2", "real_5"]
    assert names["real_5"].split == "validation" and names["real_1"].labels == (0,)
    assert names["fake_11_udio_0"].label_names == ("fake",) and names["fake_11_udio_0"].info["subtype"] == "half fake"
    assert names["real_1"].group == names["real_2"].group == "artist:Artist A"
    assert names["fake_10_suno_0"].group == names["fake_10_suno_1"].group != names["fake_11_udio_0"].group
    assert any("no_vocal" in p for p in idx.problems) and any("min_duration" in p for p in idx.problems)


def test_sonics_missing_column_lists_columns(tmp_path):
    root = make_sonics(tmp_path)
    (root / "real_songs.csv").write_text("id,filename,duration,split,label\n0,real_1,100,train,real\n")
    with pytest.raises(DatasetError, match=r"real_songs.csv, line 1: missing column\(s\) \['artist', 'no_vocal'\]"):
        read_dataset("sonics", root, audio_ext=".wav")


# ------------------------------------------------------------------------------------------ ASVspoof 2019 LA
def make_asvspoof(root: Path) -> Path:
    protos = {
        "train.trn": ["LA_0079 LA_T_1138215 - - bonafide", "LA_0079 LA_T_1271820 - A01 spoof",
                      "LA_0080 LA_T_2000001 - A02 spoof"],
        "dev.trl": ["LA_0069 LA_D_1047731 - - bonafide", "LA_0069 LA_D_1105538 - A04 spoof"],
        "eval.trl": ["LA_0039 LA_E_2834763 - A11 spoof", "LA_0014 LA_E_8688336 - - bonafide",
                     "LA_0014 LA_E_5849185 - A19 spoof"],
    }
    pdir = root / "LA" / "ASVspoof2019_LA_cm_protocols"
    pdir.mkdir(parents=True)
    for name, lines in protos.items():
        (pdir / f"ASVspoof2019.LA.cm.{name}.txt").write_text("\n".join(lines) + "\n")
        split = name.split(".")[0]
        for line in lines:
            write_clip(root / "LA" / f"ASVspoof2019_LA_{split}" / "flac" / f"{line.split()[1]}.flac", seconds=0.05)
    return root


def test_asvspoof_protocols_labels_speakers_and_systems(tmp_path):
    idx = read_dataset("asvspoof2019_la", make_asvspoof(tmp_path))
    assert idx.classes == ("bonafide", "spoof")
    assert {s: len(idx.split(s)) for s in idx.splits} == {"train": 3, "validation": 2, "test": 3}
    r = next(r for r in idx.records if r.info["file_id"] == "LA_E_5849185")
    assert r.labels == (1,) and r.group == "LA_0014" and r.info["system"] == "A19" and r.split == "test"
    assert r.path.endswith("ASVspoof2019_LA_eval/flac/LA_E_5849185.flac")
    assert next(r for r in idx.records if r.info["file_id"] == "LA_T_1138215").info["system"] == "-"


@pytest.mark.parametrize("text, error", [
    ("LA_0069 LA_D_1047731 - - bonafide\nLA_0069 LA_D_1105538 A04 spoof\n", r"dev.trl.txt, line 2: expected 5 fields"),
    ("LA_0069 LA_D_1047731 - - genuine\n", r"dev.trl.txt, line 1: key 'genuine' is not in \['bonafide', 'spoof'\]"),
], ids=["four fields", "unknown key"])
def test_asvspoof_bad_protocol_line_is_named(tmp_path, text, error):
    root = make_asvspoof(tmp_path)
    (root / "LA" / "ASVspoof2019_LA_cm_protocols" / "ASVspoof2019.LA.cm.dev.trl.txt").write_text(text)
    with pytest.raises(DatasetError, match=error):
        read_dataset("asvspoof2019_la", root)


# ------------------------------------------------------------------------------------------ In-the-Wild
def make_in_the_wild(root: Path) -> Path:
    rows = [("0.wav", "Alec Guinness", "spoof"), ("1.wav", "Alec Guinness", "bona-fide"),
            ("2.wav", "Barack Obama", "spoof"), ("3.wav", "Barack Obama", "bona-fide")]
    root.mkdir(parents=True, exist_ok=True)
    (root / "meta.csv").write_text("file,speaker,label\n" + "".join(f"{f},{s},{lab}\n" for f, s, lab in rows))
    for f, *_ in rows:
        write_clip(root / f, seconds=0.05)
    return root


def test_in_the_wild_is_test_only_with_speaker_groups(tmp_path):
    idx = read_dataset("in_the_wild", make_in_the_wild(tmp_path))
    assert idx.splits == ("test",) and idx.classes == ("bonafide", "spoof")
    assert [(Path(r.path).name, r.labels, r.group) for r in idx.records][:2] == [
        ("0.wav", (1,), "Alec Guinness"), ("1.wav", (0,), "Alec Guinness")]


def test_in_the_wild_bad_label_and_duplicate_are_named(tmp_path):
    root = make_in_the_wild(tmp_path)
    (root / "meta.csv").write_text("file,speaker,label\n0.wav,A,spoof\n1.wav,A,fake\n")
    with pytest.raises(DatasetError, match=r"meta.csv, line 3: label 'fake'"):
        read_dataset("in_the_wild", root)
    (root / "meta.csv").write_text("file,speaker,label\n0.wav,A,spoof\n0.wav,A,spoof\n")
    with pytest.raises(DatasetError, match=r"meta.csv, line 3: duplicate file '0.wav'"):
        read_dataset("in_the_wild", root)
