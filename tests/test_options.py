"""heatdecode.options: one home for every decoder option's default, range and meaning."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import numpy as np
import pytest

from heatdecode import options
from heatdecode.family import DECODERS
from heatdecode.options import (
    DECODER_OPTIONS,
    OPTIONS,
    OptionError,
    check_options,
    resolve_options,
)

README = Path(__file__).resolve().parents[1] / "README.md"


def test_every_decoder_has_an_entry_and_every_option_a_rule():
    assert list(DECODERS) == list(DECODER_OPTIONS)
    for decoder, defaults in DECODER_OPTIONS.items():
        assert DECODERS[decoder].options == tuple(defaults)
        assert set(defaults) <= set(OPTIONS)


@pytest.mark.parametrize("decoder", list(DECODER_OPTIONS))
def test_the_decoder_functions_defaults_are_the_options_modules(decoder):
    parameters = inspect.signature(DECODERS[decoder].function).parameters
    for name, default in DECODER_OPTIONS[decoder].items():
        assert parameters[name].default == default, (decoder, name)


@pytest.mark.parametrize(
    ("given", "flag"),
    [
        ({"beta": 0}, "--beta must be a finite number > 0"),
        ({"beta": float("nan")}, "--beta must be"),
        ({"normalize": "zscore"}, "--normalize must be one of"),
        ({"radius": 0}, "--radius must be an integer >= 1"),
        ({"radius": 2.5}, "--radius must be an integer"),
        ({"sigma": -1.0}, "--sigma must be a number from 0 to 10000 px"),
        ({"sigma": 1e5}, "--sigma must be a number from 0 to 10000 px"),
    ],
)
def test_a_value_out_of_range_names_the_parameter_and_its_flag(given, flag):
    with pytest.raises(OptionError) as caught:
        check_options(given)
    name = next(iter(given))
    assert str(caught.value).startswith(f"{name} must")
    assert caught.value.for_flag().startswith(flag)


def test_sigma_zero_is_allowed_everywhere_it_means_no_smoothing():
    check_options({"sigma": 0.0})
    assert resolve_options("dark", sigma=0.0) == {"sigma": 0.0}


def test_an_unknown_decoder_is_refused_in_one_place():
    with pytest.raises(ValueError, match="unknown decoder 'soft'; choose from argmax"):
        resolve_options("soft")


def test_options_a_decoder_does_not_take_are_ignored_and_unset_ones_take_defaults():
    assert resolve_options("argmax", beta=5.0, radius=3) == {}
    assert resolve_options("softargmax", beta=None) == {"beta": 1.0, "normalize": "none"}


def test_the_readme_option_table_says_each_options_default_and_range():
    text = README.read_text(encoding="utf-8")
    for name, option in OPTIONS.items():
        row = re.search(rf"^\| `--{name}` \| ([^|]*) \| ([^|]*) \|$", text, re.MULTILINE)
        assert row, f"README has no row for --{name}"
        default, meaning = row.groups()
        assert option.range in meaning, (name, option.range, meaning)
        shown = options.default_text(name)
        assert any(part in default for part in re.findall(r"[\w.]+", shown)), (name, default)


def test_the_cli_takes_sigma_zero_as_the_library_does(tmp_path):
    from heatdecode.cli import main

    maps = np.zeros((6, 9), np.float32)
    maps[2, 5] = 1.0
    maps[2, 6] = 0.5
    np.save(tmp_path / "m.npy", maps)
    out = tmp_path / "out"
    args = ["run", str(tmp_path / "m.npy"), "--out", str(out), "-d", "dark", "--sigma", "0"]
    assert main([*args, "-q", "--no-overlays"]) == 0
    assert "dark" in (out / "coordinates.csv").read_text()
