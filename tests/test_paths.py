"""audiorep/paths.py: the one atomic file write every output goes through."""

from __future__ import annotations

import pytest

from audiorep.paths import is_remote, write_atomically


def test_write_atomically_replaces_the_file_whole(tmp_path):
    path = tmp_path / "out.bin"
    path.write_bytes(b"old")
    write_atomically(path, lambda fh: fh.write(b"new contents"))
    assert path.read_bytes() == b"new contents"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_failed_write_leaves_the_old_file_and_no_temp_file(tmp_path):
    path = tmp_path / "out.bin"
    path.write_bytes(b"old")

    def half_then_fail(fh):
        fh.write(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomically(path, half_then_fail)
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_write_atomically_takes_bytes_and_a_str_path(tmp_path):
    path = tmp_path / "out.png"
    write_atomically(str(path), b"\x89PNG bytes")
    assert path.read_bytes() == b"\x89PNG bytes"
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]


def test_object_store_paths_are_remote_and_local_ones_are_not(tmp_path):
    assert is_remote("gs://bucket/run/curves.png") and is_remote("s3://b/x")
    assert not is_remote(tmp_path / "gs:" / "x") and not is_remote("relative/gs://x")
