"""The leaderboard's per-group table (worst group, max-min gap) and cross-domain protocol table (in-domain vs
cross-domain per held-out value), in leaderboard.md and index.html."""

from __future__ import annotations

from audiorep.downstream.leaderboard import Result, group_table, protocol_table, to_html, to_markdown, write_leaderboard

GENDER = {"metric": "eer", "per_group": {"female": 0.10, "male": 0.25}, "worst_group": "male", "worst": 0.25,
          "gap": 0.15, "counts": {"female": 40, "male": 40}, "skipped": {}}
PROTOCOL = {"name": "cross-attack", "column": "attack_id", "metric": "eer", "skipped": {},
            "rows": [{"held_out": "lpc", "in_domain": 0.02, "cross_domain": 0.31, "gap": 0.29, "test": 24,
                      "train": 60, "in_domain_train": 72, "unit": "group"},
                     {"held_out": "world", "in_domain": 0.0, "cross_domain": 0.11, "gap": 0.11, "test": 24,
                      "train": 60, "in_domain_train": 72, "unit": "group"}],
            "in_domain_mean": 0.01, "cross_domain_mean": 0.21, "gap_mean": 0.2}


def rows():
    return [Result("lfcc", "deepfake_folder", "eer", 0.2, higher_is_better=False, date="2026-12-05T10:00:00+00:00",
                   extra={"groups": {"gender": GENDER}}),
            Result("beats-tiny", "deepfake_folder@cross-attack", "eer", 0.21, folds=[0.31, 0.11],
                   higher_is_better=False, date="2026-12-05T10:00:00+00:00",
                   extra={"protocol": PROTOCOL, "groups": {"attack_id": {**GENDER, "per_group": {"lpc": 0.31,
                                                                                               "world": 0.11},
                                                                         "worst_group": "lpc", "worst": 0.31,
                                                                         "gap": 0.2}}}),
            Result("lfcc", "esc50", "accuracy", 0.7, date="2026-12-05T10:00:00+00:00")]


def test_group_table_lists_worst_group_best_and_gap_per_column():
    cols, table = group_table(rows())
    assert cols[:4] == ("Model", "Task", "Column", "Metric")
    assert ("lfcc", "deepfake_folder", "gender", "eer", 2, "male", "0.2500", "0.1000", "0.1500") in table
    assert ("beats-tiny", "deepfake_folder@cross-attack", "attack_id", "eer", 2, "lpc", "0.3100", "0.1100",
            "0.2000") in table
    assert len(table) == 2  # esc50 has no groups


def test_protocol_table_puts_in_domain_and_cross_domain_side_by_side_with_the_mean():
    _, table = protocol_table(rows())
    assert table == [
        ("beats-tiny", "deepfake_folder@cross-attack", "cross-attack (attack_id)", "lpc", "0.0200", "0.3100", "0.2900",
         24),
        ("beats-tiny", "deepfake_folder@cross-attack", "cross-attack (attack_id)", "world", "0.0000", "0.1100",
         "0.1100", 24),
        ("beats-tiny", "deepfake_folder@cross-attack", "cross-attack (attack_id)", "mean", "0.0100", "0.2100",
         "0.2000", "")]


def test_markdown_and_html_show_both_sections():
    md = to_markdown(rows())
    assert "## Per group" in md
    assert "| lfcc | deepfake_folder | gender | eer | 2 | male | 0.2500 | 0.1000 | 0.1500 |" in md
    assert "## Cross-domain protocols" in md and "| lpc | 0.0200 | 0.3100 | 0.2900 | 24 |" in md
    page = to_html(rows())
    assert "<h2>Per group</h2>" in page and "<h2>Cross-domain protocols</h2>" in page
    assert '<td data-v="male">male</td>' in page


def test_a_board_without_group_metadata_has_neither_section():
    md = to_markdown([rows()[2]])
    assert "Per group" not in md and "Cross-domain" not in md


def test_a_malformed_group_score_shows_as_n_a_instead_of_failing(tmp_path):
    bad = Result("m", "deepfake_folder", "eer", 0.2, higher_is_better=False,
                 extra={"groups": {"gender": {**GENDER, "worst": "oops", "per_group": {"a": "x", "b": 0.1}}}})
    _, table = group_table([bad])
    assert table == [("m", "deepfake_folder", "gender", "eer", 1, "male", "n/a", "0.1000", "0.1500")]
    files = write_leaderboard([bad], tmp_path / "board")
    assert "n/a" in files["markdown"].read_text()
