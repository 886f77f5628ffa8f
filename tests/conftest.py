"""Shared fixtures: a fresh sample folder, a seeded random generator, map readers, deep trees."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from heatdecode.sample import write_sample


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


def _read_map(folder: Path, name: str, sample: int, channel: int) -> np.ndarray:
    """The map a ``file,sample,channel`` row names, read straight with numpy/Pillow.

    Uses the auto layouts (HW, CHW, NCHW, NCDHW), independently of heatdecode's loader.
    """
    file, _, key = name.partition(":")
    path = folder / file
    if path.suffix == ".png":
        with Image.open(path) as image:
            return np.asarray(image)
    if key:
        with np.load(path) as archive:
            array = archive[key]
    else:
        array = np.load(path)
    if array.ndim == 2:
        return array
    if array.ndim == 3:
        return array[channel]
    return array[sample, channel]


@pytest.fixture(scope="session")
def read_map():
    """``read_map(folder, file, sample, channel)``: one map, read without heatdecode."""
    return _read_map


@pytest.fixture(scope="session")
def sample_set(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    """The sample folder that ``heatdecode sample`` writes, and its truth rows (read-only)."""
    folder = tmp_path_factory.mktemp("sample")
    truth = write_sample(folder, seed=0)
    return folder, truth


def _deep_tree(root: Path, levels: int, files_at: tuple[int, ...]) -> list[str]:
    """``root/a/a/.../a`` ``levels`` deep, built by relative steps (os.makedirs
    recurses once per level, and a path over PATH_MAX can't be named whole), with
    an ``x.npy`` (a peak at a place that depends on the depth) at each depth in
    ``files_at``; returns their names relative to ``root``."""
    here = os.getcwd()
    names = []
    try:
        os.chdir(root)
        for level in range(1, levels + 1):
            os.mkdir("a")
            os.chdir("a")
            if level in files_at:
                array = np.zeros((4, 5), np.float32)
                array[level % 4, level % 5] = 1
                np.save("x.npy", array)
                names.append("a/" * level + "x.npy")
    finally:
        os.chdir(here)
    return names


def _remove_tree(top: Path) -> None:
    """Empty ``top`` however deep it goes, by relative steps: shutil.rmtree (and so
    pytest's clean-up of old temporary folders) recurses once per level and fails on
    a tree over ~1,000 deep."""
    here = os.getcwd()
    below: list[str] = []  # the folders stepped into, from top down
    try:
        os.chdir(top)
        while True:
            entries = list(os.scandir("."))
            folder = next((e.name for e in entries if e.is_dir(follow_symlinks=False)), None)
            if folder is not None:
                os.chdir(folder)
                below.append(folder)
                continue
            for entry in entries:
                os.unlink(entry.name)
            if not below:
                return
            os.chdir("..")
            os.rmdir(below.pop())
    finally:
        os.chdir(here)


@pytest.fixture(scope="session")
def deep_tree():
    """``deep_tree(root, levels, files_at)``: a tree too deep for recursion; see _deep_tree."""
    return _deep_tree


@pytest.fixture(scope="session")
def remove_tree():
    """``remove_tree(top)``: empties a tree of any depth (tests must clean theirs up)."""
    return _remove_tree
