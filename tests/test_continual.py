"""Continual learning over a stream of attacks (downstream/continual.py): the EER matrix and its summaries, naive
fine-tuning forgetting, replay forgetting less, the replay memory and its loss share, EWC's penalty and Fisher,
RWM's radian, projector and modified step on hand-checked cases, and `audiorep continual` end to end on a generated
deepfake folder."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_tasks_detection import ATTACKS, make_deepfake_folder

from audiorep.downstream import continual as C
from audiorep.downstream.tasks.splits import TaskError

SEEDS = (0, 1, 2)
SETTINGS = C.Settings(hidden=64, steps=200, memory=40)


def clusters(seed: int = 0, d: int = 8, n: int = 60) -> list[C.Experience]:
    """Three experiences on f32[., 8]: bona fide a compact cluster, each attack a cluster on another side of it, so
    that learning attack 2 alone pushes the head to call attack 1 bona fide (the paper's picture: compact bona fide,
    spread-out fakes)."""
    rng = np.random.default_rng(seed)
    eye, base = np.eye(d), 4.0 * np.eye(d)[-1]
    shifts = [3 * eye[0], -3 * eye[0] + 3 * eye[1], -3 * eye[0] + 3 * eye[2]]

    def part(shift):
        bona = base + 0.5 * rng.standard_normal((n, d))
        spoof = base + shift + 0.5 * rng.standard_normal((n, d))
        return np.concatenate([bona, spoof]).astype(np.float32), np.r_[np.ones(n), np.zeros(n)].astype(np.int32)

    return [C.Experience(f"attack{k}", *part(s), *part(s)) for k, s in enumerate(shifts)]


@pytest.fixture(scope="module")
def stream():
    exps = clusters()
    return exps, {m: C.run_stream(exps, m, SEEDS, SETTINGS) for m in ("naive", "replay", "rwm")}


def test_eer_matrix_entry_is_the_eer_of_head_i_on_test_set_j():
    x = np.array([[0.0], [1.0], [2.0], [3.0]], np.float32)
    exps = [C.Experience("a", x, np.array([1, 1, 0, 0]), x, np.array([1, 1, 0, 0])),
            C.Experience("b", x, np.array([0, 0, 1, 1]), x, np.array([0, 0, 1, 1]))]
    # head 0 scores low x as bona fide, head 1 high x: each is perfect on its own test set, wrong on the other
    r = C.eer_matrix(lambda i, v: -v[:, 0] if i == 0 else v[:, 0], exps)
    assert r.shape == (2, 2)
    np.testing.assert_allclose(r, [[0.0, 1.0], [1.0, 0.0]])
    m = C.stream_metrics(r)
    assert m["average_eer"] == 0.5 and m["bwt"] == 1.0 and m["forgetting_first"] == 1.0


def test_stream_metrics_follow_their_definitions_on_a_hand_checked_matrix():
    r = np.array([[0.1, 0.5, 0.4], [0.2, 0.05, 0.3], [0.3, 0.1, 0.02]])
    m = C.stream_metrics(r)
    assert m["average_eer"] == pytest.approx((0.3 + 0.1 + 0.02) / 3)
    assert m["bwt"] == pytest.approx(((0.3 - 0.1) + (0.1 - 0.05)) / 2)
    assert m["forgetting_per_experience"] == pytest.approx([0.3 - 0.1, 0.1 - 0.05])
    assert m["seen_average_eer"] == pytest.approx([0.1, 0.125, 0.14])


def test_naive_fine_tuning_forgets_the_first_attack(stream):
    _, res = stream
    naive = res["naive"]
    assert naive.eer.shape == (3, 3, 3)
    assert np.all(naive.eer[:, 0, 0] < 0.05)  # learned attack 0 ...
    assert all(m["forgetting_first"] > 0.2 for m in naive.metrics)  # ... and lost it, on every seed


def test_replay_forgets_less_than_naive_on_every_seed(stream):
    _, res = stream
    naive, replay = res["naive"], res["replay"]
    for n, o in zip(naive.metrics, replay.metrics):
        assert o["forgetting"] < n["forgetting"]
    assert replay.summary()["forgetting_first"] < naive.summary()["forgetting_first"]


def test_rwm_finds_bona_fide_the_compact_class_once_two_attacks_are_seen(stream):
    spreads = stream[1]["rwm"].info["cosine_spread"]  # per experience: [spoof, bona fide]
    assert len(spreads) == 3 and all(bona < spoof for spoof, bona in spreads[1:])


def test_task_shift_is_the_mean_cosine_distance_between_a_class_means_in_each_experience():
    assert C.task_shift([np.array([1.0, 0.0])]) == 0.0  # one experience: nothing has moved
    assert C.task_shift([np.array([2.0, 0.0]), np.array([1.0, 0.0])]) == pytest.approx(0.0)  # same direction
    assert C.task_shift([np.array([1.0, 0.0]), np.array([0.0, 3.0]), np.array([1.0, 0.0])]) == pytest.approx(2 / 3)


def test_rwm_takes_the_class_that_stays_put_across_experiences_as_the_compact_one():
    """Bona fide wide but from one population in every experience; each attack tight but somewhere else: the
    overall in-class spread calls the spoofs compact, the spread across tasks (RWM's criterion) bona fide."""
    rng = np.random.default_rng(0)
    base = 5.0 * np.eye(6)[0]

    def exp(k):
        bona = base + 1.5 * rng.standard_normal((40, 6))
        spoof = base + 1.5 * np.eye(6)[1 + k] + 0.05 * rng.standard_normal((40, 6))
        x = np.concatenate([bona, spoof]).astype(np.float32)
        return C.Experience(f"a{k}", x, np.r_[np.ones(40), np.zeros(40)].astype(np.int32), x,
                            np.r_[np.ones(40), np.zeros(40)].astype(np.int32))

    exps = [exp(k) for k in range(3)]
    res = C.run_stream(C.standardise(exps), "rwm", (0,), C.Settings(steps=1), raw=exps)
    spoof_spread, bona_spread = res.info["cosine_spread"][-1]
    assert spoof_spread < bona_spread  # the overall reading would pick the spoofs
    spoof_shift, bona_shift = res.info["task_shift"][-1]
    assert bona_shift < spoof_shift and res.info["compact_class"][1:] == [1, 1]


def test_rwm_radian_is_pi_over_4_plus_half_the_signed_arcsines_of_the_batch_softmax():
    z = jnp.array([[0.0, 1.0], [2.0, 0.0], [0.0, 0.0], [5.0, 5.0]])
    y = jnp.array([1, 0, 1, 0])
    w = jnp.array([1.0, 1.0, 1.0, 0.0])  # the last row is padding: left out
    t = np.array([1.0, 2.0, 0.0])  # true-class logits of the three clips
    p = np.exp(t) / np.exp(t).sum()
    want = np.pi / 4 + 0.5 * (np.arcsin(p[0]) - np.arcsin(p[1]) + np.arcsin(p[2]))  # bona fide (1) compact: +1
    got = C.rwm_radian(z, y, w, jnp.array([-1.0, 1.0]))
    assert float(got) == pytest.approx(want, rel=1e-6)
    assert want < np.pi / 4  # the spoof holds most of the mass: the step leans away from old inputs


def test_rwm_step_keeps_what_old_inputs_use_scaled_by_tan_theta_and_passes_the_rest():
    p = np.diag([1.0, 0.0]).astype(np.float32)  # direction 0 unused by old inputs, direction 1 used
    u = [{"w": jnp.array([[1.0, 2.0], [3.0, 4.0]]), "b": jnp.array([5.0, 6.0])}]
    out = C.rwm_modify(u, [jnp.asarray(p)], jnp.arctan(0.5))
    np.testing.assert_allclose(np.asarray(out[0]["w"]), [[1.0, 2.0], [1.5, 2.0]], rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(out[0]["b"]), [5.0, 6.0])  # biases are not modified
    same = C.rwm_modify(u, [jnp.asarray(p)], jnp.pi / 4)  # tan(pi/4) = 1: P + Q = I, the plain step
    np.testing.assert_allclose(np.asarray(same[0]["w"]), np.asarray(u[0]["w"]), rtol=1e-6)


def test_rwm_step_at_radian_zero_leaves_a_linear_head_unchanged_on_old_inputs():
    rng = np.random.default_rng(0)
    old = (rng.standard_normal((40, 2)) @ np.array([[1.0, 0, 0, 0], [0, 1.0, 0, 0]])).astype(np.float32)
    p, _, _ = C.projector(old, alpha=1e-6)  # old inputs live in the first two of four dimensions
    head = C.init_head(jax.random.PRNGKey(0), 4, 0)
    u = [{"w": jnp.asarray(rng.standard_normal((4, 2)), jnp.float32), "b": jnp.zeros(2)}]
    moved = jax.tree.map(jnp.add, head, C.rwm_modify(u, [jnp.asarray(p)], 0.0))
    np.testing.assert_allclose(np.asarray(C.logits(moved, old)), np.asarray(C.logits(head, old)), atol=1e-4)
    new = np.array([[0.0, 0.0, 1.0, 0.0]], np.float32)  # a direction old inputs never used still learns
    assert np.abs(np.asarray(C.logits(moved, new) - C.logits(head, new))).max() > 0.1


def test_replay_memory_gets_its_share_of_the_loss_whatever_its_size():
    w = C.replay_weights(300, 20, 0.5)
    assert w.shape == (320,) and w.sum() == pytest.approx(320)
    assert w[300:].sum() == pytest.approx(w[:300].sum())  # the 20 replayed clips weigh as much as the 300 new ones
    np.testing.assert_array_equal(C.replay_weights(30, 0, 0.5), np.ones(30))  # no memory yet: plain mean


def test_replay_memory_respects_its_budget_under_both_policies():
    exps = clusters(n=30)
    for policy in C.REPLAY_POLICIES:
        s = C.Settings(memory=10, policy=policy)
        memory = (np.zeros((0, 8), np.float32), np.zeros(0, np.int32), np.zeros(0, np.int32))
        rng, seen = np.random.default_rng(0), 0
        for k, e in enumerate(exps):
            memory = C._memory_update(memory, e, k, s, rng, seen)
            seen += len(e.x_train)
            assert len(memory[0]) <= 10 and len(memory[0]) == len(memory[1]) == len(memory[2])
        if policy == "balanced":  # an equal share per (experience, class) cell, the whole budget used: 10 = 6 cells
            assert sorted(np.unique(memory[2], return_counts=True)[1].tolist()) == [1, 1, 2, 2, 2, 2]


def test_ewc_penalty_is_zero_at_the_anchor_and_grows_away_from_it():
    params = C.init_head(jax.random.PRNGKey(0), 3, 4)
    fisher = jax.tree.map(lambda a: jnp.ones_like(a), params)
    assert float(C.ewc_penalty(params, params, fisher, 10.0)) == 0.0
    moved = jax.tree.map(lambda a: a + 0.1, params)
    n = sum(a.size for a in jax.tree.leaves(params))
    assert float(C.ewc_penalty(moved, params, fisher, 10.0)) == pytest.approx(0.5 * 10.0 * n * 0.01, rel=1e-4)


def test_ewc_fisher_equals_the_hand_computed_squared_log_likelihood_gradient():
    params = C.init_head(jax.random.PRNGKey(1), 2, 0)  # linear: logits = x W + b, W f32[2, 2]
    x = np.array([[1.0, -2.0], [0.5, 0.3], [-1.0, 1.0]], np.float32)
    y = np.array([1, 0, 1], np.int32)
    w, b = np.asarray(params[0]["w"], np.float64), np.asarray(params[0]["b"], np.float64)
    z = x @ w + b
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    delta = np.eye(2)[y] - p  # d log p(y|x) / d z
    f_w = np.mean([np.outer(x[i], delta[i]) ** 2 for i in range(3)], 0)
    f_b = np.mean(delta ** 2, 0)
    f = C.fisher_diagonal(params, x, y)
    np.testing.assert_allclose(np.asarray(f[0]["w"]), f_w, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(np.asarray(f[0]["b"]), f_b, rtol=1e-5, atol=1e-7)


def test_rwm_projector_removes_directions_old_inputs_used():
    inputs = np.zeros((50, 3), np.float32)
    inputs[:, 0] = np.random.default_rng(0).standard_normal(50) * 3
    p, _, n = C.projector(inputs, alpha=0.01)
    assert n == 50
    assert abs(float((p @ np.array([1.0, 0, 0]))[0])) < 0.01  # the used direction is (almost) blocked
    np.testing.assert_allclose(p @ np.array([0.0, 1, 0]), [0, 1, 0], atol=1e-6)  # an unused one passes


def test_cosine_spread_is_small_for_a_compact_class_and_large_for_a_spread_one():
    compact = np.tile([1.0, 0.0], (10, 1))
    spread = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
    assert C.cosine_spread(compact.sum(0), 10) == pytest.approx(0.0)
    assert C.cosine_spread(spread.sum(0), 4) == pytest.approx(1.0)


def test_make_experiences_keeps_speakers_apart_and_deals_bona_fide_across_experiences(tmp_path):
    from audiorep.downstream.tasks import get_task

    spec = get_task("deepfake_folder")
    index = spec.read(make_deepfake_folder(tmp_path / "df"))
    records = [r for r in index.records if r.labels]
    emb = np.arange(len(records), dtype=np.float32)[:, None]  # the embedding names the record
    exps = C.make_experiences(records, emb, list(ATTACKS), spec.for_index(index).positive)
    train = {int(v) for e in exps for v in e.x_train[:, 0]}
    test = {int(v) for e in exps for v in e.x_test[:, 0]}
    assert not {records[i].group for i in train} & {records[i].group for i in test}
    bona = [{int(v) for v, y in zip(e.x_train[:, 0], e.y_train) if y == 1} for e in exps]
    assert all(bona) and not (bona[0] & bona[1]) and not (bona[1] & bona[2])
    for e, attack in zip(exps, ATTACKS):
        assert {records[int(v)].info.get("attack_id") for v, y in zip(e.x_test[:, 0], e.y_test) if y == 0} == {attack}
    with pytest.raises(TaskError, match="lacks"):
        C.make_experiences(records, emb, ["world", "tts"], 0)


def test_make_experiences_by_source_keeps_a_recording_and_its_spoofs_on_one_side(tmp_path):
    from audiorep.downstream.tasks import get_task

    spec = get_task("deepfake_folder")
    index = spec.read(make_deepfake_folder(tmp_path / "df"))
    records = [r for r in index.records if r.labels]
    emb = np.arange(len(records), dtype=np.float32)[:, None]
    exps = C.make_experiences(records, emb, list(ATTACKS), spec.for_index(index).positive, split="source")
    train = {C.source_of(records[int(v)]) for e in exps for v in e.x_train[:, 0]}
    test = {C.source_of(records[int(v)]) for e in exps for v in e.x_test[:, 0]}
    assert train and test and not train & test  # the fixture's spoofs keep their source's file name
    speakers = [{records[int(v)].group for e in exps for v in getattr(e, side)[:, 0]} for side in ("x_train", "x_test")]
    assert speakers[0] & speakers[1]  # speakers are shared: only recordings are held out
    with pytest.raises(TaskError, match="split must be one of"):
        C.make_experiences(records, emb, list(ATTACKS), 0, split="word")


def test_the_command_offers_exactly_the_library_splits():
    from audiorep.cli import continual as command  # spelled out there so --help imports no JAX

    assert command.SPLITS == C.SPLITS


def test_source_of_prefers_the_labelled_source_clip_to_the_file_name():
    from audiorep.data.sources import Record

    def rec(path, **extra):
        return Record(path=path, labels=(1,), label_names=("spoof",), split="", fold=None, group="s",
                      dataset="deepfake_folder", extra=tuple(sorted(extra.items())))

    assert C.source_of(rec("/d/spoof/world/0_a_1.wav")) == "0_a_1.wav"
    assert C.source_of(rec("/d/fake/x.wav", source_clip="real/y.wav")) == "real/y.wav"


def test_mini_batches_draw_from_the_experience_and_the_memory_never_from_padding():
    """x: 8 clips of the experience at +1 (spoof), then 8 rows at -1 labelled bona fide: a replay memory when n_mem
    = 8, padding when n_mem = 0. A head trained on mini-batches calls -1 bona fide only when the memory is there."""
    x = np.r_[np.ones((8, 1)), -np.ones((8, 1))].astype(np.float32)
    y = np.r_[np.zeros(8), np.ones(8)].astype(np.int32)
    params = C.init_head(jax.random.PRNGKey(0), 1, 0)
    scores = {}
    for n_mem in (0, 8):
        trained = C.train_head(params, jax.random.PRNGKey(1), jnp.asarray(x), jnp.asarray(y), jnp.ones(16),
                               jnp.int32(8), jnp.int32(n_mem), 0.5, 200, 0.05, 4, True, {})
        scores[n_mem] = float(C.bonafide_scores(trained, jnp.array([[-1.0]]))[0])
    assert scores[0] < 0 < scores[8]


def test_run_task_without_an_order_needs_two_attacks_in_the_data(tmp_path):
    import shutil

    root = make_deepfake_folder(tmp_path / "df", csv=False)
    for attack in ("griffinlim", "lpc"):
        shutil.rmtree(root / "spoof" / attack)
    with pytest.raises(TaskError, match=r"two or more attacks; the data has \['world'\]"):
        C.run_task("deepfake_folder", None, root, None)  # refused before any embedding


def test_continual_command_refuses_an_existing_plot_without_force(tmp_path, capsys):
    from audiorep.cli import main

    plot = tmp_path / "cl.png"
    plot.write_text("mine")
    rc = main(["continual", "--model", "logmel", "--task", "deepfake_folder", "--data-root", str(tmp_path),
               "--order", "world,lpc", "--plot", str(plot)])
    assert rc == 2 and "exists" in capsys.readouterr().err and plot.read_text() == "mine"


def test_standardise_uses_the_first_experience_training_statistics_for_every_experience():
    exps = C.standardise(clusters(n=20))
    np.testing.assert_allclose(exps[0].x_train.mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(exps[0].x_train.std(0), 1.0, atol=1e-4)
    assert np.abs(exps[1].x_train.mean(0)).max() > 0.5  # a later attack keeps its offset: no peeking at its stats


def test_a_continual_head_saved_as_a_probe_head_scores_as_the_trained_head(tmp_path):
    from audiorep.downstream.heads import Head

    exps = clusters(n=20)
    trained: list = []
    C.run_stream(C.standardise(exps), "naive", (0,), C.Settings(steps=30), heads=trained)
    embedder = type("Emb", (), {"name": "fake"})()
    head = C.to_head(trained[0], exps[0], embedder, ["bonafide", "spoof"], 0, {"task": "t"})
    loaded = Head.load(head.save(tmp_path / "head"))
    z = C.standardise(exps)[2].x_test
    want = np.asarray(C.bonafide_scores(jax.tree.map(jnp.asarray, trained[0]), z))
    got = loaded.logits(exps[2].x_test)
    np.testing.assert_allclose(got[:, 0] - got[:, 1], want, rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_continual_command_prints_matrices_writes_plot_rows_and_a_head_stream_can_load(tmp_path, capsys,
                                                                                      monkeypatch):
    import audiorep
    from audiorep.cli import main
    from audiorep.downstream.heads import Head
    from audiorep.downstream.leaderboard import read_results

    monkeypatch.setenv("COLUMNS", "200")  # rich tables unwrapped
    root = make_deepfake_folder(tmp_path / "df")
    store, plot = tmp_path / "results.jsonl", tmp_path / "cl.png"
    rc = main(["continual", "--model", "beats-tiny", "--task", "deepfake_folder", "--data-root", str(root),
               "--methods", "naive,rwm", "--seeds", "0,1", "--steps", "5", "--split", "source", "--cache",
               str(tmp_path / "c"), "--results", str(store), "--plot", str(plot), "--save-head", str(tmp_path / "head"),
               "--quiet"])
    out = capsys.readouterr().out
    assert rc == 0
    # no --order: every attack of the folder, sorted by name
    assert "order griffinlim -> lpc -> world" in out and "forgetting on griffinlim" in out
    assert "naive: EER after experience" in out and "rwm head" in out
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = read_results(store)
    assert [r.task for r in rows] == ["deepfake_folder@continual:naive", "deepfake_folder@continual:rwm"]
    assert np.asarray(rows[0].extra["eer_matrix"]).shape == (2, 3, 3) and "forgetting" in rows[0].scores
    assert rows[0].extra["split"] == "source" and rows[0].grid["batch_size"] == 64
    assert rows[0].extra["order"] == ["griffinlim", "lpc", "world"]
    head = Head.load(tmp_path / "head")
    assert head.info["method"] == "rwm" and head.classes == ["bonafide", "spoof"] and head.positive == 0
    head.check_embedder(audiorep.load("beats-tiny"))  # tied to the model it was trained on


def test_rwm_measures_the_in_class_spread_on_the_features_before_z_scoring():
    exps = clusters(n=20)
    res = C.run_stream(C.standardise(exps), "rwm", (0,), C.Settings(steps=1), raw=exps)
    unit = exps[0].x_train / np.linalg.norm(exps[0].x_train, axis=1, keepdims=True)
    want = [C.cosine_spread(unit[exps[0].y_train == c].sum(0), 20) for c in (0, 1)]
    assert res.info["cosine_spread"][0] == pytest.approx(want, rel=1e-5)  # float32 unit vectors here
