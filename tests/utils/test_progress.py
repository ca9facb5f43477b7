"""The progress helper: throttled plain lines with done/total, rate and ETA off a terminal, a rich bar on one."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from avformer.utils.progress import (
    DEFAULT_INTERVAL_S,
    INTERVAL_ENV,
    Progress,
    format_duration,
    progress_interval,
    track,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _plain() -> Console:
    return Console(file=io.StringIO(), width=80)  # a StringIO is not a terminal


def _lines(console: Console) -> list[str]:
    return console.file.getvalue().splitlines()  # type: ignore[attr-defined]


def test_plain_lines_are_throttled_and_carry_done_total_rate_and_eta() -> None:
    clock, console = FakeClock(), _plain()
    with Progress("prepare", 100, unit="rows", console=console, enabled=True, interval_s=10, clock=clock) as bar:
        for _ in range(35):  # one row per second for 35 s
            clock.now += 1
            bar.advance()
    lines = _lines(console)
    # one line at 10, 20 and 30 s (not one per update), then the closing line
    assert lines == [
        "prepare: 10/100 rows (10%)  1 rows/s  elapsed 10s  ETA 1m30s",
        "prepare: 20/100 rows (20%)  1 rows/s  elapsed 20s  ETA 1m20s",
        "prepare: 30/100 rows (30%)  1 rows/s  elapsed 30s  ETA 1m10s",
        "prepare: 35 rows done in 35s",
    ]


def test_eta_follows_the_rate_since_the_start_and_fields_are_shown() -> None:
    clock, console = FakeClock(), _plain()
    # a resumed epoch: 40 of 100 steps were done before; 10 more in 20 s is 0.5 steps/s, 50 left -> 100 s
    kw = {"unit": "steps", "console": console, "enabled": True, "interval_s": DEFAULT_INTERVAL_S, "clock": clock}
    with Progress("epoch 2/3", 100, completed=40, **kw) as bar:
        clock.now += 20
        bar.update(50, loss="0.6931")
        assert bar.rate == pytest.approx(0.5) and bar.eta == pytest.approx(100.0)
        clock.now += DEFAULT_INTERVAL_S - 20  # the default interval, counted from the start
        bar.update(55)
    assert _lines(console)[0] == (
        "epoch 2/3: 55/100 steps (55%)  2 s each  elapsed 30s  ETA 1m30s  loss 0.6931"  # 15 steps in 30 s; 45 left
    )


def test_interval_zero_prints_every_update_and_unknown_total_has_no_eta() -> None:
    clock, console = FakeClock(), _plain()
    with Progress("embed", None, unit="batches", console=console, enabled=True, interval_s=0, clock=clock) as bar:
        for _ in range(3):
            clock.now += 2
            bar.advance()
    lines = _lines(console)
    # the last line shows the end already: no closing line
    assert lines == [f"embed: {i} batches  2 s each  elapsed {2 * i}s" for i in (1, 2, 3)]


def test_short_loops_disabled_and_failed_ones_print_nothing() -> None:
    console = _plain()
    with Progress("quick", 5, console=console, enabled=True, interval_s=60) as bar:
        bar.advance(5)
    with Progress("quiet", 5, console=console, enabled=False, interval_s=0) as bar:
        bar.advance(5)
    assert _lines(console) == []


def test_no_control_characters_off_a_terminal() -> None:
    console = _plain()
    for _ in track(range(4), "eval", console=console, enabled=True, interval_s=0):
        pass
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert text and "\x1b" not in text and "\r" not in text
    assert "eval: 4/4 it (100%)" in text


def test_terminal_bar_does_not_crash() -> None:
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=100)
    items = list(track(range(7), "epoch 1/1", unit="steps", console=console, enabled=True))
    assert items == list(range(7))
    with Progress("validation", 3, console=console, enabled=True) as bar:
        bar.update(2, loss="0.1000", **{"clips/s": "12.0"})
        bar.advance()
    assert "epoch 1/1" in buf.getvalue()  # the live bar drew something


def test_track_takes_the_total_from_len_and_accepts_generators() -> None:
    console = _plain()
    assert list(track((i for i in range(3)), "gen", console=console, enabled=True, interval_s=0)) == [0, 1, 2]
    assert _lines(console)[0].startswith("gen: 1 it ")  # no total
    console = _plain()
    list(track([1, 2], "list", console=console, enabled=True, interval_s=0))
    assert _lines(console)[0].startswith("list: 1/2 it (50%)")


def test_interval_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(INTERVAL_ENV, raising=False)
    assert progress_interval() == DEFAULT_INTERVAL_S == 30.0
    monkeypatch.setenv(INTERVAL_ENV, "2.5")
    assert progress_interval() == 2.5
    assert Progress("x").interval_s == 2.5
    monkeypatch.setenv(INTERVAL_ENV, "soon")
    with pytest.raises(ValueError, match=INTERVAL_ENV):
        progress_interval()


def test_format_duration() -> None:
    assert [format_duration(s) for s in (0, 42.4, 185, 7620)] == ["0s", "42s", "3m05s", "2h07m"]
