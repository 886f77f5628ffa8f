"""The package's rules: the pure core imports no CLI or image stack, and the
public API of the README is importable from the top level."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

CORE = (
    "options",
    "reductions",
    "softmax",
    "peak",
    "decoders",
    "local",
    "dark",
    "refine",
    "registry",
    "family",
    "status",
    "layouts",
    "frames",
    "failures",
    "results",
    "matching",
    "peaks",
    "peaks_detect",
    "peaks_refine",
    "peak_batches",
)

BLOCKER = """
import sys
class Blocked:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("PIL", "rich", "typer", "matplotlib"):
            raise ImportError("blocked: " + name)
sys.meta_path.insert(0, Blocked())
import heatdecode.{module}
heavy = sorted({{"PIL", "rich", "typer"}} & {{m.split(".")[0] for m in sys.modules}})
outside = sorted(
    m for m in sys.modules
    if m.startswith("heatdecode.") and m.split(".")[1] not in {core}
)
print(heavy, outside)
"""


@pytest.mark.parametrize("module", CORE)
def test_core_modules_import_without_pillow_rich_or_typer(module):
    code = BLOCKER.format(module=module, core=repr(set(CORE)))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["[]", "[]"], done.stdout


def test_the_readme_api_is_importable_from_the_top_level():
    import heatdecode

    for name in ("hard_argmax", "soft_argmax", "SoftArgmax", "LocalSoftArgmax", "decode"):
        assert callable(getattr(heatdecode, name)), name
    assert "softargmax" in heatdecode.DECODERS


def test_atomic_writes_need_only_the_standard_library():
    code = (
        "import sys, heatdecode.atomic; "
        "print(sorted({'torch', 'numpy', 'PIL', 'rich'} & set(sys.modules)))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    # importing the package runs heatdecode/__init__.py, which loads the decoders:
    # only torch and numpy may come with it
    assert set(eval(done.stdout)) <= {"torch", "numpy"}


PACKAGE = Path(__file__).resolve().parents[1] / "heatdecode"
MAX_MODULE_LINES = 450
MAX_FUNCTION_LINES = 60  # of code: a docstring doesn't count


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", _modules(), ids=lambda p: p.relative_to(PACKAGE).as_posix())
def test_modules_stay_small_enough_to_hold_in_ones_head(path):
    """A module over the limit says why in its docstring (a line ``Size: ...``)."""
    source = path.read_text(encoding="utf-8")
    tree = ast.parse(source)
    if source.count("\n") > MAX_MODULE_LINES:
        reason = ast.get_docstring(tree) or ""
        assert "\nSize: " in "\n" + reason, f"{path.name}: {source.count(chr(10))} lines"
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if ast.get_docstring(node) is not None:
                body = body[1:]
            if not body:
                continue
            length = body[-1].end_lineno - body[0].lineno + 1
            assert length <= MAX_FUNCTION_LINES, f"{path.name}: {node.name} has {length} lines"


@pytest.mark.parametrize("module", ["evaluate", "readers", "sample", "writers", "report"])
def test_library_modules_import_without_the_cli_stack(module):
    """Scoring, reading truth, writing samples and outputs need neither rich nor typer."""
    code = (
        "import sys\n"
        "class Blocked:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('rich', 'typer'):\n"
        "            raise ImportError('blocked: ' + name)\n"
        "sys.meta_path.insert(0, Blocked())\n"
        f"import heatdecode.{module}\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
