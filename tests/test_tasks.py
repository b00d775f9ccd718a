"""Task protocols on miniature real-format layouts: fold logic, no group leakage per task, run -> Result."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import tone
from test_songs import make_sonics

from audiorep.audio.frontends import get_frontend
from audiorep.audio.io import save_audio
from audiorep.data.sources import Record
from audiorep.downstream import probes as P
from audiorep.downstream import tasks as T
from audiorep.downstream.cache import EmbeddingCache

RATE = 8000
ESC = [("dog", 0, True), ("rooster", 1, True), ("pig", 2, False)]


def _wav(path, freq=440.0, seconds=0.05):
    save_audio(path, tone(freq, seconds=seconds, rate=RATE), RATE)


def make_esc50(root):
    (root / "meta").mkdir(parents=True)
    rows = ["filename,fold,target,category,esc10,src_file,take"]
    for fold in range(1, 6):
        for name, target, esc10 in ESC:
            for s in range(2):
                src = f"{fold}{target}{s}00"
                for take in "AB":
                    fn = f"{fold}-{src}-{take}-{target}.wav"
                    _wav(root / "audio" / fn, 300.0 + 400 * target + 20 * s)
                    rows.append(f"{fn},{fold},{target},{name},{esc10},{src},{take}")
    (root / "meta" / "esc50.csv").write_text("\n".join(rows) + "\n")
    return root


def make_speech_commands(root):
    speakers = [f"{i:08x}" for i in range(0x1a2b3c40, 0x1a2b3c46)]
    val, test = [], []
    for word in ("yes", "no", "bed"):
        for k, spk in enumerate(speakers):
            rel = f"{word}/{spk}_nohash_0.wav"
            _wav(root / rel)
            (val if k == 4 else test if k == 5 else []).append(rel)
    for noise in ("white_noise.wav", "running_tap.wav"):
        _wav(root / "_background_noise_" / noise, seconds=2.0)
    (root / "validation_list.txt").write_text("\n".join(val) + "\n")
    (root / "testing_list.txt").write_text("\n".join(test) + "\n")
    return root


def make_audioset(root):
    mids = ["/m/a", "/m/b", "/m/c"]
    (root / "class_labels_indices.csv").parent.mkdir(parents=True, exist_ok=True)
    (root / "class_labels_indices.csv").write_text(
        "index,mid,display_name\n" + "".join(f'{i},{m},"C{i}"\n' for i, m in enumerate(mids)))
    for split, n in (("balanced_train", 20), ("eval", 6)):
        lines = ["# Segments csv", "# num_ytids", "# YTID, start_seconds, end_seconds, positive_labels"]
        for i in range(n):
            ytid = f"{split[:2]}{i:09d}"
            lines.append(f'{ytid}, 0.000, 10.000, "{mids[i % 3]},{mids[(i + 1) % 3]}"')
            _wav(root / split / f"{ytid}.wav")
        (root / f"{split}_segments.csv").write_text("\n".join(lines) + "\n")
    return root


def make_fsdd(root):
    for spk in ("george", "jackson", "lucas", "nicolas", "theo", "yweweler"):
        for digit in range(3):
            for n in range(2):
                _wav(root / "recordings" / f"{digit}_{spk}_{n}.wav", 300.0 + 300 * digit)
    return root


def make_synthetic(root):
    from audiorep.data.synthetic import write_corpus

    write_corpus(root, per_class=4, seed=0, seconds=0.25, sample_rate=RATE, clips_per_group=2)
    return root


def make_asvspoof(root):
    proto = root / "ASVspoof2019_LA_cm_protocols"
    proto.mkdir(parents=True)
    n = 0
    for split, suffix, speakers in (("train", "trn", (79, 80)), ("dev", "trl", (81, 82)), ("eval", "trl", (83, 84))):
        lines = []
        for spk in speakers:
            for key, system, freq in (("bonafide", "-", 300.0), ("spoof", "A01", 1500.0), ("spoof", "A02", 1700.0)):
                n += 1
                file = f"LA_{split[0].upper()}_{n:07d}"
                save_audio(root / f"ASVspoof2019_LA_{split}" / "flac" / f"{file}.flac",
                           tone(freq + spk, seconds=0.05, rate=RATE), RATE)
                lines.append(f"LA_{spk:04d} {file} - {system} {key}")
        (proto / f"ASVspoof2019.LA.cm.{split}.{suffix}.txt").write_text("\n".join(lines) + "\n")
    return root


LAYOUTS = {"esc50": make_esc50, "esc10": make_esc50, "speech_commands": make_speech_commands,
           "speech_commands12": make_speech_commands, "audioset": make_audioset, "fsdd": make_fsdd,
           "synthetic": make_synthetic, "asvspoof2019_la": make_asvspoof, "sonics": make_sonics}


class ToneEmbedder:
    """Embeds a clip as its energy in 16 bands of 250 Hz: enough to separate the miniature tone classes."""

    name, sample_rate = "tone-features", RATE

    def cache_spec(self):
        return {"model": self.name, "sample_rate": self.sample_rate, "checkpoint": "fixed"}

    def scene(self, clips):
        spec = [np.abs(np.fft.rfft(c, n=2048))[:1024] ** 2 for c in clips]
        return np.log(np.stack([s.reshape(16, 64).sum(1) for s in spec]) + 1e-6).astype(np.float32)


def _groups(records):
    return {T.group_of(r) for r in records}


def test_every_task_has_a_miniature_layout_test():
    from test_tasks_detection import DETECTION_LAYOUTS  # that module imports this one's layouts

    assert set(LAYOUTS) | set(DETECTION_LAYOUTS) == set(T.TASKS)


@pytest.mark.parametrize("task", sorted(LAYOUTS))
def test_task_splits_never_share_a_group(tmp_path, task):
    root = LAYOUTS[task](tmp_path / task)
    spec = T.get_task(task)
    splits = spec.splits(spec.read(root))
    for sp in splits:
        tr, va, te = (_groups(p) for p in (sp.train, sp.validation, sp.test))
        assert not (tr & va) and not (tr & te) and not (va & te), sp.name
        assert sp.train and sp.validation and sp.test


def test_esc50_folds_test_each_fold_once_and_validate_on_the_next(tmp_path):
    spec = T.get_task("esc50")
    splits = spec.splits(spec.read(make_esc50(tmp_path / "esc")))
    assert [sp.name for sp in splits] == [f"fold{k}" for k in range(1, 6)]
    for k, sp in enumerate(splits, 1):
        assert {r.fold for r in sp.test} == {k}
        assert {r.fold for r in sp.validation} == {k % 5 + 1}
        assert {r.fold for r in sp.train} == set(range(1, 6)) - {k, k % 5 + 1}
    assert sorted(r.path for sp in splits for r in sp.test) == sorted(r.path for r in splits[0].parts()["train"]
                                                                      + splits[0].validation + splits[0].test)


def test_esc10_keeps_only_the_esc10_classes(tmp_path):
    spec = T.get_task("esc10")
    index = spec.read(make_esc50(tmp_path / "esc"))
    assert {n for r in index.records for n in r.label_names} == {"dog", "rooster"}


def test_leakage_check_names_the_shared_group():
    a = Record("/a.wav", (0,), ("x",), "", None, "spk1", "folder")
    b = Record("/b.wav", (0,), ("x",), "", None, "spk1", "folder")
    c = Record("/c.wav", (1,), ("y",), "", None, "spk2", "folder")
    with pytest.raises(T.LeakageError, match="'spk1' is in both train and test"):
        T.check_no_group_leakage(T.Split("s", [a], [c], [b]))


def test_leakage_check_catches_one_file_in_two_parts_without_groups():
    a = Record("/a.wav", (0,), ("x",), "", None, None, "folder", start_s=0.0, end_s=1.0)
    b = Record("/a.wav", (0,), ("x",), "", None, None, "folder", start_s=1.0, end_s=2.0)
    c = Record("/c.wav", (1,), ("y",), "", None, None, "folder")
    with pytest.raises(T.LeakageError, match="/a.wav"):
        T.check_no_group_leakage([T.Split("s", [a], [c], [b])])


def test_empty_part_is_refused():
    a = Record("/a.wav", (0,), ("x",), "", None, None, "folder")
    with pytest.raises(T.TaskError, match="validation part is empty"):
        T.check_no_group_leakage(T.Split("s", [a], [], [a]))


def test_group_folds_keep_groups_together_and_balance_sizes():
    recs = [Record(f"/{g}_{i}.wav", (0,), ("x",), "", None, f"g{g}", "folder")
            for g in range(10) for i in range(g % 3 + 1)]
    folded = T.assign_group_folds(recs, 3, seed=1)
    fold_of_group = {}
    for r in folded:
        assert fold_of_group.setdefault(r.group, r.fold) == r.fold
    sizes = np.bincount([r.fold for r in folded])[1:]
    assert sizes.max() - sizes.min() <= 3


def test_audioset_validation_is_carved_from_train_videos(tmp_path):
    spec = T.get_task("audioset")
    index = spec.read(make_audioset(tmp_path / "as"))
    (sp,) = spec.splits(index)
    assert index.multilabel and len(sp.test) == 6
    assert len(sp.validation) == 2 and len(sp.train) == 18
    assert all(r.info["audioset_split"] == "balanced_train" for r in sp.validation)


def test_fsdd_on_the_shared_recordings_is_speaker_disjoint(fsdd_dir):
    spec = T.get_task("fsdd")
    splits = spec.splits(spec.read(fsdd_dir.parent))
    assert len(splits) == 6
    for sp in splits:
        assert len({r.group for r in sp.test}) == 1 and len({r.group for r in sp.train}) == 4


def test_run_reports_mean_and_std_over_the_five_esc50_folds(tmp_path):
    root = make_esc50(tmp_path / "esc")
    res = T.run("esc50", ToneEmbedder(), root, EmbeddingCache(tmp_path / "cache"), probe="knn", progress=False)
    assert res.task == "esc50" and res.metric == "accuracy" and res.model == "tone-features"
    assert len(res.folds) == 5 and res.mean == pytest.approx(np.mean(res.folds))
    assert res.std == pytest.approx(np.std(res.folds))
    assert res.mean > 0.9 and res.checkpoint == "fixed" and res.probe == "knn"
    assert res.extra["sizes"][0] == {"train": 36, "validation": 12, "test": 12}
    assert res.extra["files"] == {"expected": 60, "present": 60, "missing": 0}


def remove_forty_percent(esc_root):
    """Delete the B takes of folds 1-4: 24 of the 60 files, every source clip keeps its A take."""
    gone = sorted((esc_root / "audio").glob("[1-4]-*-B-*.wav"))
    for f in gone:
        f.unlink()
    return gone


def test_run_refuses_a_dataset_with_listed_files_missing_and_embeds_nothing(tmp_path):
    root = make_esc50(tmp_path / "esc")
    gone = remove_forty_percent(root)
    expected = r"esc50: 24 of 60 audio files .* missing .*--allow-missing"
    with pytest.raises(T.IncompleteDatasetError, match=expected) as e:
        T.run("esc50", ToneEmbedder(), root, EmbeddingCache(tmp_path / "cache"), probe="knn", progress=False)
    assert str(gone[0].resolve()) in str(e.value) and "\n" not in str(e.value)
    assert not any((tmp_path / "cache").rglob("*.npy"))


def test_run_with_allow_missing_records_the_file_counts_in_the_result(tmp_path):
    root = make_esc50(tmp_path / "esc")
    remove_forty_percent(root)
    res = T.run("esc50", ToneEmbedder(), root, EmbeddingCache(tmp_path / "cache"), probe="knn", progress=False,
                allow_missing=True)
    assert res.extra["files"] == {"expected": 60, "present": 36, "missing": 24}
    assert sum(res.extra["sizes"][0].values()) == 36


class DirEmbedder(ToneEmbedder):
    """ToneEmbedder standing in for an Embedder loaded from a model directory (bundle.source = the directory)."""

    def __init__(self, model_dir):
        self.bundle = type("Bundle", (), {"source": str(model_dir)})()


def test_run_records_the_model_directory_an_embedder_came_from(tmp_path):
    root = make_esc50(tmp_path / "esc")
    (tmp_path / "export").mkdir()
    cache = EmbeddingCache(tmp_path / "cache")
    res = T.run("esc50", DirEmbedder(tmp_path / "export"), root, cache, probe="knn", progress=False, max_folds=1)
    assert res.extra["model_dir"] == str((tmp_path / "export").resolve())
    res = T.run("esc50", ToneEmbedder(), root, cache, probe="knn", progress=False, max_folds=1)
    assert res.extra["model_dir"] is None


def test_audioset_runs_with_deleted_clips_and_records_them(tmp_path):
    root = make_audioset(tmp_path / "as")
    (root / "balanced_train" / "ba000000003.wav").unlink()
    res = T.run("audioset", ToneEmbedder(), root, EmbeddingCache(tmp_path / "cache"), probe="knn", progress=False)
    assert res.extra["files"] == {"expected": 26, "present": 25, "missing": 1}


def test_run_with_the_mlp_grid_records_grid_seed_and_selection(tmp_path):
    root = make_fsdd(tmp_path / "fsdd")
    grid = P.Grid("tiny", (P.GridPoint(hidden_layers=0, lr=1e-2, seed=5),),
                  P.Schedule(max_epochs=6, check_every=3, patience=2, batch_size=16))
    res = T.run("fsdd", ToneEmbedder(), root, EmbeddingCache(tmp_path / "cache"), grid=grid, seed=3, max_folds=2,
                progress=False)
    assert len(res.folds) == 2 and res.extra["max_folds"] == 2
    assert res.seed == 3 and res.grid["points"][0]["seed"] == 5
    assert res.extra["selected"][0]["lr"] == 1e-2
    assert set(res.scores) >= {"accuracy", "f1_macro"}


def test_unknown_task_lists_the_tasks():
    with pytest.raises(T.TaskError, match="esc50"):
        T.get_task("esc-50")


def test_logmel_baseline_statistics_ignore_padding(rng):
    model = T.LogMelBaseline("beats")
    short = rng.normal(0, 0.1, 7000).astype(np.float32)
    long = rng.normal(0, 0.1, 24000).astype(np.float32)
    both = model.scene([short, long])
    alone = model.scene([short])
    assert both.shape == (2, 256)
    np.testing.assert_allclose(both[0], alone[0], rtol=1e-4, atol=1e-4)


def test_logmel_baseline_through_an_encoders_level_normalising_frontend(rng):
    import dataclasses

    from audiorep.audio.frontends import SSAST_FBANK, KaldiFbank

    model = T.LogMelBaseline(KaldiFbank(dataclasses.replace(SSAST_FBANK, level_db=-25.0), name="ssast@-25dB"))
    assert model.name == "logmel-ssast@-25dB" and model.cache_spec()["frontend"]["config"]["level_db"] == -25.0
    clip = rng.normal(0, 0.1, 7000).astype(np.float32)
    quiet_in_a_batch = model.scene([clip * 0.01, rng.normal(0, 0.1, 24000).astype(np.float32)])[0]
    np.testing.assert_allclose(quiet_in_a_batch, model.scene([clip])[0], rtol=1e-3, atol=1e-3)


def test_logmel_baseline_delta_pooling_is_the_delta_spread_of_the_clips_own_frames(rng):
    """The third block is the std of (f[t+1] - f[t-1]) / 2 over exactly the clip's log-mel frames (the frontend
    run on the clip alone, numpy statistics), whatever it is batched with; the first two are 'mean+std'."""
    frontend = get_frontend("beats")
    model = T.LogMelBaseline(frontend, pooling="mean+std+delta")
    clips = [rng.normal(0, 0.1, n).astype(np.float32) for n in (7000, 24000)]
    both = model.scene(clips)
    assert both.shape == (2, 3 * 128) and model.cache_spec()["pooling"] == "mean+std+delta"
    plain = T.LogMelBaseline(frontend).scene(clips)
    np.testing.assert_allclose(both[:, :256], plain, rtol=1e-5, atol=1e-6)
    for emb, clip in zip(both, clips):
        feats = np.asarray(frontend(clip[None]), np.float64)[0][: frontend.num_frames(len(clip))]
        want = ((feats[2:] - feats[:-2]) / 2).std(0)
        np.testing.assert_allclose(emb[256:], want, rtol=1e-3, atol=1e-4)
    with pytest.raises(T.TaskError, match="mean\\+std"):
        T.LogMelBaseline(frontend, pooling="max")
    with pytest.raises(T.TaskError, match="only pooling"):
        T.resolve_model("logmel", layer=3)
    assert T.resolve_model("logmel", pooling="mean+std+delta").scene_embedding_size == 3 * 128


def test_resolve_model_gives_the_logmel_baseline():
    m = T.resolve_model("logmel-ssast")
    assert isinstance(m, T.LogMelBaseline) and m.name == "logmel-ssast" and m.sample_rate == 16000


def test_probe_and_leaderboard_commands_end_to_end(tmp_path, capsys):
    from audiorep.cli import main
    from audiorep.downstream.leaderboard import read_results

    root = make_fsdd(tmp_path / "fsdd")
    store = tmp_path / "results.jsonl"
    rc = main(["probe", "--model", "logmel", "--task", "fsdd", "--data-root", str(root), "--probe", "knn",
               "--cache", str(tmp_path / "cache"), "--results", str(store), "--max-folds", "2", "-q"])
    assert rc == 0
    assert "accuracy" in capsys.readouterr().out
    (row,) = read_results(store)
    assert row.model == "logmel-beats" and row.task == "fsdd" and len(row.folds) == 2
    assert main(["leaderboard", str(store), "--out", str(tmp_path / "board")]) == 0
    assert (tmp_path / "board" / "index.html").is_file()


def test_probe_command_refuses_missing_files_in_one_line_and_appends_nothing(tmp_path, capsys):
    from audiorep.cli import main

    root = make_esc50(tmp_path / "esc")
    remove_forty_percent(root)
    store = tmp_path / "results.jsonl"
    store.write_bytes(b'{"model": "earlier", "task": "esc50", "metric": "accuracy", "mean": 0.5}\n')
    before = store.read_bytes()
    rc = main(["probe", "--model", "logmel", "--task", "esc50", "--data-root", str(root), "--probe", "knn",
               "--cache", str(tmp_path / "cache"), "--results", str(store), "-q"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1
    assert err.startswith("error: esc50: 24 of 60 audio files") and "--allow-missing" in err
    assert store.read_bytes() == before


def test_probe_command_with_allow_missing_records_the_counts_in_the_row(tmp_path, capsys):
    from audiorep.cli import main
    from audiorep.downstream.leaderboard import read_results

    root = make_esc50(tmp_path / "esc")
    remove_forty_percent(root)
    store = tmp_path / "results.jsonl"
    rc = main(["probe", "--model", "logmel", "--task", "esc50", "--data-root", str(root), "--probe", "knn",
               "--cache", str(tmp_path / "cache"), "--results", str(store), "--max-folds", "1", "-q",
               "--allow-missing"])
    assert rc == 0 and "24 missing" in capsys.readouterr().out
    (row,) = read_results(store)
    assert row.extra["files"] == {"expected": 60, "present": 36, "missing": 24}


def test_probe_command_names_data_root_when_the_dataset_layout_is_wrong(tmp_path, capsys):
    from audiorep.cli import main

    (tmp_path / "not-esc").mkdir()
    assert main(["probe", "--model", "logmel", "--task", "esc50", "--data-root", str(tmp_path / "not-esc"),
                 "-q"]) == 2
    err = capsys.readouterr().err
    assert "meta/esc50.csv" in err and "--data-root of `audiorep probe`" in err


def test_probe_command_refuses_a_results_path_that_is_a_folder_before_any_work(tmp_path, capsys):
    from audiorep.cli import main

    root = make_esc50(tmp_path / "esc")
    (tmp_path / "store").mkdir()
    rc = main(["probe", "--model", "logmel", "--task", "esc50", "--data-root", str(root), "--probe", "knn",
               "--cache", str(tmp_path / "cache"), "--results", str(tmp_path / "store"), "-q"])
    assert rc == 2 and "--results" in capsys.readouterr().err
    assert not (tmp_path / "cache").exists()


def test_probe_command_without_data_root_explains(tmp_path, capsys):
    from audiorep.cli import main

    assert main(["probe", "--model", "logmel", "--task", "esc50", "-q"]) == 2
    assert "needs --data-root" in capsys.readouterr().err


def test_probe_command_repeats_the_grid_and_refuses_zero_repeats(tmp_path, capsys):
    from audiorep.cli import main
    from audiorep.downstream.leaderboard import read_results

    root = make_fsdd(tmp_path / "fsdd")
    store = tmp_path / "results.jsonl"
    assert main(["probe", "--model", "logmel", "--task", "fsdd", "--data-root", str(root), "--grid", "linear",
                 "--repeats", "2", "--cache", str(tmp_path / "cache"), "--results", str(store), "--max-folds", "1",
                 "-q"]) == 0
    assert "grid linear x 2 repeats" in capsys.readouterr().out
    assert read_results(store)[0].grid["repeats"] == 2
    with pytest.raises(SystemExit):
        main(["probe", "--model", "logmel", "--task", "fsdd", "--repeats", "0"])
    assert "expected a whole number >= 1" in capsys.readouterr().err


def test_group_folds_spread_every_class_over_the_folds():
    recs = [Record(f"/{c}_{g}_{i}.wav", (c,), (str(c),), "", None, f"c{c}g{g}", "folder")
            for c in range(4) for g in range(5) for i in range(3)]
    folded = T.assign_group_folds(recs, 5, seed=3)
    for c in range(4):
        assert sorted(r.fold for r in folded if r.labels == (c,)) == sorted([1, 2, 3, 4, 5] * 3)


def test_asvspoof_task_reports_eer_with_bonafide_as_target(tmp_path):
    root = make_asvspoof(tmp_path / "LA")
    res = T.run("asvspoof2019_la", ToneEmbedder(), root, EmbeddingCache(tmp_path / "cache"), probe="knn",
                progress=False)
    assert res.metric == "eer" and not res.higher_is_better
    assert res.mean == 0.0  # tones of the two classes are far apart
    assert {"min_dcf", "sensitivity", "specificity", "roc_auc"} <= set(res.scores)


def test_run_with_repeats_records_them_and_refuses_them_beside_a_grid_object(tmp_path):
    root = make_fsdd(tmp_path / "fsdd")
    cache = EmbeddingCache(tmp_path / "cache")
    res = T.run("fsdd", ToneEmbedder(), root, cache, grid="linear", repeats=2, seed=1, max_folds=1, progress=False)
    assert res.grid["repeats"] == 2 and len(res.grid["points"]) == 16
    sel = res.extra["selected"][0]
    assert len(sel["repeat_seeds"]) == 2 and sel["repeat_seeds"][1] == sel["repeat_seeds"][0] + 8
    assert res.folds[0] == pytest.approx(np.mean([r["accuracy"] for r in sel["repeat_test"]]))
    grid = P.Grid("tiny", (P.GridPoint(hidden_layers=0, lr=1e-2, seed=5),), P.Schedule(max_epochs=6))
    with pytest.raises(T.TaskError, match="Grid.repeats"):
        T.run("fsdd", ToneEmbedder(), root, cache, grid=grid, repeats=2, max_folds=1, progress=False)


def test_detection_run_saves_scores_det_curve_and_histograms(tmp_path):
    from audiorep.downstream import metrics as M
    from audiorep.downstream import plots

    root = make_asvspoof(tmp_path / "LA")
    res = T.run("asvspoof2019_la", ToneEmbedder(), root, EmbeddingCache(tmp_path / "cache"), probe="knn",
                progress=False, scores_dir=tmp_path / "results-detection")
    det = res.extra["detection"]
    assert set(det) == {"scores", "det_png", "histogram_png"}
    folder = Path(det["scores"]).parent
    assert folder.parent == tmp_path / "results-detection" and folder.name.startswith("asvspoof2019_la-tone-features-")
    assert plots.read_png_info(det["det_png"])["kind"] == "det"
    hist = plots.read_png_info(det["histogram_png"])
    assert (hist["kind"], hist["splits"]) == ("histogram", ",".join(res.extra["splits"]))
    (split,) = plots.load_scores(det["scores"])
    # The saved scores are the ones the result's EER came from; the eval split's bona fide rows are the speakers'
    # "-" rows, the spoofs carry their attack ids.
    assert M.eer(split.score[split.bonafide], split.score[~split.bonafide])[0] == res.folds[0]
    assert sorted(set(split.attack[~split.bonafide])) == ["A01", "A02"] and set(split.attack[split.bonafide]) == {""}
    assert len(split.key) == res.extra["sizes"][0]["test"]
    assert res.extra["cost_models"] == {"min_dcf": "p_target=0.95,c_miss=1,c_fa=10"}


def test_detection_run_without_scores_dir_writes_no_files(tmp_path):
    root = make_asvspoof(tmp_path / "LA")
    res = T.run("asvspoof2019_la", ToneEmbedder(), root, EmbeddingCache(tmp_path / "cache"), probe="knn",
                progress=False)
    assert "detection" not in res.extra
    assert sorted(p.name for p in tmp_path.iterdir()) == ["LA", "cache"]


def test_probe_command_on_a_detection_task_writes_plots_the_leaderboard_links(tmp_path, capsys):
    from audiorep.cli import main
    from audiorep.downstream.leaderboard import read_results

    root = make_asvspoof(tmp_path / "LA")
    store = tmp_path / "runs" / "results.jsonl"
    rc = main(["probe", "--model", "logmel", "--task", "asvspoof2019_la", "--data-root", str(root), "--probe", "knn",
               "--cache", str(tmp_path / "cache"), "--results", str(store), "-q"])
    assert rc == 0
    (row,) = read_results(store)
    (run_dir,) = (tmp_path / "runs" / "results-detection").iterdir()
    assert sorted(p.name for p in run_dir.iterdir()) == ["det.png", "histogram.png", "scores.npz"]
    assert row.extra["detection"]["det_png"] == str(run_dir / "det.png")
    assert main(["leaderboard", str(store), "--out", str(tmp_path / "board")]) == 0
    page = (tmp_path / "board" / "index.html").read_text()
    assert ">DET</a>" in page and len(list((tmp_path / "board" / "assets").glob("det-asvspoof2019_la-*.png"))) == 1


def test_probe_command_refuses_a_detection_folder_that_is_a_file_before_any_work(tmp_path, capsys):
    from audiorep.cli import main

    root = make_asvspoof(tmp_path / "LA")
    (tmp_path / "results-detection").write_text("mine\n")
    rc = main(["probe", "--model", "logmel", "--task", "asvspoof2019_la", "--data-root", str(root), "--probe", "knn",
               "--cache", str(tmp_path / "cache"), "--results", str(tmp_path / "results.jsonl"), "-q"])
    assert rc == 2
    assert "results-detection is a file" in capsys.readouterr().err
    assert not (tmp_path / "results.jsonl").exists() and not (tmp_path / "cache").exists()
    assert (tmp_path / "results-detection").read_text() == "mine\n"
