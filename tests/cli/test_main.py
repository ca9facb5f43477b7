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


_HELP_ALL = """
import contextlib, io, json, sys
from avformer.cli.main import COMMANDS, main
out = {}
for command in sorted(COMMANDS):
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        try:
            main([command, "--help"])
        except SystemExit as e:
            out[command] = (e.code, buf.getvalue())
print(json.dumps(out))
"""


def test_help_is_plain_text() -> None:
    """``--help`` of every command: plain text, no reST markup from the docstrings it is built from. In a
    subprocess: importing every command module (torch.compile's machinery among them) into the test process left
    state that made later forked loader workers deadlock in torch's fd passing."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": f"{root / 'src'}{os.pathsep}{root}"}
    proc = subprocess.run([sys.executable, "-c", _HELP_ALL], cwd=root, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    helps = json.loads(proc.stdout)
    from avformer.cli.main import COMMANDS

    assert set(helps) == set(COMMANDS)
    for command, (code, out) in helps.items():
        assert code == 0 and out.startswith("usage: avformer") and "``" not in out, command
        assert not any(role in out for role in (":func:`", ":mod:`", ":class:`", ":meth:`")), command
