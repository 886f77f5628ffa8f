"""``--help`` that teaches: every command's help at 80 columns, and its examples run.

Each help is rendered as a user's terminal would at ``COLUMNS=80`` and checked:
options grouped in the panels of :data:`heatdecode.cli.params.PANELS`, no line
wider than 80, no word broken or cut short, every option with a default shown
(or a flag, or required), the exit codes, ``-h``. The examples come from
:data:`heatdecode.cli.helptext.EXAMPLES`, the one home the epilogs are written
from; each is found in the help it belongs to and run, in a fresh folder.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import typer

from heatdecode.cli import app, main
from heatdecode.cli.helptext import EXAMPLES, EXIT_CODES
from heatdecode.cli.params import PANELS, RUN_PANEL

GROUP = typer.main.get_command(app)
COMMANDS = sorted(GROUP.commands)
ALL = ["heatdecode", *COMMANDS]
#: what typer itself writes into a help
TYPER_WORDS = "--help -h Usage OPTIONS COMMAND ARGS default required Show this message and exit"
#: stripped from both ends of a word before comparing (rich adds brackets and commas)
PUNCTUATION = "()[]{},.;:'\"…*\\"


def _args(name: str) -> list[str]:
    return [] if name == "heatdecode" else [name]


def _command(name: str):
    return GROUP if name == "heatdecode" else GROUP.commands[name]


@pytest.fixture
def help_text(monkeypatch, capsys):
    """``heatdecode [COMMAND] FLAG``'s output at 80 columns."""
    monkeypatch.setenv("COLUMNS", "80")

    def render(name: str, flag: str = "--help") -> str:
        capsys.readouterr()
        assert main([*_args(name), flag]) == 0
        return capsys.readouterr().out

    return render


def _options(name: str) -> list:
    """The command's options, ``--help`` left out."""
    return [
        p for p in _command(name).params if p.param_type_name == "option" and "--help" not in p.opts
    ]


def _flat(text: str) -> str:
    return " ".join(text.split())


def test_every_command_has_examples():
    assert set(EXAMPLES) == set(ALL)
    for name in ALL:
        assert 2 <= len(EXAMPLES[name].shown) <= 3, name


@pytest.mark.parametrize("name", ALL)
def test_the_help_fits_80_columns_and_lists_the_exit_codes(name, help_text):
    text = help_text(name)
    too_wide = [line for line in text.splitlines() if len(line) > 80]
    assert not too_wide, too_wide
    assert _flat(EXIT_CODES) in _flat(text)
    assert "<bool>" not in text and "{" not in text.splitlines()[1]  # the usage line


@pytest.mark.parametrize("name", ALL)
def test_dash_h_is_help(name, help_text):
    assert help_text(name, "-h") == help_text(name, "--help")


@pytest.mark.parametrize("name", COMMANDS)
def test_options_are_grouped_in_panels(name, help_text):
    text = help_text(name)
    options = _options(name)
    outside = [p.opts[0] for p in options if getattr(p, "rich_help_panel", None) not in PANELS]
    assert not outside, f"{name}: options outside the panels: {outside}"
    used = [*(p.rich_help_panel for p in options), RUN_PANEL]  # -h is there
    titles = [t for t in re.findall(r"╭─ (.+?) ─", text) if t != "Arguments"]
    assert titles == [panel for panel in PANELS if panel in used]  # in PANELS' order
    assert "Options" not in titles


@pytest.mark.parametrize("name", COMMANDS)
def test_every_option_shows_its_default_unless_a_flag(name, help_text):
    valued = [p for p in _options(name) if not p.is_flag and not p.required]
    for p in valued:
        shown = isinstance(p.show_default, str) or (
            p.default is not None and p.show_default is not False
        )
        assert shown, f"{name} {p.opts[0]}: no default shown"
        assert p.metavar, f"{name} {p.opts[0]}: no metavar"
    assert help_text(name).count("[default:") == len(valued)


def _words(text: str) -> set[str]:
    words = (w.strip(PUNCTUATION) for w in re.split(r"[\s│╭╮╰╯─]+", text))
    return {w for w in words if w}


def _source_words(name: str) -> set[str]:
    """Every word the help is written from: a rendered word outside them is a broken one."""
    command = _command(name)
    texts = [TYPER_WORDS, *PANELS, "Arguments Options Commands", name, "heatdecode"]
    texts += [command.help or "", command.epilog or "", " ".join(COMMANDS)]
    texts += [sub.help or "" for sub in GROUP.commands.values()] if name == "heatdecode" else []
    for p in command.params:
        texts += [*p.opts, *p.secondary_opts, getattr(p, "help", None) or "", p.metavar or ""]
        texts += [str(p.show_default), str(p.default)]
    return _words("\n".join(texts).replace("\\[", "["))


@pytest.mark.parametrize("name", ALL)
def test_no_word_is_broken_or_cut(name, help_text):
    """``lo|cal-softargmax`` or ``local-softargma…`` would be words the help isn't written with."""
    text = help_text(name)
    assert "…" not in text
    broken = _words(text) - _source_words(name)
    assert not broken, f"{name}: {sorted(broken)}"


@pytest.mark.parametrize("name", ALL)
def test_the_examples_are_in_the_help(name, help_text):
    text = _flat(help_text(name))
    for example in EXAMPLES[name].shown:
        assert _flat(example.line) in text and _flat(example.what) in text
    for line in EXAMPLES[name].given:
        assert line in text


def _run(line: str, capsys) -> str:
    words = shlex.split(line)
    assert words[0] == "heatdecode"
    assert main(words[1:]) == 0, f"{line}: {capsys.readouterr().err}"
    return capsys.readouterr().out


@pytest.mark.parametrize("name", ALL)
def test_every_example_runs(name, tmp_path, monkeypatch, capsys):
    """Each example, as shown, in a folder holding what its ``given`` lines make."""
    monkeypatch.chdir(tmp_path)
    for line in EXAMPLES[name].given:
        _run(line, capsys)
    for example in EXAMPLES[name].shown:
        out = _run(example.line, capsys)
        if example.writes is not None:
            assert Path(example.writes).is_file(), example.line
        if name == "bench":
            assert "maps/s" in out
