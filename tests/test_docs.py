"""The documentation site (``make docs``): the strict build fails on a broken internal link or anchor, nothing else in
the pages warns, the generated CLI reference has every command, and the README's links point at files that exist.

One build (about 10 s) of a copy of the docs with a broken link and a broken anchor planted: strict mode must stop
it, and the only warnings must be the planted ones (so the real pages build clean). Skipped without MkDocs
(``pip install -e ".[docs]"``).
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("mkdocs", reason="the docs tools are not installed (pip install -e '.[docs]')")
pytest.importorskip("mkdocstrings_handlers.python", reason="mkdocstrings[python] is not installed")

ROOT = Path(__file__).resolve().parents[1]
PLANTED = "\n\nSee [the missing page](no-such-page.md) and [a missing section](recipes.md#no-such-anchor).\n"


@pytest.fixture(scope="module")
def planted_build(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], Path]:
    work = tmp_path_factory.mktemp("docs")
    shutil.copytree(ROOT / "docs", work / "docs")
    shutil.copy(ROOT / "mkdocs.yml", work / "mkdocs.yml")
    for name in ("src", "configs", "CONTRIBUTING.md"):
        (work / name).symlink_to(ROOT / name)
    with (work / "docs" / "index.md").open("a") as f:
        f.write(PLANTED)
    site = work / "site"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(work / "mkdocs.yml"), "-d", str(site)]
    proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=300)
    return proc, site


def _warnings(proc: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in (proc.stdout + proc.stderr).splitlines() if line.startswith(("WARNING", "ERROR"))]


def test_a_broken_internal_link_or_anchor_fails_the_strict_build(planted_build: tuple) -> None:
    proc, _ = planted_build
    assert proc.returncode != 0
    out = "\n".join(_warnings(proc))
    assert "no-such-page.md" in out and "no-such-anchor" in out, out


def test_nothing_but_the_planted_links_warns(planted_build: tuple) -> None:
    proc, _ = planted_build
    others = [w for w in _warnings(proc) if "no-such-page.md" not in w and "no-such-anchor" not in w]
    assert others == [], "\n".join(others)


def test_the_cli_reference_has_every_command(planted_build: tuple) -> None:
    from avformer.cli.main import COMMANDS

    _, site = planted_build
    page = (site / "cli" / "index.html").read_text()
    missing = [name for name in COMMANDS if f'id="{name}"' not in page]
    assert missing == []


def test_a_command_that_does_not_import_fails_the_build_naming_it() -> None:
    from mkdocs.exceptions import PluginError

    spec = importlib.util.spec_from_file_location("avformer_docs_hooks", ROOT / "docs" / "hooks.py")
    assert spec is not None and spec.loader is not None
    hooks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hooks)
    with pytest.raises(PluginError, match=r"'nope'.*avformer\.cli\.no_such_module"):
        hooks.parser_of("nope", "avformer.cli.no_such_module")


def test_the_readme_links_point_at_files_that_exist() -> None:
    readme = (ROOT / "README.md").read_text()
    targets = [t.split("#")[0] for t in re.findall(r"\]\(([^)\s]+)\)", readme) if not t.startswith(("http", "#"))]
    assert targets
    missing = [t for t in targets if not (ROOT / t).exists()]
    assert missing == []
