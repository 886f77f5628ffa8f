"""Atomic writes: the old file survives a failure, any legal name works, and a
planted symlink is never written through."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from heatdecode.atomic import atomic_write


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "out.csv"
    target.write_text("old complete content\n")

    def broken(fh) -> None:
        fh.write("half a ")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, broken)
    assert target.read_text() == "old complete content\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv"]  # no temp file left


def test_atomic_write_honours_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write(tmp_path / "f.txt", lambda fh: fh.write("x"))
    finally:
        os.umask(old)
    assert (Path(tmp_path / "f.txt").stat().st_mode & 0o777) == 0o644


def test_atomic_write_takes_any_legal_name(tmp_path):
    """The temporary name is short, so a 255-byte final name still works."""
    path = tmp_path / ("n" * 255)
    atomic_write(path, lambda fh: fh.write("ok"))
    assert path.read_text() == "ok"
    assert os.listdir(tmp_path) == [path.name]


def test_atomic_write_under_a_root_never_follows_a_symlinked_folder(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    root = tmp_path / "out"
    (root / "overlays").mkdir(parents=True)
    (root / "overlays" / "sub").symlink_to(elsewhere)
    with pytest.raises(OSError, match="symlink"):
        atomic_write(root / "overlays" / "sub" / "x.png", lambda fh: fh.write("x"), root=root)
    assert list(elsewhere.iterdir()) == []
    # missing folders are created, one by one
    atomic_write(root / "overlays" / "new" / "deep" / "x.png", lambda fh: fh.write("x"), root=root)
    assert (root / "overlays" / "new" / "deep" / "x.png").read_text() == "x"


def test_atomic_write_replaces_a_planted_symlink_instead_of_writing_through_it(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    root = tmp_path / "out"
    root.mkdir()
    (root / "coordinates.csv").symlink_to(victim)
    atomic_write(root / "coordinates.csv", lambda fh: fh.write("new"), root=root)
    assert victim.read_text() == "precious"
    assert not (root / "coordinates.csv").is_symlink()
    assert (root / "coordinates.csv").read_text() == "new"
