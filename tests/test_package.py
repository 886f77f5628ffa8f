"""The package's rules: the pure core imports no CLI or image stack, and the
public API of the README is importable from the top level."""

from __future__ import annotations

import subprocess
import sys

import pytest

CORE = ("options", "decoders", "refine", "status", "layouts", "frames", "family")

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
