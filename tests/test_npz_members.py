"""Inputs that are guarded: which ``.npz`` members are decoded (``--key``, and
members that plainly aren't heatmaps skipped with a note) and ``--strict-layout``.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest

from heatdecode.cli import main
from heatdecode.guards import LoadError
from heatdecode.loading import HeatmapArray, LoadFailure, Source, load_source, prepare
from heatdecode.members import select_keys, skip_non_heatmaps

RNG = np.random.default_rng(11)


def pose_npz(path: Path) -> Path:
    """The issue's file: heatmaps beside boxes, centres and ids."""
    np.savez(
        path,
        heatmaps=RNG.random((5, 3, 64, 48)).astype(np.float32),
        bboxes=RNG.random((5, 4)),
        center=RNG.random((5, 2)),
        image_ids=np.arange(5),
    )
    return path


def rows(out: Path) -> list[dict[str, str]]:
    with open(out / "coordinates.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def names(items: list) -> dict[str, HeatmapArray | LoadFailure]:
    return {i.name: i for i in items}


def run(*args: str) -> int:
    return main(["run", *args, "-q", "--overlays", "none", "-d", "argmax"])


# --------------------------------------------------------------------------- skipping


def test_members_beside_heatmaps_that_are_not_heatmaps_are_skipped_with_a_note(tmp_path):
    items = load_source(Source(pose_npz(tmp_path / "p.npz"), "p.npz"))
    [item] = items
    assert isinstance(item, HeatmapArray) and item.name == "p.npz:heatmaps"
    assert item.maps.shape == (5, 3, 64, 48)
    [note] = item.notes
    assert note.startswith("p.npz: skipped 3 members that don't look like heatmaps: ")
    assert "bboxes (float64 (5, 4), values per sample of heatmaps)" in note
    assert "center (float64 (5, 2), values per sample of heatmaps)" in note
    assert "image_ids (int64 (5,), 1-D)" in note
    assert "--key NAME or p.npz:NAME" in note
    assert item.warnings == []  # a note for the run, not a warning of the array


def test_the_issue_repro_decodes_only_the_heatmaps_and_notes_the_rest(tmp_path, capsys):
    path = pose_npz(tmp_path / "p.npz")
    out = tmp_path / "out"
    assert run(str(path), "--out", str(out)) == 0
    decoded = rows(out)
    assert {r["file"] for r in decoded} == {"p.npz:heatmaps"}
    assert len(decoded) == 15  # 5 samples x 3 channels, one decoder
    err = capsys.readouterr().err
    notes = [line for line in err.splitlines() if line.startswith("note: ")]
    assert len(notes) == 1
    assert all(word in notes[0] for word in ("bboxes", "center", "image_ids"))
    assert "error" not in err
    doc = json.loads((out / "coordinates.json").read_text())
    assert doc["failures"] == []
    assert [f["file"] for f in doc["files"]] == ["p.npz:heatmaps"]


def test_scores_joints_and_masks_beside_heatmaps_are_skipped(tmp_path):
    path = tmp_path / "k.npz"
    np.savez(
        path,
        heatmaps=RNG.random((6, 17, 32, 24)).astype(np.float32),
        scores=RNG.random((6, 17)),  # one value per map, though 2-D and over 4 px
        joints=RNG.random((6, 17, 3)),
        target_weight=RNG.random((6, 17, 1)),
        mask=np.ones((6, 32, 24), np.uint8),  # integer beside float maps
        visible=np.ones((6, 17), bool),
    )
    [item] = load_source(Source(path, "k.npz"))
    note = item.notes[0]
    assert "skipped 5 members" in note
    assert "scores (float64 (6, 17), values per map of heatmaps)" in note
    assert "joints (float64 (6, 17, 3), values per map of heatmaps)" in note
    assert "mask (uint8 (6, 32, 24), integer beside float maps)" in note
    assert "visible (bool (6, 17), boolean beside float maps)" in note


@pytest.mark.parametrize(
    "arrays",
    [
        # small maps alone: no member is map-sized, nothing is skipped
        {"a": np.ones((3, 4, 4)), "b": np.ones((2, 3))},
        {"a": np.ones((4, 6), np.float32), "b": np.ones((2, 5, 5), np.float32)},
        # a big map and a small one of another shape: both maps
        {"heat": np.ones((5, 7)), "other": np.ones((2, 3, 4, 6))},
        # a 4x4 map per sample and channel beside big ones: two spatial axes, a map
        {"big": np.ones((1, 3, 64, 48)), "small": np.ones((1, 3, 4, 4))},
        # integer maps with no float member: uint8/int64 heatmaps are decoded
        {"a": np.ones((6, 8), np.uint8), "b": np.ones((6, 8), np.int64)},
    ],
    ids=["tiny-only", "tiny-and-5px", "big-and-small", "4px-maps", "integer-only"],
)
def test_archives_of_maps_decode_every_member_as_before(tmp_path, arrays):
    path = tmp_path / "m.npz"
    np.savez(path, **arrays)
    items = load_source(Source(path, "m.npz"))
    assert sorted(i.name for i in items) == sorted(f"m.npz:{k}" for k in arrays)
    assert all(isinstance(i, HeatmapArray) and not i.notes for i in items)


def test_a_uint16_heatmap_stored_alone_is_decoded(tmp_path):
    path = tmp_path / "u.npz"
    np.savez(path, heat=np.arange(64 * 48, dtype=np.uint16).reshape(64, 48))
    [item] = load_source(Source(path, "u.npz"))
    assert isinstance(item, HeatmapArray) and item.layout == "HW"


def test_members_that_cannot_be_read_are_still_reported_beside_heatmaps(tmp_path):
    path = tmp_path / "m.npz"
    np.savez(path, heat=np.ones((16, 16)), cplx=np.ones((3, 3), np.complex64))
    items = names(load_source(Source(path, "m.npz")))
    assert isinstance(items["m.npz:heat"], HeatmapArray)
    assert "complex dtype" in items["m.npz:cplx"].reason


def test_a_boolean_member_alone_still_fails_as_before(tmp_path):
    path = tmp_path / "b.npz"
    np.savez(path, mask=np.ones((8, 8), bool), other=np.ones((3, 3), bool))
    items = names(load_source(Source(path, "b.npz")))
    assert all(isinstance(i, LoadFailure) for i in items.values())
    assert items["b.npz:mask"].reason == "boolean dtype is not a heatmap"


def test_an_explicit_layout_decides_which_axes_are_spatial(tmp_path):
    entries = [
        ("heatmaps", RNG.random((5, 64, 48, 3)), None, []),  # NHWC
        ("boxes", RNG.random((5, 4)), None, []),
    ]
    kept, skipped = skip_non_heatmaps(entries, "NHWC")
    assert [e[0] for e in kept] == ["heatmaps"]
    assert skipped == ["boxes (float64 (5, 4), values per sample of heatmaps)"]


def test_naming_a_member_decodes_it_even_when_it_would_be_skipped(tmp_path, capsys):
    path = pose_npz(tmp_path / "p.npz")
    out = tmp_path / "out"
    assert run(f"{path}:bboxes", "--out", str(out)) == 0
    assert {r["file"] for r in rows(out)} == {"p.npz:bboxes"}
    assert "note:" not in capsys.readouterr().err


# --------------------------------------------------------------------------- --key


def test_key_selects_members_and_decodes_them_as_named(tmp_path, capsys):
    path = pose_npz(tmp_path / "p.npz")
    out = tmp_path / "out"
    code = run(str(path), "--out", str(out), "--key", "bboxes", "--key", "heatmaps")
    assert code == 0
    assert {r["file"] for r in rows(out)} == {"p.npz:heatmaps", "p.npz:bboxes"}
    assert "note:" not in capsys.readouterr().err  # what --key leaves out is not noted


def test_key_missing_from_a_file_fails_that_file_and_the_others_are_written(tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    pose_npz(folder / "a.npz")
    np.savez(folder / "b.npz", maps=RNG.random((2, 16, 16)))
    np.save(folder / "c.npy", RNG.random((2, 16, 16)))  # --key is only about .npz members
    out = tmp_path / "out"
    assert run(str(folder), "--out", str(out), "--key", "heatmaps", "--key", "hm") == 1
    err = capsys.readouterr().err
    reason = "no member 'heatmaps' or 'hm' named by --key (it holds: maps)"
    assert f"error: b.npz: {reason}" in err
    assert len([line for line in err.splitlines() if line.startswith("error:")]) == 1
    assert {r["file"] for r in rows(out)} == {"a.npz:heatmaps", "c.npy"}
    doc = json.loads((out / "coordinates.json").read_text())
    assert doc["failures"] == [{"file": "b.npz", "source": "b.npz", "reason": reason}]


def test_select_keys_refuses_an_archive_without_them():
    entries = [("a", np.ones((3, 3)), None, []), ("b", np.ones((3, 3)), None, [])]
    assert [e[0] for e in select_keys(entries, ["b", "zz"])] == ["b"]
    with pytest.raises(LoadError, match=r"^no member 'zz' named by --key \(it holds: a, b\)$"):
        select_keys(entries, ["zz"])


def test_an_empty_key_is_a_usage_error(tmp_path, capsys):
    path = pose_npz(tmp_path / "p.npz")
    assert run(str(path), "--out", str(tmp_path / "out"), "--key", " ") == 2
    assert "--key needs the name of an .npz member" in capsys.readouterr().err


# --------------------------------------------------------------------------- --strict-layout


def channels_last(path: Path) -> Path:
    np.save(path, RNG.random((4, 40, 30, 3)).astype(np.float32))  # NHWC, read as NCHW
    return path


def test_strict_layout_fails_a_doubtful_guess_and_writes_the_other_files(tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    channels_last(folder / "a_nhwc.npy")
    np.save(folder / "b_good.npy", RNG.random((2, 3, 16, 16)).astype(np.float32))
    out = tmp_path / "out"
    assert run(str(folder), "--out", str(out), "--strict-layout") == 1
    err = capsys.readouterr().err
    [line] = [line for line in err.splitlines() if "a_nhwc.npy" in line]
    assert re.fullmatch(
        r"error: a_nhwc\.npy: layout guessed as NCHW, but the last axis \(3\) is much smaller "
        r"than the two before it: channels last\? pass --layout NHWC \(--strict-layout\)",
        line,
    )
    assert {r["file"] for r in rows(out)} == {"b_good.npy"}
    doc = json.loads((out / "coordinates.json").read_text())
    assert [f["file"] for f in doc["failures"]] == ["a_nhwc.npy"]


def test_without_strict_layout_the_doubt_is_a_warning(tmp_path, capsys):
    path = channels_last(tmp_path / "a.npy")
    out = tmp_path / "out"
    assert run(str(path), "--out", str(out)) == 0
    assert "warning: a.npy: layout guessed as NCHW" in capsys.readouterr().err
    assert len(rows(out)) == 4 * 40


def test_strict_layout_leaves_an_explicit_layout_alone(tmp_path):
    path = channels_last(tmp_path / "a.npy")
    out = tmp_path / "out"
    assert run(str(path), "--out", str(out), "--strict-layout", "--layout", "NHWC") == 0
    assert len(rows(out)) == 4 * 3


def test_strict_layout_in_the_library(tmp_path):
    array = np.zeros((4, 40, 30, 3), np.float32)
    assert prepare("x", array, "auto").warnings  # a warning by default
    with pytest.raises(LoadError, match=r"\(--strict-layout\)$"):
        prepare("x", array, "auto", strict_layout=True)
    path = channels_last(tmp_path / "a.npy")
    [failure] = load_source(Source(path, "a.npy", strict_layout=True))
    assert isinstance(failure, LoadFailure) and "channels last?" in failure.reason


def test_strict_layout_fails_only_the_doubtful_member_of_an_npz(tmp_path):
    path = tmp_path / "m.npz"
    np.savez(path, nhwc=np.ones((4, 40, 30, 3)), nchw=np.ones((4, 3, 40, 30)))
    items = names(load_source(Source(path, "m.npz", strict_layout=True)))
    assert isinstance(items["m.npz:nhwc"], LoadFailure)
    assert isinstance(items["m.npz:nchw"], HeatmapArray)


# --------------------------------------------------------------------------- --help


def test_help_says_what_auto_picks_for_each_ndim(capsys):
    assert main(["run", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.replace("│", " ").split())
    for words in ("2 axes as HW (one map)", "3 as CHW", "4 as NCHW", "5 as NCDHW"):
        assert words in text, words
    assert "--key" in text and "--strict-layout" in text
