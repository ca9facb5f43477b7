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


def test_config_show_prints_the_resolved_recipe(capsys: pytest.CaptureFixture[str]) -> None:
    from pathlib import Path

    from avformer.config import load, loads

    recipe = Path(__file__).resolve().parents[2] / "configs" / "experiment" / "av_digits_mmt_tiny.yaml"
    assert main(["config", "show", str(recipe), "train.epochs=3"]) == 0
    text = capsys.readouterr().out
    shown = loads(text)
    assert shown.train.epochs == 3 and shown.model == load(recipe).model
    assert "decode_timeout_s: 60.0" in text and "checkpoint_every: 0" in text  # defaults are printed too
    assert main(["config", "show", str(recipe), "train.epochs=abc"]) == 2
    assert capsys.readouterr().err.startswith("avformer config: error:")


@pytest.mark.parametrize("command", sorted(__import__("avformer.cli.main", fromlist=["COMMANDS"]).COMMANDS))
def test_help_is_plain_text(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    """``--help`` of every command: plain text, no reST markup from the docstrings it is built from."""
    with pytest.raises(SystemExit) as e:
        main([command, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: avformer") and "``" not in out
    assert not any(role in out for role in (":func:`", ":mod:`", ":class:`", ":meth:`"))
