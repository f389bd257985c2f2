# ---------------------------------------------------------------------------------------------
# The documentation site: `mkdocs build --strict` (mkdocs.yml at the repository root, the pages in
# docs/) succeeds without a single warning (a broken link or anchor, a missing image, a page left
# out of the nav), and the nav and docs/ agree, so that a new page cannot be forgotten.
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest

from helpers import ROOT

CONFIG = ROOT / "mkdocs.yml"
DOCS = ROOT / "docs"


def _nav_pages(nav) -> list[str]:
    """Every page path in a mkdocs nav: strings, {title: path} and {title: [sections]}."""
    pages = []
    for entry in nav:
        if isinstance(entry, str):
            pages.append(entry)
        elif isinstance(entry, dict):
            for value in entry.values():
                pages.extend(_nav_pages(value) if isinstance(value, list) else [value])
    return [page for page in pages if "://" not in page]        # external links are not pages


def _config() -> dict:
    yaml = pytest.importorskip("yaml", reason="PyYAML (a dependency of mkdocs) is needed to read mkdocs.yml")
    return yaml.safe_load(CONFIG.read_text(encoding="utf-8"))


def test_the_nav_and_the_docs_folder_agree():
    config = _config()
    assert (ROOT / config.get("docs_dir", "docs")).resolve() == DOCS.resolve()
    nav = _nav_pages(config["nav"])
    assert len(nav) == len(set(nav)), f"pages listed twice in the nav: {sorted(p for p in nav if nav.count(p) > 1)}"
    missing = sorted(page for page in nav if not (DOCS / page).is_file())
    assert not missing, f"mkdocs.yml's nav names pages that do not exist in docs/: {missing}"
    pages = sorted(path.relative_to(DOCS).as_posix() for path in DOCS.rglob("*.md"))
    left_out = sorted(set(pages) - set(nav))
    assert not left_out, f"pages in docs/ that mkdocs.yml's nav does not list (add them): {left_out}"


def test_mkdocs_build_strict_has_no_warnings(tmp_path):
    missing = [name for name in ("mkdocs", "material", "pymdownx") if importlib.util.find_spec(name) is None]
    if missing:
        pytest.skip(f"the documentation tools are not installed ({', '.join(missing)}): "
                    f"pip install -e '.[docs]'")
    site = tmp_path / "site"
    # NO_MKDOCS_2_WARNING: the material theme's banner about its future, printed on every build
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "WARNING" not in output, output
    assert (site / "index.html").is_file()
    for page in _nav_pages(_config()["nav"]):
        built = site / (page[:-len("index.md")] if page.endswith("index.md") else page[:-3] + "/") / "index.html"
        assert built.is_file(), f"{page} was not built ({built})"
    # no web fonts: the site builds and reads without the network
    assert "fonts.googleapis.com" not in (site / "index.html").read_text(encoding="utf-8")
