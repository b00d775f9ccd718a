"""Probes: the vmapped grid equals one-point-at-a-time training, early stopping, selection, kNN."""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from audiorep.downstream import metrics as M
from audiorep.downstream import probes as P


def _blobs(rng, n=150, d=12, c=3, spread=1.0, centres_seed=0):
    centres = np.random.default_rng(centres_seed).normal(size=(c, d)) * 3
    y = rng.integers(0, c, n)
    return (centres[y] + spread * rng.normal(size=(n, d))).astype(np.float32), y


# Every test below uses these shapes and this schedule, so the jitted rounds compile once per group shape.
SCHEDULE = P.Schedule(max_epochs=30, check_every=3, patience=2, batch_size=32)
GRID = P.Grid("tiny", (P.GridPoint(hidden_layers=1, hidden_dim=16, lr=3e-3, init="xavier_uniform", seed=11),
                       P.GridPoint(hidden_layers=1, hidden_dim=16, lr=1e-3, init="xavier_normal", seed=12),
                       P.GridPoint(hidden_layers=0, lr=1e-2, seed=13)), SCHEDULE)


@pytest.fixture(scope="module")
def noisy():
    """Overlapping classes (validation keeps moving): train f32[150, 12], validation f32[60, 12]."""
    x, y = _blobs(np.random.default_rng(0), spread=3.0)
    xv, yv = _blobs(np.random.default_rng(1), n=60, spread=3.0)
    return x, y, xv, yv


@pytest.fixture(scope="module")
def noisy_run(noisy):
    x, y, xv, yv = noisy
    return P.train_grid(x, y, xv, yv, GRID, num_classes=3, multilabel=False, compact=0)


def test_vmapped_grid_equals_points_trained_one_at_a_time(noisy, noisy_run):
    x, y, xv, yv = noisy
    for i, point in enumerate(GRID.points):
        alone = P.train_grid(x, y, xv, yv, P.Grid("one", (point,), SCHEDULE), num_classes=3, multilabel=False)
        assert alone.val_scores[0] == pytest.approx(noisy_run.val_scores[i], abs=1e-6)
        assert alone.epochs[0] == noisy_run.epochs[i]
        np.testing.assert_allclose(P.predict(alone, 0, xv), P.predict(noisy_run, i, xv), atol=5e-3)
        # A bias just before BatchNorm has zero true gradient, so Adam scales float noise into it (and into the
        # running mean, which cancels it); every other tensor must agree.
        (pa, _), (pb, _) = alone.params[0], noisy_run.params[i]
        for k, (la, lb) in enumerate(zip(pa["layers"], pb["layers"])):
            for name in la:
                if name == "b" and k < point.hidden_layers:
                    continue
                np.testing.assert_allclose(np.asarray(la[name]), np.asarray(lb[name]), rtol=1e-4, atol=1e-5)


def test_selected_weights_reproduce_their_validation_score(noisy, noisy_run):
    _, _, xv, yv = noisy
    assert M.accuracy(yv, P.predict(noisy_run, noisy_run.best, xv)) == pytest.approx(
        noisy_run.val_scores[noisy_run.best])
    assert noisy_run.val_scores[noisy_run.best] == noisy_run.val_scores.max()


def test_points_stop_after_patience_checks_without_improvement():
    x, y = _blobs(np.random.default_rng(0), spread=0.1)  # validation accuracy hits 1.0 and cannot improve
    xv, yv = _blobs(np.random.default_rng(1), n=60, spread=0.1)
    run = P.train_grid(x, y, xv, yv, GRID, num_classes=3, multilabel=False)
    assert np.all(run.val_scores == 1.0)
    assert np.all(run.epochs < SCHEDULE.max_epochs)
    assert np.all(run.epochs == run.best_epochs + SCHEDULE.patience * SCHEDULE.check_every)


def test_probe_learns_separable_classes_and_records_seeds():
    x, y = _blobs(np.random.default_rng(0))
    xv, yv = _blobs(np.random.default_rng(1), n=60)
    xt, yt = _blobs(np.random.default_rng(2), n=40)
    res = P.fit_probe(x, y, xv, yv, xt, yt, num_classes=3, grid=GRID, seed=7)
    assert res.test["accuracy"] > 0.9
    assert res.seed == 7
    assert [p["seed"] for p in res.grid["points"]] == [11, 12, 13]
    assert res.selected["seed"] in (11, 12, 13) and "best_epoch" in res.selected
    assert len(res.val_scores) == 3 and res.val_score == max(res.val_scores)


def test_multilabel_probe_trains_with_bce_and_reports_map_and_dprime(rng):
    x = rng.normal(size=(200, 10)).astype(np.float32)
    t = (x[:, :4] > 0.3).astype(np.float32)
    grid = P.Grid("one", GRID.points[:1], SCHEDULE)
    res = P.fit_probe(x[:120], t[:120], x[120:160], t[120:160], x[160:], t[160:], num_classes=4, multilabel=True,
                      grid=grid)
    assert res.selection_metric == "map"
    assert res.test["map"] > 0.7 and res.test["d_prime"] > 1.0  # chance: mAP ~0.38, d' 0


def test_in_loop_validation_map_matches_metrics_module(rng):
    s = rng.normal(size=(40, 5)).astype(np.float32)
    t = (rng.random((40, 5)) < 0.3).astype(np.float32)
    t[:, 4] = 0  # a class without positives is skipped
    t[0, :4] = 1
    got = float(P._val_score(jnp.asarray(s), jnp.asarray(t), multilabel=True))
    assert got == pytest.approx(M.mean_average_precision(t, s), rel=1e-5)


def test_full_grid_is_heras_sixteen_points_with_distinct_seeds():
    grid = P.make_grid("full", seed=3)
    assert len(grid.points) == 16
    assert {p.lr for p in grid.points} == set(P.HEAR_LRS)
    assert {p.hidden_layers for p in grid.points} == {1, 2} and {p.init for p in grid.points} == set(P.INITS)
    assert len({p.seed for p in grid.points}) == 16
    assert grid.schedule == P.Schedule(500, 3, 20, 1024)


def test_xavier_normal_init_has_torch_scale():
    pt = P.GridPoint(hidden_layers=2, hidden_dim=512, init="xavier_normal", seed=0)
    params, stats = P._init_params(pt, 256, 10)
    w0, w1 = (np.asarray(params["layers"][i]["w"]) for i in (0, 1))
    assert w0.std() == pytest.approx(np.sqrt(2 / (256 + 512)), rel=0.02)
    assert w1.std() == pytest.approx(np.sqrt(2) * np.sqrt(2 / (512 + 512)), rel=0.02)
    assert len(stats) == 2


def test_standardise_uses_training_statistics_only(rng):
    a = rng.normal(5.0, 2.0, size=(100, 3))
    b = rng.normal(-5.0, 1.0, size=(100, 3))
    sa, sb = P.standardise(a, b)
    np.testing.assert_allclose(sa.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(sb, (b - a.mean(0)) / a.std(0), rtol=1e-4)


def test_knn_probe_picks_k_on_validation(rng):
    x, y = _blobs(rng, n=200)
    res = P.knn_probe(x[:120], y[:120], x[120:160], y[120:160], x[160:], y[160:], num_classes=3, ks=(1, 3, 500))
    assert res.grid["ks"] == [1, 3]  # k larger than the training set is dropped
    assert res.selected["k"] in (1, 3)
    assert res.test["accuracy"] > 0.9


def test_nan_embeddings_are_rejected_with_a_hint(rng):
    x, y = _blobs(rng, n=20)
    bad = x.copy()
    bad[3, 2] = np.nan
    with pytest.raises(P.ProbeError, match="NaN"):
        P.fit_probe(bad, y, x, y, x, y, num_classes=3, grid=GRID)


def test_label_count_mismatch_is_rejected(rng):
    x, y = _blobs(rng, n=20)
    with pytest.raises(P.ProbeError, match="pair one to one"):
        P.knn_probe(x, y[:-1], x, y, x, y, num_classes=3)


def test_unknown_grid_name_lists_the_choices():
    with pytest.raises(P.ProbeError, match="'fast', 'full' or 'linear'"):
        P.make_grid("huge")


def test_schedule_overrides_apply_to_named_grids():
    assert P.make_grid("fast", max_epochs=6).schedule.max_epochs == 6
    assert dataclasses.asdict(P.make_grid("fast").points[0])["hidden_dim"] == 1024


def test_bucket_pads_by_at_most_an_eighth():
    for n in (1, 7, 150, 1000, 4097, 100_003):
        assert n <= P.bucket(n) <= n + max(1, n // 8)
    assert P.bucket(1000) == P.bucket(1010)  # folds of similar size share one compiled round


def test_dropping_stopped_points_from_the_group_changes_no_result(noisy, noisy_run):
    x, y, xv, yv = noisy
    assert len(set(noisy_run.epochs.tolist())) > 1  # points stop at different times here
    compacted = P.train_grid(x, y, xv, yv, GRID, num_classes=3, multilabel=False, compact=1)
    np.testing.assert_array_equal(compacted.epochs, noisy_run.epochs)
    np.testing.assert_allclose(compacted.val_scores, noisy_run.val_scores, atol=1e-6)
    for i in range(len(GRID.points)):
        np.testing.assert_allclose(P.predict(compacted, i, xv), P.predict(noisy_run, i, xv), atol=5e-3)


def test_dropout_masks_keep_the_right_fraction_and_differ_between_keys():
    k0, k1 = jax.random.PRNGKey(0), jax.random.PRNGKey(1)
    m0, m1 = (np.asarray(P._dropout_keep(k, 0.1, (512, 256))) for k in (k0, k1))
    assert m0.mean() == pytest.approx(0.9, abs=0.005)
    assert (m0 == m1).mean() == pytest.approx(0.9 ** 2 + 0.1 ** 2, abs=0.01)  # independent masks
    assert np.array_equal(m0, np.asarray(P._dropout_keep(k0, 0.1, (512, 256))))
    assert np.asarray(P._dropout_keep(k0, 0.0, (64,))).all()


def test_grids_that_differ_only_in_epochs_and_patience_share_one_compile(noisy):
    """max_epochs / patience are not part of the compiled round: a second grid (another task, fold or the
    benchmark's warm-up) with other values reuses the first one's program."""
    x, y, xv, yv = noisy
    point = (P.GridPoint(hidden_layers=1, hidden_dim=8, lr=1e-3, seed=3),)
    P.train_grid(x, y, xv, yv, P.Grid("a", point, dataclasses.replace(SCHEDULE, max_epochs=6, patience=50)),
                 num_classes=3, multilabel=False)
    before = P._make_round.cache_info()
    fn = P._make_round(P.bucket(len(x)), SCHEDULE.batch_size, SCHEDULE.check_every, False)
    compiled = fn._cache_size()
    run = P.train_grid(x, y, xv, yv, P.Grid("b", point, dataclasses.replace(SCHEDULE, max_epochs=9, patience=1)),
                       num_classes=3, multilabel=False)
    assert P._make_round.cache_info().misses == before.misses
    assert fn._cache_size() == compiled
    assert run.epochs[0] <= 9


def test_make_grid_repeats_configurations_with_new_seeds():
    once, twice = P.make_grid("fast", seed=3), P.make_grid("fast", seed=3, repeats=2)
    assert twice.repeats == 2 and twice.configs == len(once.points) == 6
    assert twice.points[:6] == once.points  # the first repeat is the grid as it always was
    assert [p.seed for p in twice.points] == list(range(3000, 3012))
    assert [dataclasses.replace(p, seed=0) for p in twice.points[6:]] == [
        dataclasses.replace(p, seed=0) for p in once.points]
    assert twice.to_dict()["repeats"] == 2
    with pytest.raises(P.ProbeError, match="should repeat configuration 0"):
        P.Grid("bad", (GRID.points[0], GRID.points[2]), SCHEDULE, repeats=2)
    with pytest.raises(P.ProbeError, match="repeats must be in"):
        P.make_grid("full", repeats=0)


def test_repeats_select_and_score_on_the_mean_over_probe_seeds():
    x, y = _blobs(np.random.default_rng(0), spread=3.0)
    xv, yv = _blobs(np.random.default_rng(1), n=60, spread=3.0)
    xt, yt = _blobs(np.random.default_rng(2), n=90, spread=3.0)
    a, b = GRID.points[0], GRID.points[2]  # an MLP and a linear configuration, two seeds each
    grid = P.Grid("rep", (a, b, dataclasses.replace(a, seed=31), dataclasses.replace(b, seed=32)), SCHEDULE, 2)
    res = P.fit_probe(x, y, xv, yv, xt, yt, num_classes=3, grid=grid)
    val = np.asarray(res.val_scores).reshape(2, 2).mean(0)
    best = int(np.argmax(val))
    assert res.val_score == pytest.approx(val[best])
    assert res.selected["repeat_seeds"] == [grid.points[best].seed, grid.points[2 + best].seed]
    # each repeat's test report is that seed's probe trained alone; the result is their mean
    for seed, report in zip(res.selected["repeat_seeds"], res.selected["repeat_test"]):
        alone = P.fit_probe(x, y, xv, yv, xt, yt, num_classes=3,
                            grid=P.Grid("one", (dataclasses.replace(grid.points[best], seed=seed),), SCHEDULE))
        assert report["accuracy"] == pytest.approx(alone.test["accuracy"], abs=1.5 / len(yt))
    assert res.test["accuracy"] == pytest.approx(np.mean([r["accuracy"] for r in res.selected["repeat_test"]]))
    assert res.test_scores.shape == (90, 3) and np.allclose(res.test_scores.sum(1), 1.0, atol=1e-5)


def test_detection_report_targets_the_requested_positive_class():
    x, y = _blobs(np.random.default_rng(0), c=2, spread=4.0)
    xv, yv = _blobs(np.random.default_rng(1), n=60, c=2, spread=4.0)
    xt, yt = _blobs(np.random.default_rng(2), n=80, c=2, spread=4.0)
    grid = P.Grid("one", GRID.points[2:], SCHEDULE)
    for probe in (functools.partial(P.fit_probe, grid=grid), functools.partial(P.knn_probe, ks=(5,))):
        one = probe(x, y, xv, yv, xt, yt, num_classes=2)
        zero = probe(x, y, xv, yv, xt, yt, num_classes=2, positive=0)
        assert one.test["sensitivity"] != one.test["specificity"]  # overlapping classes: the two rates differ
        assert zero.test["sensitivity"] == pytest.approx(one.test["specificity"])
        assert zero.test["specificity"] == pytest.approx(one.test["sensitivity"])
