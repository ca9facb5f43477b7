"""avformer.utils.structure: plain data <-> dataclasses, strict, on dataclasses other than the experiment config."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pytest

from avformer.utils.structure import ConfigError, structure, to_dict


@dataclass
class Inner:
    kind: Literal["a", "b"] = "a"
    size: tuple[int, int] = (1, 2)
    rate: float = 0.5

    def __post_init__(self) -> None:
        if self.rate < 0:
            raise ValueError("rate must be >= 0")


@dataclass
class Outer:
    name: str
    inner: Inner = field(default_factory=Inner)
    tags: list[str] = field(default_factory=list)
    extra: dict[str, int] = field(default_factory=dict)
    maybe: Inner | None = None


def test_round_trip_and_coercions() -> None:
    data = {"name": "x", "inner": {"kind": "b", "size": [3, 4], "rate": "1e-4"}, "tags": ["t"], "extra": {"k": 2}}
    out = structure(Outer, data)
    assert out == Outer("x", Inner("b", (3, 4), 1e-4), ["t"], {"k": 2})
    assert structure(Outer, to_dict(out)) == out
    assert to_dict(out)["inner"]["size"] == [3, 4]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"name": "x", "inner": {"knd": "a"}}, "did you mean 'inner.kind'"),
        ({"name": "x", "rate": 1.0}, "'rate' exists at 'inner.rate'"),
        ({}, "missing key 'name'"),
        ({"name": "x", "inner": {"kind": "c"}}, "inner.kind: must be one of ['a', 'b']"),
        ({"name": "x", "inner": {"size": [1, 2, 3]}}, "inner.size: expected 2 values"),
        ({"name": "x", "inner": {"rate": -1.0}}, "inner: rate must be >= 0"),
        ({"name": "x", "inner": {"size": [1, True]}}, "inner.size[1]: expected int"),
        ({"name": "x", "maybe": {"kind": "z"}}, "maybe.kind: must be one of"),
        ({"name": "x", "extra": {"k": "two"}}, "extra.k: expected int"),
    ],
)
def test_errors_name_the_path(data: dict, message: str) -> None:
    with pytest.raises(ConfigError) as e:
        structure(Outer, data)
    assert message in str(e.value)


def test_to_dict_refuses_a_non_dataclass() -> None:
    with pytest.raises(TypeError, match="dataclass instance"):
        to_dict([1, 2])
