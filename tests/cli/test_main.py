"""The ``avformer`` dispatcher: usage, version, and a hint for a mistyped command."""

from __future__ import annotations

import pytest

from avformer import __version__
from avformer.cli.main import main


def test_a_mistyped_command_gets_a_hint(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["trian"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("avformer: unknown command 'trian'; did you mean 'train'?")
    assert main(["zzzzzz"]) == 2
    assert "did you mean" not in capsys.readouterr().err


def test_version_and_usage(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0 and capsys.readouterr().out.strip() == f"avformer {__version__}"
    assert main([]) == 2 and "commands:" in capsys.readouterr().out
