"""Bad input to `audiorep` commands: one line `error: ...` on stderr, a non-zero exit, and the user's files intact."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import tone

from audiorep.audio.io import save_audio
from audiorep.cli import main
from audiorep.cli.common import one_line

FIXTURES = Path(__file__).parent / "fixtures"


def error_line(capsys) -> str:
    """The one line the command printed on stderr (fails if there are more, or it is not an error line)."""
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


def snapshot(path: Path) -> tuple[bytes, int]:
    return path.read_bytes(), path.stat().st_mtime_ns


@pytest.fixture
def user_file(tmp_path) -> Path:
    path = tmp_path / "notes.txt"
    path.write_text("the user's notes")
    return path


@pytest.fixture
def wav(tmp_path) -> Path:
    path = tmp_path / "a.wav"
    save_audio(path, tone(440, 0.5, 16000), 16000)
    return path


def test_an_audiorep_error_from_a_command_is_one_line_with_status_2(tmp_path, wav, capsys):
    assert main(["embed", "--model", "no-such-model", str(wav), "--out", str(tmp_path / "o.npz"), "-q"]) == 2
    assert "neither a registered model nor an existing directory" in error_line(capsys)


def test_a_message_on_several_lines_is_joined_into_one():
    assert one_line(ValueError("first\n  second\n\nthird")) == "first second third"


def test_convert_of_a_truncated_checkpoint_is_one_line_and_creates_nothing(tmp_path, capsys):
    cut = tmp_path / "cut.pt"
    cut.write_bytes((FIXTURES / "beats_tiny.pt").read_bytes()[:20_000])
    assert main(["convert", "beats", str(cut), str(tmp_path / "m")]) != 0
    assert "truncated" in error_line(capsys)
    assert not (tmp_path / "m").exists()


def test_convert_refuses_an_out_dir_under_a_file(user_file, capsys):
    before = snapshot(user_file)
    assert main(["convert", "beats", str(FIXTURES / "beats_tiny.pt"), str(user_file / "m")]) == 2
    assert "lies under the file" in error_line(capsys)
    assert snapshot(user_file) == before


def test_convert_refuses_heads_that_do_not_divide_the_width(tmp_path, capsys):
    assert main(["convert", "ssast", str(FIXTURES / "ssast_patch_tiny.pt"), str(tmp_path / "m"),
                 "--num-heads", "5"]) != 0
    assert "not divisible by num_heads 5" in error_line(capsys)
    assert not (tmp_path / "m").exists()


def test_convert_refuses_zero_heads_at_the_command_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["convert", "ssast", str(FIXTURES / "ssast_patch_tiny.pt"), str(tmp_path / "m"), "--num-heads", "0"])
    assert exit_.value.code == 2 and "--num-heads" in capsys.readouterr().err


def test_features_refuses_a_png_that_is_a_folder(tmp_path, wav, capsys):
    (tmp_path / "plots").mkdir()
    assert main(["features", str(wav), "--png", str(tmp_path / "plots")]) == 2
    assert "is a folder" in error_line(capsys)
    assert not any((tmp_path / "plots").iterdir())


def test_features_keeps_an_existing_png_unless_forced(wav, user_file, capsys):
    before = snapshot(user_file)
    assert main(["features", str(wav), "--png", str(user_file)]) == 2
    assert "--force" in error_line(capsys)
    assert snapshot(user_file) == before
    assert main(["features", str(wav), "--png", str(user_file), "--force"]) == 0
    assert user_file.read_bytes().startswith(b"\x89PNG")


def test_features_refuses_a_png_under_a_file(wav, user_file, capsys):
    assert main(["features", str(wav), "--png", str(user_file / "f.png")]) == 2
    assert "lies under the file" in error_line(capsys)


def test_synth_refuses_an_out_that_is_a_file(user_file, capsys):
    before = snapshot(user_file)
    assert main(["datasets", "synth", "--out", str(user_file), "--per-class", "1", "--seconds", "0.2"]) != 0
    assert "is a file" in error_line(capsys)
    assert snapshot(user_file) == before


def test_synth_refuses_an_out_under_a_file(user_file, capsys):
    assert main(["datasets", "synth", "--out", str(user_file / "corpus"), "--per-class", "1"]) != 0
    assert "lies under the file" in error_line(capsys)


@pytest.mark.parametrize("argv", [
    ["datasets", "inspect", "folder", "--root", ".", "--max-list", "-1"],
    ["datasets", "prepare", "folder", "--root", ".", "--out", "o", "--workers", "0"],
    ["datasets", "synth", "--out", "o", "--per-class", "0"],
    ["embed", "--model", "beats-tiny", ".", "--out", "o.npz", "--batch-size", "0"],
])
def test_counts_out_of_range_are_refused_by_the_parser(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2 and "expected a whole number" in capsys.readouterr().err
