"""``avformer`` command-line entry point: dispatches ``avformer <command> ...`` to ``avformer.cli.<module>.main``.

Each command module exposes ``main(argv: list[str] | None = None) -> int`` so tests call it in-process.
Modules are imported lazily, so ``avformer probe`` does not pay for importing the models.

Any exception that reaches this level ends as one line on stderr and an exit status (2: the user's input, 1: the
environment or a bug; :func:`avformer.utils.errors.describe`), never a traceback; ``avformer --debug <command>``
(``--debug`` anywhere on the line) or ``AVFORMER_DEBUG=1`` shows the traceback instead. A closed output pipe
(``avformer ... | head``) ends quietly.
"""

from __future__ import annotations

import difflib
import importlib
import os
import select
import sys

from avformer.utils.errors import debug_enabled, describe, set_debug

__all__ = ["COMMANDS", "main"]

# command -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("avformer.cli.demo", "run the main job on the embedded synthetic data"),
    "train": ("avformer.cli.train", "train a classifier from an experiment config (YAML + key=value overrides)"),
    "eval": ("avformer.cli.eval", "evaluate a trained run or checkpoint on a manifest"),
    "predict": ("avformer.cli.predict", "predict the classes of video or audio files with a trained run"),
    "sync": ("avformer.cli.sync", "estimate the audio-video offset of media files with a trained av_sync run"),
    "localize": ("avformer.cli.localize", "heatmap of where the sound is in the picture (av_correspondence run)"),
    "serve": ("avformer.cli.serve", "a web page to try a trained run on uploaded video or audio files"),
    "synth": ("avformer.cli.synth", "write the procedurally generated audio-visual dataset (MP4 + manifest)"),
    "probe": ("avformer.cli.probe", "print streams, duration and usability of media files"),
    "prepare": ("avformer.cli.prepare", "decode a manifest once into tar shards of frames + audio for fast training"),
    "stats": ("avformer.cli.stats", "compute log-mel mean/std for a manifest (dataset normalisation)"),
    "bench": ("avformer.cli.bench", "benchmarks: `bench data MANIFEST`, `bench train MODEL | --config FILE`"),
    "models": ("avformer.cli.models", "list registered models with their parameter counts"),
    "config": ("avformer.cli.config_cmd", "`config show RECIPE [k=v...]`: the resolved config, every key and value"),
    "profile": ("avformer.cli.profile", "parameters, FLOPs, peak memory and throughput of a model"),
    "compare": ("avformer.cli.compare", "train configs x seeds and write a table: accuracy, params, FLOPs, memory"),
    "pretrain": (
        "avformer.cli.pretrain",
        "self-supervised pretraining: VATT, XDC, CrissCross, MAE, CAV-MAE, MAViL, XKD",
    ),
    "probe-linear": ("avformer.cli.probe_linear", "linear probe on a run's frozen features vs a random-init encoder"),
    "embed": ("avformer.cli.embed", "embed a manifest with a pretrained VATT (embeddings + index + retrieval metrics)"),
    "retrieve": ("avformer.cli.retrieve", "top-k clips of an embedding index for a --text or --file query"),
    "cluster": ("avformer.cli.cluster", "k-means clusters of a manifest in a run's video / audio feature spaces (CSV)"),
    "vatt-bench": ("avformer.cli.vatt_bench", "pretrain self-supervised recipes on one budget; probe/retrieval table"),
    "export": ("avformer.cli.export", "weights-only copy of a run (model.safetensors + config) that eval/predict load"),
    "convert": ("avformer.cli.convert", "Hugging Face AST or torchvision MViTv2 weights as an avformer export folder"),
}


def _usage() -> str:
    width = max(len(c) for c in COMMANDS)
    lines = ["usage: avformer <command> [args...]", "", "commands:"]
    lines += [f"  {name.ljust(width)}  {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "`avformer <command> --help` describes a command; `--debug` shows tracebacks (bug reports)."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or debug_enabled()
    argv = [a for a in argv if a != "--debug"]
    if not argv or argv[0] in {"-h", "--help", "help"}:
        print(_usage())
        return 0 if argv else 2
    if argv[0] in {"-V", "--version"}:
        from avformer._version import __version__

        print(f"avformer {__version__}")
        return 0
    cmd, rest = argv[0], argv[1:]
    if cmd not in COMMANDS:
        close = difflib.get_close_matches(cmd, COMMANDS, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        print(f"avformer: unknown command {cmd!r}{hint}\n\n{_usage()}", file=sys.stderr)
        return 2
    return _run(cmd, rest, debug)


def _stdout_closed() -> bool:
    """Whether stdout's reader has gone (``| head``): the broken pipe was ours to expect, not an error."""
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        return True
    try:  # the failed write may have left nothing to flush: ask the pipe itself
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(ev & (select.POLLERR | select.POLLHUP) for _, ev in poller.poll(0))
    except (AttributeError, OSError, ValueError):  # no poll (Windows) or no real stdout: assume it was stdout
        return True


def _run(cmd: str, argv: list[str], debug: bool) -> int:
    """``avformer.cli.<cmd>.main(argv)`` with every escaping exception turned into one line and an exit status."""
    set_debug(debug)  # run_in_group and the commands re-raise their one-line errors under --debug
    try:
        module = importlib.import_module(COMMANDS[cmd][0])
        return int(module.main(argv))
    except BrokenPipeError as e:
        if not _stdout_closed():  # not stdout's reader leaving: an error like any other
            return _report(cmd, e, debug)
        devnull = os.open(os.devnull, os.O_WRONLY)  # `avformer ... | head`: the reader left; say nothing more
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    except KeyboardInterrupt:
        print(f"avformer {cmd}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        return _report(cmd, e, debug)
    finally:
        set_debug(False)


def _report(cmd: str, e: Exception, debug: bool) -> int:
    if debug:
        raise e
    status, message = describe(e)
    print(f"avformer {cmd}: error: {message}", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
