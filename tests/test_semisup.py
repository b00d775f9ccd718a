"""Semi-supervised heads (downstream/semisup.py): each method's parts against hand-checked small cases, the labelled
subsets, the augmented views, and a tiny end-to-end run."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import soundfile as sf
import toy_encoder  # noqa: F401  (registers the 'toy' models)

from audiorep.data.sources import Record
from audiorep.downstream import probes as P
from audiorep.downstream import semisup as S
from audiorep.downstream.cache import EmbeddingCache


def test_fixmatch_mask_is_exactly_the_confident_pseudo_labels():
    # softmax rows: [0.98, 0.01, 0.01] (confident, class 0), [~0.33 each] (not), [0.004, 0.992, 0.004] (class 1),
    # and one at 0.94 (just under the 0.95 threshold)
    logits = jnp.array([[np.log(98.0), 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, np.log(248.0), 0.0],
                        [0.0, 0.0, np.log(0.94 * 2 / 0.06)]])
    pseudo, mask = S.fixmatch_targets(logits, 0.95)
    np.testing.assert_array_equal(np.asarray(mask), [1.0, 0.0, 1.0, 0.0])
    np.testing.assert_array_equal(np.asarray(pseudo)[[0, 2]], [0, 1])


def test_fixmatch_loss_ignores_unconfident_unlabelled_rows():
    """Changing the strong view of a row whose weak view is unconfident leaves the loss unchanged; of a confident
    row, changes it."""
    point = P.GridPoint(hidden_layers=0, lr=1e-3, seed=0)
    params, stats = P.init_params(point, 2, 2)
    params = {"layers": [{"w": jnp.array([[8.0, -8.0], [0.0, 0.0]]), "b": jnp.zeros(2)}]}
    loss = S.method_loss("fixmatch", S.Hyper(), 2)
    xu = jnp.array([[[1.0, 0.0]], [[0.0, 1.0]]])  # row 0: logits (8, -8) confident; row 1: (0, 0) not
    base = {"xl": jnp.array([[[1.0, 0.0]]] * 2), "yl": jnp.array([0, 0]), "xu": xu, "su": xu, "rate": 0.0}
    key = jax.random.PRNGKey(0)
    ref = float(loss(params, stats, None, base, key, 0.0)[0])
    moved_unconfident = base | {"su": xu.at[1, 0].set(jnp.array([-3.0, 5.0]))}
    moved_confident = base | {"su": xu.at[0, 0].set(jnp.array([-3.0, 5.0]))}
    assert float(loss(params, stats, None, moved_unconfident, key, 0.0)[0]) == pytest.approx(ref, abs=1e-6)
    assert float(loss(params, stats, None, moved_confident, key, 0.0)[0]) > ref + 1.0


def test_mixmatch_sharpened_guesses_sum_to_one_and_match_the_hand_computed_values():
    p = jnp.array([[0.6, 0.3, 0.1], [0.2, 0.2, 0.6]])
    q = np.asarray(S.sharpen(p, 0.5))
    np.testing.assert_allclose(q.sum(-1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(q[0], np.array([0.36, 0.09, 0.01]) / 0.46, rtol=1e-5)


def test_mixmatch_partners_come_from_the_shuffled_union_of_labelled_and_unlabelled_rows():
    xl, yl = jnp.array([[1.0], [2.0]]), jnp.eye(3)[jnp.array([0, 1])]
    xu, yu = jnp.array([[10.0], [20.0], [30.0]]), jnp.full((3, 3), 1 / 3)
    xm, ym, lam, perm = S.mixmatch_mix(jax.random.PRNGKey(3), xl, yl, xu, yu, 0.75)
    union_x, union_y = np.concatenate([xl, xu]), np.concatenate([yl, yu])
    perm, lam = np.asarray(perm), float(lam)
    assert sorted(perm.tolist()) == list(range(5)) and lam >= 0.5
    np.testing.assert_allclose(np.asarray(xm), lam * union_x + (1 - lam) * union_x[perm], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(ym), lam * union_y + (1 - lam) * union_y[perm], rtol=1e-6)


def test_mean_teacher_teacher_is_the_ema_of_the_student_after_n_steps():
    point = P.GridPoint(hidden_layers=1, hidden_dim=4, lr=1e-2, dropout=0.0, seed=1)
    params, stats = P.init_params(point, 3, 2)
    opt = S.optax.scale_by_adam().init(params)
    state = {"params": params, "opt": opt, "stats": stats, "teacher": {"params": params, "stats": stats},
             "step": jnp.int32(0)}
    step = jax.jit(S.make_step("meanteacher", S.Hyper(ema=0.9), 2))
    rng = np.random.default_rng(0)
    expected = jax.tree.map(np.asarray, {"params": params, "stats": stats})
    for i in range(12):
        b = {"xl": jnp.asarray(rng.normal(size=(4, 2, 3)), jnp.float32), "yl": jnp.array([0, 1, 0, 1]),
             "xu": jnp.asarray(rng.normal(size=(4, 2, 3)), jnp.float32),
             "su": jnp.asarray(rng.normal(size=(4, 2, 3)), jnp.float32), "rate": 0.0}
        state = step(state, b, 1e-2, jax.random.PRNGKey(i), float(i))
        student = jax.tree.map(np.asarray, {"params": state["params"], "stats": state["stats"]})
        decay = min(1 - 1 / (i + 1), 0.9)  # the warm-up: 0, 1/2, 2/3, 3/4, then 0.9
        expected = jax.tree.map(lambda t, s, d=decay: d * t + (1 - d) * s, expected, student)
    got = jax.tree.map(np.asarray, state["teacher"])
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), got, expected)
    assert not np.allclose(got["params"]["layers"][0]["w"], state["params"]["layers"][0]["w"])


def test_sigmoid_rampup_starts_near_zero_and_reaches_one():
    assert float(S.sigmoid_rampup(0.0, 10.0)) == pytest.approx(np.exp(-5.0))
    assert float(S.sigmoid_rampup(5.0, 10.0)) == pytest.approx(np.exp(-1.25))
    assert float(S.sigmoid_rampup(12.0, 10.0)) == 1.0


def test_labelled_subset_is_stratified_seeded_and_nested():
    keys = [f"clip{i:03d}" for i in range(200)]
    labels = np.repeat([0, 1, 2, 3], [100, 50, 40, 10])
    small = S.labelled_subset(keys, labels, 0.1, seed=0)
    big = S.labelled_subset(keys, labels, 0.25, seed=0)
    assert np.bincount(labels[small], minlength=4).tolist() == [10, 5, 4, 1]
    assert set(small) <= set(big)
    np.testing.assert_array_equal(small, S.labelled_subset(keys, labels, 0.1, seed=0))
    assert set(small) != set(S.labelled_subset(keys, labels, 0.1, seed=1))
    assert np.bincount(labels[S.labelled_subset(keys, labels, 0.01)], minlength=4).min() == 1  # every class


def test_labelled_subset_depends_on_the_keys_not_their_order():
    keys = [f"clip{i:03d}" for i in range(60)]
    labels = np.arange(60) % 3
    order = np.random.default_rng(0).permutation(60)
    chosen = {keys[i] for i in S.labelled_subset(keys, labels, 0.2)}
    shuffled = {keys[order[i]] for i in S.labelled_subset([keys[j] for j in order], labels[order], 0.2)}
    assert chosen == shuffled


def test_augmented_views_keep_lengths_differ_by_index_and_do_not_depend_on_the_batch():
    rng = np.random.default_rng(0)
    clips = [rng.normal(size=n).astype(np.float32) for n in (1000, 1500, 1000)]
    a = S.augment_clips(clips, "strong", 0)
    assert [len(x) for x in a] == [1000, 1500, 1000]
    alone = S.augment_clips([clips[1]], "strong", 0)
    np.testing.assert_allclose(alone[0], a[1], rtol=1e-6)
    assert not np.allclose(S.augment_clips(clips, "strong", 1)[0], a[0])
    assert not np.allclose(a[0], clips[0])


def test_augmented_views_are_cached_once_per_view(tmp_path):
    calls = []

    class Source:
        name, sample_rate = "toy", 16000

        def cache_spec(self):
            return {"model": "toy", "sample_rate": 16000}

        def scene(self, clips):
            calls.append(len(clips))
            return np.stack([[np.mean(c), np.std(c)] for c in clips]).astype(np.float32)

    rng = np.random.default_rng(0)
    records = []
    for i in range(3):
        path = tmp_path / f"a{i}.wav"
        sf.write(path, rng.normal(size=4000).astype(np.float32) * 0.1, 16000)
        records.append(Record(str(path), (0,), ("a",), "", None, None, "folder"))
    cache = EmbeddingCache(tmp_path / "cache")
    views = S.embed_views(cache, Source(), records, "weak", 2)
    assert views.shape == (3, 2, 2) and len(calls) == 2
    again = S.embed_views(cache, Source(), records, "weak", 2)
    np.testing.assert_array_equal(views, again)
    assert len(calls) == 2  # read back, no encoder pass
    assert not np.allclose(views[:, 0], views[:, 1])



def test_feature_masks_set_whole_bands_and_spans_to_the_row_mean_within_the_widths():
    rng = np.random.default_rng(0)
    feats = jnp.asarray(rng.normal(size=(3, 50, 20)), jnp.float32)
    waves = jnp.asarray(rng.normal(size=(3, 800)), jnp.float32)
    out = np.asarray(S.feature_masks("strong", 0)(feats, waves))
    v = S.VIEWS["strong"]
    for f, o in zip(np.asarray(feats), out):
        changed = o != f
        spans, bands = changed.all(1), changed.all(0)
        np.testing.assert_array_equal(changed, spans[:, None] | bands[None, :])  # nothing but whole bands/spans
        assert 0 < spans.sum() <= v["spec_masks"] * (int(v["spec_time"] * 50) - 1)
        assert 0 < bands.sum() <= v["spec_masks"] * (int(v["spec_freq"] * 20) - 1)
        np.testing.assert_allclose(o[changed], f.mean(), rtol=1e-5)


def test_feature_masks_follow_the_samples_not_the_batch_or_the_padding():
    rng = np.random.default_rng(1)
    feats = jnp.asarray(rng.normal(size=(2, 40, 16)), jnp.float32)
    waves = jnp.asarray(rng.normal(size=(2, 600)), jnp.float32)
    masks = S.feature_masks("strong", 0)
    both = np.asarray(masks(feats, waves))
    padded = jnp.concatenate([waves[1:], jnp.zeros((1, 200))], 1)
    np.testing.assert_array_equal(np.asarray(masks(feats[1:], padded))[0], both[1])
    assert not np.array_equal(np.asarray(S.feature_masks("strong", 1)(feats, waves)), both)


def test_log_mel_views_mask_features_before_the_statistics_and_leave_the_source_alone():
    from audiorep.downstream.tasks import resolve_model

    logmel = resolve_model("logmel")
    clips = [np.random.default_rng(i).normal(size=12000).astype(np.float32) * 0.1 for i in range(3)]
    plain = logmel.scene(clips)
    masked = S.masked_source(logmel, "strong", 0).scene(clips)
    assert masked.shape == plain.shape and not np.allclose(masked, plain)
    np.testing.assert_allclose(S.masked_source(logmel, "strong", 0).scene(clips[1:2])[0], masked[1], rtol=1e-5)
    np.testing.assert_array_equal(logmel.scene(clips), plain)


def test_encoder_views_mask_the_frontend_features_before_the_encoder():
    import audiorep

    toy = audiorep.load("toy", batch_size=4)
    clip = [np.random.default_rng(0).normal(size=8000).astype(np.float32) * 0.1]
    seen = []
    twin = toy.with_feature_transform(lambda f, w: seen.append(f.shape) or jnp.zeros_like(f))
    zeroed = twin.scene(clip)
    assert seen and seen[0][-1] == toy.frontend.num_mel_bins
    assert not np.allclose(zeroed, toy.scene(clip))
    np.testing.assert_allclose(twin.scene([clip[0][::-1].copy()]), zeroed, rtol=1e-5)  # the encoder saw zeros only


def test_sources_without_features_get_waveform_views_only():
    class Plain:
        def scene(self, clips):
            return np.zeros((len(clips), 2), np.float32)

    assert S.masked_source(Plain(), "strong", 0) is None


def test_cosine_schedule_decays_to_cos_7pi_16_and_constant_stays():
    assert float(S.lr_factor(0.0, "cosine")) == pytest.approx(1.0)
    assert float(S.lr_factor(0.5, "cosine")) == pytest.approx(np.cos(7 * np.pi / 32))
    assert float(S.lr_factor(2.0, "cosine")) == pytest.approx(np.cos(7 * np.pi / 16))
    assert float(S.lr_factor(0.7, "constant")) == 1.0
    with pytest.raises(S.SemiSupError, match="cosine"):
        S.lr_factor(0.5, "step")


def test_semi_grid_trains_every_epoch_and_keeps_the_best_checkpoint():
    sched = S.make_semisup_grid().schedule
    assert sched.max_epochs >= 60 and sched.patience * sched.check_every >= sched.max_epochs  # never stops early

def _blobs(n, rng, centers):
    y = rng.integers(0, len(centers), n)
    return centers[y] + rng.normal(size=(n, centers.shape[1])), y


@pytest.mark.slow  # four methods' compiles, ~60 s on 2 loaded cores
def test_every_method_trains_a_separable_task_from_few_labels():
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(3, 8)) * 3
    x, y = _blobs(120, rng, centers)
    xv, yv = _blobs(60, rng, centers)
    vw = x[:, None] + 0.2 * rng.normal(size=(120, 2, 8))
    vs = x[:, None] + 0.5 * rng.normal(size=(120, 2, 8))
    lab = S.labelled_subset([str(i) for i in range(120)], y, 0.1)
    points = tuple(P.GridPoint(hidden_layers=0, lr=1e-2, seed=s) for s in range(2))
    grid = P.Grid("t", points, P.Schedule(max_epochs=6, check_every=3, patience=2), repeats=2)
    for method in S.METHODS:
        val, sel, tests = S.fit_semisup(method, vw, vs, y, lab, xv, yv, xv, yv, grid, num_classes=3,
                                        hyper=S.Hyper(batch=16))
        assert val > 0.8 and len(tests) == 2 and all(t["accuracy"] > 0.8 for t in tests), method


def test_parse_flags_refuse_unknown_methods_and_bad_fractions():
    assert S.parse_methods("FixMatch, mean-teacher") == ("fixmatch", "meanteacher")
    assert S.parse_fractions("1.0,0.05,0.1") == (0.05, 0.1, 1.0)
    with pytest.raises(S.SemiSupError, match="fixmatch"):
        S.parse_methods("uda")
    with pytest.raises(S.SemiSupError, match="0.01"):
        S.parse_fractions("0,0.5")


def _row(method, fraction, mean, std=0.01):
    from audiorep.downstream.leaderboard import Result

    return Result(model="m", task=S.row_task("fsdd", method, fraction), metric="accuracy", mean=mean, std=std,
                  probe=f"semisup:{method}",
                  extra={"semisup": {"task": "fsdd", "method": method, "labelled_fraction": fraction}})


def test_leaderboard_shows_semisup_rows_in_their_own_section_not_on_the_board():
    from audiorep.downstream import leaderboard as L

    rows = [_row("supervised", 0.1, 0.5), _row("fixmatch", 0.1, 0.6), _row("supervised", 1.0, 0.9),
            L.Result(model="m", task="fsdd", metric="accuracy", mean=0.95)]
    board = L.Board.from_results(rows)
    assert board.tasks == ["fsdd"]
    cols, table = L.semisup_table(L.semisup_curves(rows)[("m", "fsdd")])
    assert cols == ("method", "0.1", "100 % supervised")
    assert table == [("supervised", "0.5000 ± 0.0100", "0.9000"), ("fixmatch", "0.6000 ± 0.0100", "0.9000")]
    page = L.to_html(rows)
    assert "Semi-supervised heads" in page and 'alt="metric vs labelled fraction, m on fsdd"' in page
    assert "| fixmatch | 0.6000 ± 0.0100 | 0.9000 |" in L.to_markdown(rows)


def test_a_store_of_only_semisup_rows_writes_every_page(tmp_path):
    from audiorep.downstream import leaderboard as L

    files = L.write_leaderboard([_row("supervised", 0.1, 0.5), _row("supervised", 1.0, 0.9)], tmp_path / "board")
    assert "Semi-supervised heads" in files["html"].read_text()


@pytest.mark.parametrize("argv, message", [
    (["--semi-supervised", "uda"], "unknown method"),
    (["--labelled-fraction", "0.1"], "applies with --semi-supervised"),
    (["--semi-supervised", "fixmatch", "--labelled-fraction", "2"], "in (0, 1]"),
    (["--semi-supervised", "fixmatch", "--probe", "knn"], "--probe knn does not apply"),
])
def test_probe_refuses_bad_semi_supervised_flags_in_one_line_before_any_work(tmp_path, capsys, argv, message):
    from audiorep.cli import main

    (tmp_path / "a").mkdir()
    assert main(["probe", "--model", "logmel", "--task", "folder", "--data-root", str(tmp_path), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and message in err and "\n" not in err


def test_probe_keeps_an_existing_fraction_plot_unless_forced(tmp_path, capsys):
    from audiorep.cli import main

    plot = tmp_path / "mine.png"
    plot.write_bytes(b"user data")
    assert main(["probe", "--model", "logmel", "--task", "folder", "--data-root", str(tmp_path),
                 "--semi-supervised", "fixmatch", "--fraction-plot", str(plot)]) == 2
    assert "exists" in capsys.readouterr().err and plot.read_bytes() == b"user data"
