# ---------------------------------------------------------------------------------------------
# The package as pip installs it from a wheel (not the source tree): the grammar and the
# reference models are package data, and pcdsl works from any folder.
#
# The wheel is built with pip from this checkout (no build isolation, so no download), unpacked
# into a folder of its own with --target, and run with that folder first on sys.path and a
# working directory outside the repository. Oracle: the files in the wheel, and the shipped
# VGG10's parameter count (62,651,752, METHOD.md section 4) computed by the installed copy.
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                             "-w", str(out), str(ROOT)], capture_output=True, text=True)
    if result.returncode != 0:
        pytest.fail(f"pip wheel failed:\n{result.stdout}\n{result.stderr}")
    (found,) = out.glob("pcdsl-*.whl")
    return found


def test_the_wheel_holds_the_grammar_and_every_reference_model(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "pcdsl/grammars/pcdsl.lark" in names
    shipped = {f"pcdsl/models/{p.name}" for p in (ROOT / "pcdsl" / "models").glob("*.pc")}
    assert shipped and shipped <= names
    packages = {str(p.parent.relative_to(ROOT)) for p in (ROOT / "pcdsl").rglob("__init__.py")}
    assert {f"{p}/__init__.py" for p in packages} <= names     # every subpackage is in


def test_the_installed_package_runs_outside_the_repository(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True, capture_output=True)
    script = ("import pcdsl, sys; assert pcdsl.__file__.startswith(sys.argv[1]), pcdsl.__file__; "
              "print(pcdsl.describe('vgg10_imagenet')['parameters']); print(pcdsl.load('mlp_digits').NAME)")
    env = {**os.environ, "PYTHONPATH": str(target)}
    result = subprocess.run([sys.executable, "-c", script, str(target)], cwd=tmp_path, env=env,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["62651752", "mlp_digits"]
