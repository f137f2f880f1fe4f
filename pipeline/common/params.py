"""Reading ``params.yaml``: the file, one typed section of it, and library configs built from a
section by field name. Each stage's section lives with the stage (its defaults, choices and
checks); this module knows none of them."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from ggik_core.errors import GGIKError

T = TypeVar("T")


def pick(cls: type[T], source: Any, prefix: str = "") -> T:
    """A library config ``cls`` from the fields of ``source`` named ``prefix + field`` (the others
    keep ``cls``'s defaults): no field is copied by hand."""
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    return cls(**{n: getattr(source, prefix + n) for n in names if hasattr(source, prefix + n)})


def build_section(cls: type[T], section: str, raw: Any) -> T:
    """The dataclass ``cls`` from the mapping ``raw`` (section ``section`` of the file), each value
    converted to the type of its default; unknown keys and unconvertible values are one-line errors."""
    if raw is None:
        return cls()
    if not isinstance(raw, dict):
        raise GGIKError(f"params: section {section!r} must be a mapping")
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(raw) - set(names)
    if unknown:
        raise GGIKError(f"params: unknown key(s) {sorted(unknown)} in section {section!r}")
    kwargs = {}
    for key, value in raw.items():
        default = getattr(cls(), key)
        try:
            if isinstance(default, bool):
                if not isinstance(value, bool):
                    raise TypeError
                kwargs[key] = value
            elif isinstance(default, tuple):
                elem = typing.get_args(typing.get_type_hints(cls)[key])[0]
                kwargs[key] = tuple(elem(v) for v in (value if isinstance(value, (list, tuple)) else [value]))
            else:
                kwargs[key] = type(default)(value)
        except (TypeError, ValueError):
            raise GGIKError(f"params: {section}.{key} = {value!r} is not a valid {type(default).__name__}") from None
    return cls(**kwargs)


def read_params(path: str | Path = "params.yaml") -> dict:
    """The sections of a params file, as parsed YAML (checked to be a mapping)."""
    path = Path(path)
    if not path.exists():
        raise GGIKError(f"params file {path} not found")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise GGIKError(f"params file {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(raw, dict):
        raise GGIKError(f"params file {path} must be a mapping of sections")
    return raw


def check_at_least(checks: list[tuple[str, Any, int]]) -> None:
    """``(name, value, low)`` triples: each value must be at least ``low``."""
    for name, value, low in checks:
        if value < low:
            raise GGIKError(f"params: {name} must be at least {low}, got {value}")


def one_of(choices: tuple[str, ...]) -> str:
    """``a, b or c``: the allowed values, as the error messages name them."""
    return f"{', '.join(choices[:-1])} or {choices[-1]}" if len(choices) > 1 else choices[0]
