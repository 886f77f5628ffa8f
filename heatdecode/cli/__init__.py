"""The ``heatdecode`` command line: a thin layer over :mod:`heatdecode.runner`.

Exit codes: 0 all went well, 1 some file or map failed, 2 usage error (bad
option, unknown device, nothing to decode, outputs in the way), 130
interrupted. Errors are one line on stderr, never a traceback.

One module per command (:mod:`~heatdecode.cli.run`, :mod:`~heatdecode.cli.sweep`,
:mod:`~heatdecode.cli.bench`, :mod:`~heatdecode.cli.sample`); the options they
share, each with its check, in :mod:`~heatdecode.cli.params`; what they print in
:mod:`~heatdecode.cli.render`. Importing the package imports typer and
heatdecode's torch-free modules only: a command imports torch once its command
line has been checked, so ``--help``, ``--version`` and usage errors answer at
once (``tests/test_cli_startup.py``).
"""

from __future__ import annotations

import signal
import sys
import warnings
from typing import Annotated

import typer

from heatdecode import __version__
from heatdecode.atomic import OutputError
from heatdecode.cli.bench import bench_command
from heatdecode.cli.compare import compare_command
from heatdecode.cli.helptext import Command, Group, epilog
from heatdecode.cli.render import err_console, say
from heatdecode.cli.report import report_command
from heatdecode.cli.run import run_command
from heatdecode.cli.sample import sample_command
from heatdecode.cli.sweep import sweep_command
from heatdecode.options import OptionError
from heatdecode.preflight import UsageError

__all__ = ["app", "main"]

app = typer.Typer(
    name="heatdecode",
    help="Turn heatmaps (.npy, .npz, .png, .tif) into coordinates, 2D and 3D.",
    epilog=epilog("heatdecode"),
    cls=Group,
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    add_completion=False,
    pretty_exceptions_enable=False,
)
for _name, _command in {
    "run": run_command,
    "sweep": sweep_command,
    "bench": bench_command,
    "sample": sample_command,
    "compare": compare_command,
    "report": report_command,
}.items():
    # options panel by panel, then the examples and the exit codes (cli.helptext)
    app.command(_name, cls=Command, epilog=epilog(_name))(_command)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"heatdecode {__version__}")
        raise typer.Exit()


@app.callback()
def _callback(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """heatdecode: heatmaps in, coordinates out."""


def main(argv: list[str] | None = None) -> int:
    """Entry point: runs the app and turns every user mistake into one line and an exit code."""
    # Process-wide settings (warnings filters, the SIGTERM handler) are made
    # here and restored on the way out, so calling main() leaves no trace.
    with warnings.catch_warnings():
        # Pillow warns about damaged TIFF tags on its way to failing; the file is
        # reported once, by the loader, with its reason. (Its decompression-bomb
        # warning is named too, by the commands that import Pillow.)
        warnings.filterwarnings("ignore", module=r"PIL\.")
        return _main(argv)


def _main(argv: list[str] | None) -> int:
    command = typer.main.get_command(app)
    try:
        # SIGTERM (a cluster's scheduler, `kill`) stops the run like Ctrl-C:
        # what is finished gets saved for --resume.
        previous = signal.signal(signal.SIGTERM, _interrupt)
    except ValueError:  # not the main thread: leave signals alone
        previous = None
    try:
        result = command.main(args=argv, prog_name="heatdecode", standalone_mode=False)
    except typer.Exit as exc:
        return int(exc.exit_code)
    except typer.Abort:
        return 1
    except Exception as exc:
        return _exit_code(exc)
    except KeyboardInterrupt:
        say(err_console(), "heatdecode: interrupted")
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return result if isinstance(result, int) else 0


def _exit_code(exc: Exception) -> int:
    """The one line and the exit code of an error that stopped a command."""
    if isinstance(exc, UsageError):
        code, message = 2, str(exc)
    elif isinstance(exc, OptionError):  # the library names the parameter; here it is a flag
        code, message = 2, exc.for_flag()
    elif isinstance(exc, OutputError):
        code, message = 1, str(exc)
    # typer's parse errors (click's UsageError, vendored by newer typers: not
    # public, so known by its interface) carry their own exit code
    elif hasattr(exc, "format_message") and hasattr(exc, "exit_code"):
        code, message = int(exc.exit_code), exc.format_message()
    else:
        raise exc
    if message:  # empty after no arguments at all: the help was the answer
        say(err_console(), f"heatdecode: error: {message}")
    return code


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
