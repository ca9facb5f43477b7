"""MkDocs hooks: the pages that are generated at build time, never committed.

- ``cli.md``: the command-line reference, from the argparse parser of every command in
  :data:`avformer.cli.main.COMMANDS` (a new command appears by being added there). A command whose module fails to
  import, or whose parser cannot be found, fails the build with its name.
- ``contributing.md``: ``CONTRIBUTING.md`` of the repository root, as it is.
- ``recipes.md``: the ``<!-- recipes-table -->`` marker becomes a table of ``configs/**/*.yaml`` with each file's
  header comment (its first paragraph).
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import os
import re
import sys
from pathlib import Path
from typing import Any

from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[1]
RECIPES_MARKER = "<!-- recipes-table -->"
_WIDTH = "100"  # argparse wraps usage lines to $COLUMNS: fixed, so the page does not depend on the terminal


def on_config(config: Any) -> Any:
    src = str(ROOT / "src")
    if src not in sys.path:
        sys.path.insert(0, src)  # document this tree, whatever avformer the environment has installed
    return config


def on_files(files: Files, config: Any) -> Files:
    files.append(File.generated(config, "cli.md", content=cli_page()))
    files.append(File.generated(config, "contributing.md", content=(ROOT / "CONTRIBUTING.md").read_text()))
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Files) -> str:
    if RECIPES_MARKER in markdown:
        markdown = markdown.replace(RECIPES_MARKER, recipes_table())
    return markdown


# ---------------------------------------------------------------------------------------------------------- CLI


class _Parsed(BaseException):
    """Raised in place of parsing: carries the parser that a command's ``main`` built."""

    def __init__(self, parser: argparse.ArgumentParser) -> None:
        super().__init__()
        self.parser = parser


def parser_of(name: str, module_name: str) -> argparse.ArgumentParser:
    """The argparse parser of one command: its module's ``_parser()`` when it has one, else the parser its
    ``main`` builds (caught at the parse call, before the command does anything)."""
    try:
        module = importlib.import_module(module_name)
    except Exception as e:
        raise PluginError(f"CLI reference: command {name!r}: module {module_name} does not import: {e!r}") from e
    make = getattr(module, "_parser", None)
    if callable(make) and not any(
        p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        for p in inspect.signature(make).parameters.values()
    ):
        parser = make()
        if isinstance(parser, argparse.ArgumentParser):
            return parser
    main = getattr(module, "main", None)
    if not callable(main):
        raise PluginError(f"CLI reference: command {name!r}: {module_name} has neither _parser() nor main()")

    def grab(self: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> Any:
        raise _Parsed(self)

    saved = argparse.ArgumentParser.parse_known_args, argparse.ArgumentParser.parse_known_intermixed_args
    argparse.ArgumentParser.parse_known_args = grab  # type: ignore[method-assign]
    argparse.ArgumentParser.parse_known_intermixed_args = grab  # type: ignore[method-assign]
    try:
        main(["--help"])
    except _Parsed as p:
        return p.parser
    except Exception as e:
        raise PluginError(f"CLI reference: command {name!r}: main() failed before parsing: {e!r}") from e
    finally:
        argparse.ArgumentParser.parse_known_args, argparse.ArgumentParser.parse_known_intermixed_args = saved
    raise PluginError(f"CLI reference: command {name!r}: main() returned without parsing its arguments")


_CODE_SPAN = re.compile(r"(`+)(?:.+?)\1")


def _escape(s: str, cell: bool = False) -> str:
    """Neutralise HTML, link brackets and (in a table cell) pipes outside code spans; inside them Markdown shows
    every character as it is."""

    def plain(t: str) -> str:
        t = t.replace("&", "&amp;").replace("<", "&lt;").replace("[", r"\[").replace("]", r"\]")
        return t.replace("|", r"\|") if cell else t

    out, at = [], 0
    for m in _CODE_SPAN.finditer(s):
        out += [plain(s[at : m.start()]), m.group(0)]
        at = m.end()
    return "".join([*out, plain(s[at:])])


def _text(s: str) -> str:
    """Argparse prose as Markdown: keep emphasis and indented examples, neutralise HTML and link brackets."""
    out, in_code, prev_blank = [], False, True
    for line in s.splitlines():
        indented = line.startswith("    ")
        in_code = indented and (in_code or prev_blank)
        if not in_code:
            line = re.sub(r"::$", ":", _escape(line))
        out.append(line)
        prev_blank = not line.strip()
    return "\n".join(out)


def _cell(s: str) -> str:
    """One table cell: one line, escaped."""
    return _escape(" ".join(s.split()), cell=True)


def _default(action: argparse.Action) -> str:
    d = action.default
    flag = isinstance(action, argparse._StoreTrueAction | argparse._StoreFalseAction)
    if flag or d is None or d is argparse.SUPPRESS or (isinstance(d, list | tuple) and not d):
        return ""
    return f"`{d!r}`" if not isinstance(d, str) else f"`{d}`"


def _render(parser: argparse.ArgumentParser, title: str, anchor: str, level: int, summary: str) -> list[str]:
    fmt = parser._get_formatter()
    lines = [f"{'#' * level} `{title}` {{#{anchor}}}", ""]
    if summary:
        lines += [_text(summary), ""]
    lines += ["```text", parser.format_usage().strip(), "```", ""]
    if parser.description:
        lines += [_text(inspect.cleandoc(parser.description)), ""]
    rows, subs = [], []
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction) or action.help == argparse.SUPPRESS:
            continue
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            subs += [(n, p, helps.get(n, "")) for n, p in action.choices.items()]
            continue
        invocation = fmt._format_action_invocation(action)
        help_ = fmt._expand_help(action) if action.help else ""
        rows.append(f"| `{invocation}` | {_default(action)} | {_cell(help_)} |")
    if rows:
        lines += ["| argument | default | meaning |", "|---|---|---|", *rows, ""]
    if parser.epilog:
        lines += [_text(inspect.cleandoc(parser.epilog)), ""]
    for n, p, h in subs:
        lines += _render(p, f"{title} {n}", f"{anchor}-{n}", level + 1, h)
    return lines


def cli_page() -> str:
    """The whole ``cli.md``: a table of the commands, then one section per command (and sub-command)."""
    os.environ["COLUMNS"] = _WIDTH
    from avformer.cli.main import COMMANDS

    head = [
        "# Command line",
        "",
        "Generated when the site is built, from the argparse definitions of the commands in "
        "`avformer.cli.main.COMMANDS`: it is what `avformer <command> --help` prints. Exit status of every command: "
        "0 done, 2 a mistake in the input (one error line), 1 the environment or a bug, 128 + N stopped by signal N; "
        "`avformer --debug <command> ...` shows tracebacks. Each command is also a Python function, "
        "`avformer.cli.<module>.main(argv) -> int`.",
        "",
        "| command | what it does |",
        "|---|---|",
        *(f"| [`avformer {n}`](#{n}) | {_cell(h)} |" for n, (_, h) in COMMANDS.items()),
        "",
    ]
    body: list[str] = []
    for name, (module_name, help_) in COMMANDS.items():
        body += _render(parser_of(name, module_name), f"avformer {name}", name, 2, help_)
    return "\n".join(head + body) + "\n"


# ---------------------------------------------------------------------------------------------------------- recipes


def _header(path: Path) -> str:
    """The first paragraph of a YAML file's leading comment."""
    para: list[str] = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        text = line[1:].strip()
        if not text:
            if para:
                break
            continue
        para.append(text)
    # the paragraph often ends by announcing the command that follows it ("Run from the repository root:")
    return re.sub(r"(?<=[.)])\s+[^.]*:$", "", " ".join(para))


def recipes_table() -> str:
    rows = ["| recipe | what it is (the file's header) |", "|---|---|"]
    configs = ROOT / "configs"
    for path in sorted(configs.rglob("*.yaml")):
        if path.name.startswith("_"):
            continue  # shared pieces that other recipes inherit, not recipes
        rel = path.relative_to(ROOT).as_posix()
        rows.append(f"| `{rel}` | {_cell(_header(path))} |")
    return "\n".join(rows)
