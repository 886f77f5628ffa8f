"""The library's per-map status flags (decode(...).status) are the CLI's, its
soft-argmax defaults are the CLI's, and soft_argmax warns, once, when the
background dominates its softmax (issue 11, point 7)."""

from __future__ import annotations

import csv
import warnings

import numpy as np
import pytest
import torch

import heatdecode
import heatdecode.decoders as decoders
from heatdecode import BackgroundDominatedWarning, SoftArgmax, decode, soft_argmax
from heatdecode.cli import main
from heatdecode.sample import gaussian
from heatdecode.status import STATUSES, row_status, should_check, statuses

H, W = 37, 53  # non-square: a swapped axis would show


def peak(centre_xy=(20.3, 14.6), sigma=2.0) -> np.ndarray:
    """A [0, 1] Gaussian on an H×W map, centred at (x, y)."""
    return gaussian((H, W), np.array(centre_xy), sigma)


def labelled_maps() -> tuple[np.ndarray, list[str]]:
    """(1, 5, H, W): one map per status, and what decode(..., normalize="none") must say."""
    maps = np.stack(
        [
            peak(),  # a clean Gaussian
            np.full((H, W), 0.25),  # constant
            peak((12.0, 18.0)) + 0.7 * peak((40.0, 20.0)),  # two separated peaks
            1.0 + 0.05 * peak(sigma=8.0),  # a faint broad bump: β·range = 20·0.05 < ln N
            np.where(np.arange(H * W).reshape(H, W) == 7, np.nan, peak()),  # NaN
        ]
    )[None]
    return maps, ["ok", "flat", "multimodal", "low-contrast", "nonfinite"]


def cli_rows(tmp_path, maps: np.ndarray, *args: str) -> list[dict[str, str]]:
    np.save(tmp_path / "m.npy", maps)
    out = tmp_path / "out"
    code = main(["run", str(tmp_path / "m.npy"), "--out", str(out), "-q", "--no-overlays", *args])
    assert code in (0, 1)  # 1: the NaN map
    with open(out / "coordinates.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_decode_flags_a_clean_flat_two_peak_low_contrast_and_nan_map():
    maps, expected = labelled_maps()
    out = decode(torch.from_numpy(maps), "softargmax", normalize="none")
    assert out.status.shape == (1, 5)  # (B, C), like every per-map field
    assert out.status.tolist() == [expected]
    for name in ("flat", "finite", "low_contrast", "multimodal"):
        flag = getattr(out, name)
        assert flag.shape == (1, 5) and flag.dtype == torch.bool, name
    assert out.multimodal[0].tolist() == [False, False, True, False, False]
    assert out.low_contrast[0].tolist() == [False, False, False, True, False]
    assert set(out.flags) == {"nonfinite", "flat", "low-contrast", "multimodal"}
    # argmax has no softmax: no low-contrast flag, the rest the same
    hard = decode(torch.from_numpy(maps), "argmax")
    assert hard.low_contrast is None
    assert hard.status.tolist() == [["ok", "flat", "multimodal", "ok", "nonfinite"]]


def test_the_flags_of_a_volume_and_of_a_single_map():
    volume = torch.from_numpy(gaussian((9, 11, 13), np.array([6.3, 5.1, 4.2]), 1.5))
    out = decode(volume[None], "dark", spatial_dims=3)
    assert out.status.tolist() == ["ok"] and out.multimodal.shape == (1,)
    single = decode(torch.from_numpy(peak()), "softargmax")  # (H, W): 0-d flags
    assert single.status.shape == () and single.status.item() == "ok"


def test_flags_false_leaves_them_out_and_the_functions_do_not_compute_them():
    maps = torch.from_numpy(labelled_maps()[0])
    out = decode(maps, "softargmax", normalize="none", flags=False)
    assert out.low_contrast is None and out.multimodal is None
    direct = decoders.softargmax_decode(maps, beta=20.0)
    assert direct.multimodal is None
    # what it carries is still ranked: flat and nonfinite come from the decoder itself
    assert direct.status.tolist() == [["ok", "flat", "ok", "ok", "nonfinite"]]


DECODERS = ("argmax", "softargmax", "local-softargmax", "parabola", "dark")


@pytest.mark.parametrize("options", [("--normalize", "none"), ("--beta", "3")])
def test_decode_flags_equal_the_statuses_the_cli_writes(tmp_path, options):
    maps, _ = labelled_maps()
    args = [a for d in DECODERS for a in ("-d", d)]
    rows = cli_rows(tmp_path, maps, *args, *options)
    written = {(int(r["channel"]), r["decoder"]): r["status"] for r in rows}
    kwargs = {options[0].lstrip("-"): options[1] if options[0] == "--normalize" else 3.0}
    seen = set()
    for name in DECODERS:
        status = decode(torch.from_numpy(maps), name, **kwargs).status[0]
        for channel, value in enumerate(status.tolist()):
            assert written[(channel, name)] == value, (channel, name)
            seen.add(value)
    assert {"ok", "flat", "multimodal", "nonfinite"} <= seen


def test_decode_softargmax_gives_the_clis_numbers_with_the_clis_defaults(tmp_path):
    g = torch.from_numpy(peak()).float()
    row = cli_rows(tmp_path, g.numpy()[None, None], "-d", "softargmax")[0]
    out = decode(g, "softargmax")
    assert out.coords.tolist() == pytest.approx([float(row["x"]), float(row["y"])], abs=1e-6)
    assert out.status.item() == row["status"] == "ok"
    assert out.coords.tolist() == pytest.approx([20.3, 14.6], abs=0.05)
    # the training function keeps β=1, "none": on a [0, 1] map, nearly the centre
    with pytest.warns(BackgroundDominatedWarning):
        training = soft_argmax(g)
    assert training.tolist() == pytest.approx([(W - 1) / 2, (H - 1) / 2], abs=0.5)


# ---------------------------------------------------------------------------
# The background-dominated warning
# ---------------------------------------------------------------------------


def gaussian_map() -> torch.Tensor:
    return torch.from_numpy(peak()).float()[None, None]  # (1, 1, H, W) in [0, 1]


def test_soft_argmax_warns_on_a_background_dominated_map_and_points_at_the_caller():
    with pytest.warns(BackgroundDominatedWarning, match="ln N = 7.58") as caught:
        xy = soft_argmax(gaussian_map())  # β=1, "none": the softmax is nearly uniform
    assert xy[0, 0].tolist() == pytest.approx([(W - 1) / 2, (H - 1) / 2], abs=0.5)
    assert caught[0].filename == __file__  # the caller's line, not heatdecode's
    assert issubclass(BackgroundDominatedWarning, UserWarning)
    assert "BackgroundDominatedWarning" in heatdecode.__all__


@pytest.mark.parametrize(
    "kwargs", [{"beta": 20.0, "normalize": "minmax"}, {"beta": 50.0}, {"normalize": "minmax"}]
)
def test_no_warning_when_normalized_or_beta_is_high_enough(kwargs):
    # minmax with β=1 is still 1 < ln N: dominated; only β·range ≥ ln N is clean
    dominated = kwargs == {"normalize": "minmax"}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        soft_argmax(gaussian_map(), **kwargs)
    assert [w.category for w in caught] == ([BackgroundDominatedWarning] if dominated else [])


def test_warn_false_and_the_standard_filter_silence_it():
    with warnings.catch_warnings():
        warnings.simplefilter("error", BackgroundDominatedWarning)
        soft_argmax(gaussian_map(), warn=False)
        SoftArgmax(warn=False)(gaussian_map())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.simplefilter("ignore", BackgroundDominatedWarning)
        soft_argmax(gaussian_map())
    assert caught == []


def test_repeated_calls_warn_once_under_the_default_filter():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        layer = SoftArgmax()
        for _ in range(5):
            soft_argmax(gaussian_map())
            layer(gaussian_map())
    assert [w.category for w in caught] == [BackgroundDominatedWarning] * 2  # one per line
    assert {w.filename for w in caught} == {__file__}


def test_no_check_and_no_warning_when_autograd_flows_into_the_maps(monkeypatch):
    def fail(*args):
        raise AssertionError("checked during a training step")

    monkeypatch.setattr(decoders, "warn_if_background_dominated", fail)
    logits = gaussian_map().requires_grad_()
    soft_argmax(logits).sum().backward()  # a training step: no check, no sync
    assert logits.grad is not None
    with torch.no_grad(), pytest.raises(AssertionError, match="training step"):
        soft_argmax(logits)  # evaluation under no_grad is checked


def test_the_check_is_skipped_when_tracing_or_compiling(monkeypatch):
    with warnings.catch_warnings():
        warnings.simplefilter("error", BackgroundDominatedWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit.trace itself
        traced = torch.jit.trace(lambda x: soft_argmax(x), gaussian_map(), check_trace=False)
    assert traced(gaussian_map()).shape == (1, 1, 2)
    compiled = torch.compile(soft_argmax, backend="eager")  # dynamo traces, no C++ compiler
    with warnings.catch_warnings():
        warnings.simplefilter("error", BackgroundDominatedWarning)
        xy = compiled(gaussian_map())
    torch.testing.assert_close(xy, soft_argmax(gaussian_map(), warn=False))
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    assert not should_check(gaussian_map())


def test_accelerators_are_never_checked_so_no_call_syncs():
    meta = torch.empty(2, 5, 7, device="meta")  # stands for a GPU tensor: not CPU
    assert not should_check(meta)
    assert should_check(gaussian_map())  # CPU: always, no sync to save


def test_vectorised_statuses_rank_as_row_status_does():
    rng = np.random.default_rng(3)
    names = list(STATUSES[:-1])
    flags = {name: rng.random((4, 6)) < 0.3 for name in names}
    ranked = statuses(flags)
    for i in range(4):
        for j in range(6):
            one = {name: bool(flags[name][i, j]) for name in names}
            assert ranked[i, j] == row_status(one)
    with pytest.raises(ValueError, match="unknown status flag"):
        statuses({"ok": np.ones(2, bool)})
