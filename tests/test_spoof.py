"""Locally made attacks (audiorep/data/spoof.py, `audiorep datasets spoof`): each attack really resynthesises the
clip, every spoof matches its source's length and level and shares its background treatment, so a probe on
duration, RMS and quietest-frame level stays at chance (on generated speech-like clips always, on FSDD when
../shared/data/fsdd is there); the folder job writes both deepfake_folder layouts, deterministically, atomically,
and refuses what it must."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.signal
import soundfile as sf

from audiorep.audio.io import AudioError, load_audio
from audiorep.cli import main
from audiorep.data import spoof
from audiorep.data.spoof import SpoofError, make_spoofs, spoof_clip, trivial_cues

FSDD = Path(__file__).resolve().parents[2] / "shared" / "data" / "fsdd" / "recordings"
RATE = 8000
VOCODERS = ("world", "griffinlim", "lpc")


def speech_like(rng: np.random.Generator, rate: int = RATE, *, alike: bool = False) -> np.ndarray:
    """A clip built like a recorded word: voiced syllables (a glottal pulse train with a gliding F0 through two or
    three formant resonators) and fricative noise bursts, in background noise at a random SNR, at a random level;
    a third of the clips start and end in digital silence (exact zeros), as many FSDD files do. `alike`: every clip
    lasts 0.5 s at -26 dBFS over background noise at -60 dBFS, so a probe sees the smallest offset a treatment
    leaves between the classes. f64[n] on the 16-bit grid."""
    n = int((0.5 if alike else rng.uniform(0.3, 0.8)) * rate)
    out = np.zeros(n)
    t = 0
    while t < n - int(0.05 * rate):
        length = min(int(rng.uniform(0.06, 0.2) * rate), n - t)
        if rng.random() < 0.7:  # voiced
            f0 = np.linspace(rng.uniform(90, 250), rng.uniform(90, 250), length)
            phase = np.cumsum(f0 / rate)
            source = (np.diff(np.floor(phase), prepend=0) > 0).astype(float)
            seg = scipy.signal.lfilter([1.0], [1.0, -0.95], source)
            for formant in rng.uniform([300, 900, 2200], [800, 2000, 3200])[: rng.integers(2, 4)]:
                r = np.exp(-np.pi * rng.uniform(60, 150) / rate)
                seg = scipy.signal.lfilter([1 - r], [1, -2 * r * np.cos(2 * np.pi * formant / rate), r * r], seg)
        else:  # fricative
            seg = scipy.signal.lfilter([1, -0.9], [1.0], rng.standard_normal(length)) * 0.3
        env = np.hanning(length)
        out[t:t + length] += seg * env / (np.sqrt(np.mean((seg * env) ** 2)) + 1e-12)
        t += length + int(rng.uniform(0.0, 0.05) * rate)
    out *= 10 ** ((-26 if alike else rng.uniform(-38, -16)) / 20) / np.sqrt(np.mean(out**2))
    out += rng.standard_normal(n) * 10 ** ((-60 if alike else rng.uniform(-75, -45)) / 20)
    if rng.random() < 1 / 3:
        edge = int(rng.uniform(0.01, 0.04) * rate)
        out[:edge] = 0.0
        out[-edge:] = 0.0
    return np.round(out * 32767) / 32767  # 16-bit values, like a read wav


def write_fsdd_like(folder: Path, names: list[str], seed: int = 0) -> list[Path]:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in names:
        sf.write(folder / name, speech_like(rng), RATE, subtype="PCM_16")
        paths.append(folder / name)
    return paths


def log_mel(x: np.ndarray) -> np.ndarray:
    import librosa

    return np.log(librosa.feature.melspectrogram(y=np.asarray(x, np.float32), sr=RATE, n_fft=256, hop_length=64,
                                                 n_mels=40) + 1e-8)


def cue_probe_auc(groups: list[dict[str, np.ndarray]], rate: int) -> float:
    """Cross-validated ROC-AUC of a logistic regression on trivial_cues, bona fide vs spoof, folds grouped by source
    clip (a source's bona fide copy and spoofs always share a fold)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import GroupKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    features, labels, sources = [], [], []
    for i, group in enumerate(groups):
        for name, clip in group.items():
            features.append(trivial_cues(clip, rate))
            labels.append(int(name != "bonafide"))
            sources.append(i)
    probe = make_pipeline(StandardScaler(), LogisticRegression(class_weight="balanced"))
    scores = cross_val_predict(probe, np.array(features), np.array(labels), groups=sources, cv=GroupKFold(5),
                               method="decision_function")
    return float(roc_auc_score(labels, scores))


def longest_zero_run(x: np.ndarray) -> int:
    zero = np.concatenate([[0], (np.asarray(x) == 0).astype(int), [0]])
    edges = np.flatnonzero(np.diff(zero))
    return int(np.max(edges[1::2] - edges[::2])) if len(edges) else 0


# ------------------------------------------------------------------------------------------------ the attacks
@pytest.mark.parametrize("attack", VOCODERS)
def test_each_vocoder_resynthesises_the_clip_keeping_its_spectrogram_not_its_waveform(attack):
    x = speech_like(np.random.default_rng(3))
    y = spoof.match_length(spoof.ATTACKS[attack].run(x, RATE, np.random.default_rng(0)), len(x))
    spectral = np.corrcoef(log_mel(x).ravel(), log_mel(y).ravel())[0, 1]
    waveform = abs(np.corrcoef(x, y)[0, 1])
    assert spectral > 0.7, f"{attack}: the spoof's log-mel spectrogram should follow the source's ({spectral:.2f})"
    assert waveform < 0.9, f"{attack}: the spoof is a resynthesis, not a copy (waveform correlation {waveform:.2f})"


def test_lpc_pitch_track_finds_the_f0_of_a_harmonic_tone_and_no_voicing_in_noise():
    t = np.arange(RATE) / RATE
    tone = 0.1 * sum(np.sin(2 * np.pi * 150 * k * t) / k for k in range(1, 10))
    centers = np.arange(0, RATE, 80)
    f0 = spoof.pitch_track(tone, RATE, centers)[5:-5]
    assert np.all(np.abs(f0 - 150) < 2), "a 150 Hz sawtooth-like tone is voiced at 150 Hz in every frame"
    noise = 0.1 * np.random.default_rng(0).standard_normal(RATE)
    assert np.mean(spoof.pitch_track(noise, RATE, centers) > 0) < 0.05, "white noise is unvoiced"


def test_the_lpc_attack_is_voiced_where_the_source_is_voiced():
    x = speech_like(np.random.default_rng(4))
    y = spoof.lpc_attack(x, RATE, np.random.default_rng(0))
    centers = np.arange(0, len(x), 80)
    voiced_x, voiced_y = spoof.pitch_track(x, RATE, centers) > 0, spoof.pitch_track(y, RATE, centers) > 0
    assert voiced_x.sum() > 5
    assert np.mean(voiced_x == voiced_y) > 0.75, "pulse-train excitation where the source is voiced"


def test_world_output_does_not_depend_on_earlier_calls():
    # at 8 kHz, D4C's voicing test read past its spectrum buffer (and its safeguard noise decided frames of digital
    # silence), so the same clip came out differently after other WORLD calls had run
    import pyworld

    x = speech_like(np.random.default_rng(5))
    x[:200] = 0.0
    runs = []
    for k in range(6):
        pyworld.harvest(np.random.default_rng(k).standard_normal(3000 + 500 * k), RATE)  # other work in between
        runs.append(spoof.world_attack(x, RATE, np.random.default_rng(1)))
    for y in runs[1:]:
        np.testing.assert_array_equal(y, runs[0])


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="the espeak-ng program is not installed")
def test_tts_speaks_the_word_over_the_spoken_part_of_the_source():
    x = np.zeros(int(0.9 * RATE), dtype=np.float32)
    x[1600:5600] = 0.1 * np.sin(np.arange(4000) * 0.3) * np.hanning(4000) ** 0.1  # 0.5 s of "speech" at 0.2 s
    y = spoof.tts_attack(x, RATE, np.random.default_rng(0), "seven")
    start, stop = spoof.active_span(y, RATE)
    assert len(y) == len(x)
    assert abs(start - 1600) <= 160, "the utterance starts where the source's speech starts"
    assert 0.6 < (stop - start) / 4000 < 1.4, "and lasts about as long"


def test_tts_without_espeak_names_the_apt_package(monkeypatch):
    monkeypatch.setattr(spoof, "espeak_program", lambda: None)
    with pytest.raises(SpoofError, match="apt package espeak-ng"):
        spoof.check_attacks(["lpc", "tts"])


def test_tts_needs_a_word_for_every_clip(tmp_path, monkeypatch):
    monkeypatch.setattr(spoof, "espeak_program", lambda: "/usr/bin/espeak-ng")
    write_fsdd_like(tmp_path / "in", ["hello.wav"])
    with pytest.raises(SpoofError, match="--words"):
        make_spoofs(tmp_path / "in", tmp_path / "out", ["tts"])
    assert not (tmp_path / "out").exists()


def test_an_unknown_attack_is_refused_with_the_choices():
    with pytest.raises(SpoofError, match="world.*griffinlim.*lpc.*tts"):
        spoof.check_attacks(["world", "vocoder9"])


# ---------------------------------------------------------------------------------------- the group treatment
def test_every_spoof_has_its_sources_length_and_rms_and_no_exact_zero_runs():
    x = speech_like(np.random.default_rng(7))
    x[:300] = 0.0  # digital silence at the start
    clips, _ = spoof_clip(x, RATE, VOCODERS, np.random.SeedSequence(0))
    bona = clips["bonafide"]
    for name, y in clips.items():
        assert len(y) == len(x)
        assert abs(spoof.rms_db(y) - spoof.rms_db(bona)) < 0.01, name
        assert longest_zero_run(np.round(y * 32767)) <= 8, f"{name} keeps a run of exact zeros (> 1 ms)"
        assert abs(trivial_cues(y, RATE)[2] - trivial_cues(bona, RATE)[2]) < 2.0, f"{name}: quietest frame"


def test_a_loud_spoof_lowers_the_whole_group_below_full_scale():
    x = speech_like(np.random.default_rng(8))
    x = 0.95 * x / np.max(np.abs(x))
    clips, _ = spoof_clip(x, RATE, ("griffinlim", "lpc"), np.random.SeedSequence(0))
    assert max(np.max(np.abs(y)) for y in clips.values()) <= spoof.PEAK_LIMIT + 1e-6
    levels = [spoof.rms_db(y) for y in clips.values()]
    assert max(levels) - min(levels) < 0.01, "one gain for the group keeps the levels matched"


def alike_groups(count: int) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(11)
    return [spoof_clip(speech_like(rng, alike=True), RATE, VOCODERS, np.random.SeedSequence([11, i]))[0]
            for i in range(count)]


@pytest.mark.slow
def test_a_probe_on_duration_rms_and_quietest_frame_stays_at_chance_on_generated_speech():
    # clips of one length and level over one background: the probe sees any offset the treatment leaves
    auc = cue_probe_auc(alike_groups(48), RATE)
    assert abs(auc - 0.5) < 0.1, f"trivial cues separate the classes: ROC-AUC {auc:.3f}"


@pytest.mark.slow
def test_without_the_noise_floor_the_cue_probe_tells_the_spoofs_apart(monkeypatch):
    # the control for the test above: the same clips, length and RMS matched but without the common noise floor,
    # are separated by the same probe, so its chance score measures the treatment and not a blind probe
    def rms_only(group, rate, rng):
        return [spoof.match_rms(y, spoof.rms_db(group[0])) for y in group]

    monkeypatch.setattr(spoof, "match_background", rms_only)
    auc = cue_probe_auc(alike_groups(48), RATE)
    assert auc > 0.65, f"without the noise floor the quietest frame should give spoofs away: ROC-AUC {auc:.3f}"


@pytest.mark.slow
@pytest.mark.skipif(not FSDD.is_dir(), reason="../shared/data/fsdd is not present")
def test_a_probe_on_duration_rms_and_quietest_frame_stays_at_chance_on_fsdd_spoofs():
    files = sorted(FSDD.glob("*.wav"))[::50]  # 60 clips: every digit and speaker
    groups = []
    for path in files:
        x, rate = load_audio(path)
        groups.append(spoof_clip(x, rate, VOCODERS, spoof.clip_seed(0, path.name))[0])
    auc = cue_probe_auc(groups, rate)
    assert abs(auc - 0.5) < 0.1, f"trivial cues separate FSDD bona fide from spoofs: ROC-AUC {auc:.3f}"


# ------------------------------------------------------------------------------------------- the folder job
def read_labels(out: Path) -> list[dict[str, str]]:
    with open(out / "labels.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_make_spoofs_writes_bonafide_spoof_folders_and_a_paired_labels_csv(tmp_path):
    write_fsdd_like(tmp_path / "in", ["3_ana_0.wav", "7_bo_1.wav"])
    (tmp_path / "SPEAKERS.csv").write_text("speaker,gender,accent,language\nana,female,x,english\nbo,male,y,english\n")
    report = make_spoofs(tmp_path / "in", tmp_path / "out", ["lpc", "world"])
    out = tmp_path / "out"
    assert sorted(p.name for p in (out / "bonafide").iterdir()) == ["3_ana_0.wav", "7_bo_1.wav"]
    assert sorted(p.name for p in (out / "spoof").iterdir()) == ["lpc", "world"]
    rows = read_labels(out)
    assert list(rows[0]) == ["path", "label", "attack_id", "speaker", "word", "source_clip", "gender", "language"]
    assert rows[:3] == [
        {"path": "bonafide/3_ana_0.wav", "label": "bonafide", "attack_id": "-", "speaker": "ana", "word": "three",
         "source_clip": "bonafide/3_ana_0.wav", "gender": "female", "language": "english"},
        {"path": "spoof/lpc/3_ana_0.wav", "label": "spoof", "attack_id": "lpc", "speaker": "ana", "word": "three",
         "source_clip": "bonafide/3_ana_0.wav", "gender": "female", "language": "english"},
        {"path": "spoof/world/3_ana_0.wav", "label": "spoof", "attack_id": "world", "speaker": "ana",
         "word": "three", "source_clip": "bonafide/3_ana_0.wav", "gender": "female", "language": "english"},
    ]
    assert all((out / r["path"]).is_file() for r in rows) and len(rows) == 6 == len(report.rows)
    info = sf.info(out / "spoof/world/7_bo_1.wav")
    source = sf.info(tmp_path / "in/7_bo_1.wav")
    assert (info.samplerate, info.subtype, info.frames) == (RATE, "PCM_16", source.frames)
    manifest = json.loads((out / "spoof.json").read_text())
    assert manifest["attacks"] == ["lpc", "world"] and manifest["sources"] == 2


@pytest.mark.parametrize("layout", ["csv", "folders"])
def test_the_deepfake_folder_reader_reads_the_output_in_both_layouts(tmp_path, layout):
    from audiorep.data.sources import read_dataset

    write_fsdd_like(tmp_path / "in", ["3_ana_0.wav", "7_bo_1.wav"])
    make_spoofs(tmp_path / "in", tmp_path / "out", ["lpc", "griffinlim"])
    index = read_dataset("deepfake_folder", tmp_path / "out", layout=layout, speaker_regex=r"^\d_([a-z]+)_")
    assert sorted((r.label_names[0], r.info.get("attack_id"), r.group) for r in index.records) == [
        ("bonafide", None, "ana"), ("bonafide", None, "bo"), ("spoof", "griffinlim", "ana"),
        ("spoof", "griffinlim", "bo"), ("spoof", "lpc", "ana"), ("spoof", "lpc", "bo")]


def test_the_output_depends_on_the_seed_and_not_on_the_number_of_workers(tmp_path):
    write_fsdd_like(tmp_path / "in", [f"{d}_cy_{i}.wav" for d in range(2) for i in range(2)])
    make_spoofs(tmp_path / "in", tmp_path / "one", ["lpc", "world"], seed=3, workers=1)
    make_spoofs(tmp_path / "in", tmp_path / "two", ["lpc", "world"], seed=3, workers=2)
    make_spoofs(tmp_path / "in", tmp_path / "other", ["lpc", "world"], seed=4, workers=1)
    files = sorted(p.relative_to(tmp_path / "one") for p in (tmp_path / "one").rglob("*.wav"))
    assert len(files) == 12
    for rel in files:
        assert (tmp_path / "one" / rel).read_bytes() == (tmp_path / "two" / rel).read_bytes(), rel
    one, other = (tmp_path / "one/spoof/lpc/0_cy_0.wav"), (tmp_path / "other/spoof/lpc/0_cy_0.wav")
    assert one.read_bytes() != other.read_bytes()


def test_speaker_regex_and_words_csv_fill_the_speaker_and_word_columns(tmp_path):
    write_fsdd_like(tmp_path / "in" / "spk01", ["take_a.wav"])
    write_fsdd_like(tmp_path / "in" / "spk02", ["take_b.wav"], seed=1)
    (tmp_path / "words.csv").write_text("file,word\nspk01/take_a.wav,hello\ntake_b.wav,world\n")
    make_spoofs(tmp_path / "in", tmp_path / "out", ["lpc"], speaker_regex=r"^(?P<speaker>spk\d+)/",
                words=tmp_path / "words.csv")
    rows = read_labels(tmp_path / "out")
    assert [(r["path"], r["speaker"], r["word"]) for r in rows] == [
        ("bonafide/spk01__take_a.wav", "spk01", "hello"), ("spoof/lpc/spk01__take_a.wav", "spk01", "hello"),
        ("bonafide/spk02__take_b.wav", "spk02", "world"), ("spoof/lpc/spk02__take_b.wav", "spk02", "world"),
    ]


def test_a_missing_words_csv_is_refused_before_any_work(tmp_path):
    write_fsdd_like(tmp_path / "in", ["1_cy_0.wav"])
    with pytest.raises(SpoofError, match="--words .*no such file"):
        make_spoofs(tmp_path / "in", tmp_path / "out", ["lpc"], words=tmp_path / "words.csv")
    assert not (tmp_path / "out").exists()


def test_limit_spreads_the_chosen_files_over_the_sorted_list(tmp_path):
    write_fsdd_like(tmp_path / "in", [f"{d}_cy_0.wav" for d in range(10)])
    clips = spoof.find_sources(tmp_path / "in", limit=4)
    assert [c.word for c in clips] == ["zero", "three", "six", "nine"]


def test_a_non_empty_out_is_refused_without_force(tmp_path):
    write_fsdd_like(tmp_path / "in", ["1_cy_0.wav"])
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "mine.txt").write_text("keep me")
    with pytest.raises(SpoofError, match="--force"):
        make_spoofs(tmp_path / "in", tmp_path / "out", ["lpc"])
    assert (tmp_path / "out" / "mine.txt").read_text() == "keep me"


def test_force_never_replaces_a_folder_that_spoof_did_not_write(tmp_path):
    write_fsdd_like(tmp_path / "in", ["1_cy_0.wav"])
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "mine.txt").write_text("keep me")
    with pytest.raises(SpoofError, match="spoof.json"):
        make_spoofs(tmp_path / "in", tmp_path / "out", ["lpc"], force=True)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["mine.txt"]


def test_force_replaces_an_earlier_output_whole(tmp_path):
    write_fsdd_like(tmp_path / "in", ["1_cy_0.wav"])
    make_spoofs(tmp_path / "in", tmp_path / "out", ["lpc", "world"])
    make_spoofs(tmp_path / "in", tmp_path / "out", ["lpc"], force=True)
    assert sorted(p.name for p in (tmp_path / "out" / "spoof").iterdir()) == ["lpc"], "no stale attack folder"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "out"], "no staging or old folder left"


def test_out_inside_the_bonafide_folder_is_refused(tmp_path):
    write_fsdd_like(tmp_path / "in", ["1_cy_0.wav"])
    with pytest.raises(SpoofError, match="overlaps"):
        make_spoofs(tmp_path / "in", tmp_path / "in" / "spoofed", ["lpc"])


def test_a_failure_midway_leaves_no_dataset_and_no_staging_folder(tmp_path, monkeypatch):
    write_fsdd_like(tmp_path / "in", ["1_cy_0.wav", "2_cy_0.wav", "3_cy_0.wav"])
    calls = []

    def fails_on_the_second_clip(x, rate, rng, word=None):
        calls.append(1)
        if len(calls) == 2:
            raise SpoofError("attack failed")
        return x

    monkeypatch.setitem(spoof.ATTACKS, "lpc", spoof.Attack("lpc", "", fails_on_the_second_clip, ""))
    with pytest.raises(SpoofError, match="attack failed"):
        make_spoofs(tmp_path / "in", tmp_path / "out", ["lpc"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]


def test_an_unreadable_input_stops_the_run_naming_the_file(tmp_path):
    write_fsdd_like(tmp_path / "in", ["1_cy_0.wav"])
    (tmp_path / "in" / "2_cy_0.wav").write_bytes(b"not audio at all")
    with pytest.raises(AudioError, match=r"2_cy_0\.wav.*--skip-unreadable"):
        make_spoofs(tmp_path / "in", tmp_path / "out", ["lpc"])
    assert not (tmp_path / "out").exists()


def test_skip_unreadable_skips_and_lists_the_bad_inputs(tmp_path):
    write_fsdd_like(tmp_path / "in", ["1_cy_0.wav"])
    (tmp_path / "in" / "2_cy_0.wav").write_bytes(b"not audio at all")
    sf.write(tmp_path / "in" / "3_cy_0.wav", np.zeros(100), RATE)  # 12.5 ms: too short for the vocoders
    report = make_spoofs(tmp_path / "in", tmp_path / "out", ["lpc"], skip_unreadable=True)
    assert report.sources == 1
    assert [s.split(":")[0] for s in report.skipped] == [str(tmp_path / "in" / n) for n in ("2_cy_0.wav", "3_cy_0.wav")]


def test_datasets_spoof_command_writes_the_dataset(tmp_path, capsys):
    write_fsdd_like(tmp_path / "in", ["4_cy_0.wav", "5_cy_0.wav"])
    assert main(["datasets", "spoof", "--from", str(tmp_path / "in"), "--out", str(tmp_path / "df"),
                 "--attacks", "lpc", "-q"]) == 0
    assert "wrote 2 bona fide clips and 2 spoofs (lpc)" in capsys.readouterr().out
    assert len(read_labels(tmp_path / "df")) == 4


def test_datasets_spoof_command_says_when_clips_have_no_speaker(tmp_path, capsys):
    write_fsdd_like(tmp_path / "in", ["take_a.wav"])
    assert main(["datasets", "spoof", "--from", str(tmp_path / "in"), "--out", str(tmp_path / "df"),
                 "--attacks", "lpc", "-q"]) == 0
    assert "1 source clips have no speaker" in capsys.readouterr().out


def test_datasets_spoof_command_reports_a_missing_source_folder_in_one_line(tmp_path, capsys):
    assert main(["datasets", "spoof", "--from", str(tmp_path / "nope"), "--out", str(tmp_path / "df")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --from") and "no such folder" in err and len(err.strip().splitlines()) == 1
