"""The chart's values.yaml, read with its Bitnami-style `## @section` / `## @param` comments.

`## @param a.b [modifiers] Description` documents the key `a.b`; `## @extra` documents a key
with no default; `## @skip a.b` leaves a key undocumented on purpose. Modifiers are type names
(`string`, `integer`, `number`, `boolean`, `object`, `array`; several make a union) and
`nullable`. Every value must be documented, by its own `@param` or by one on an ancestor.
"""

import re
from dataclasses import dataclass, field
from typing import Any

import yaml

_TAG = re.compile(r"^\s*##\s*@(\w+)\s*(.*)$")
_PARAM = re.compile(r"^(?P<path>[\w.\-]+)(?:\s+\[(?P<mods>[^\]]*)\])?\s*(?P<text>.*)$")
TYPES = ("string", "integer", "number", "boolean", "object", "array", "null")


class ValuesError(ValueError):
    """values.yaml breaks the documentation conventions."""


@dataclass(frozen=True)
class Param:
    path: str
    description: str
    types: tuple[str, ...] = ()
    nullable: bool = False
    extra: bool = False


@dataclass
class Section:
    title: str
    params: list[Param] = field(default_factory=list)


@dataclass(frozen=True)
class Values:
    data: dict[str, Any]
    sections: tuple[Section, ...]
    skipped: frozenset[str]

    def params(self) -> dict[str, Param]:
        return {p.path: p for s in self.sections for p in s.params}


def parse(text: str) -> Values:
    data = yaml.safe_load(text) or {}
    sections: list[Section] = []
    skipped: set[str] = set()
    for number, line in enumerate(text.splitlines(), 1):
        match = _TAG.match(line)
        if match is None:
            continue
        tag, rest = match.groups()
        if tag == "section":
            sections.append(Section(rest.strip()))
        elif tag == "skip":
            skipped.add(rest.strip())
        elif tag in ("param", "extra"):
            if not sections:
                raise ValuesError(f"values.yaml line {number}: @{tag} before any @section")
            sections[-1].params.append(_param(rest, tag == "extra", number))
        else:
            raise ValuesError(f"values.yaml line {number}: unknown tag @{tag}")
    values = Values(data, tuple(sections), frozenset(skipped))
    _check(values)
    return values


def _param(rest: str, extra: bool, number: int) -> Param:
    match = _PARAM.match(rest.strip())
    if match is None or not match["text"]:
        raise ValuesError(f"values.yaml line {number}: expected `@param path description`")
    mods = [m.strip() for m in (match["mods"] or "").split(",") if m.strip()]
    unknown = [m for m in mods if m not in (*TYPES, "nullable")]
    if unknown:
        raise ValuesError(f"values.yaml line {number}: unknown modifier {', '.join(unknown)}")
    types = tuple(m for m in mods if m != "nullable")
    return Param(match["path"], match["text"].strip(), types, "nullable" in mods, extra)


_MISSING = object()


def lookup(data: Any, path: str) -> Any:
    for key in path.split("."):
        if not isinstance(data, dict) or key not in data:
            return _MISSING
        data = data[key]
    return data


def exists(data: Any, path: str) -> bool:
    return lookup(data, path) is not _MISSING


def leaves(data: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted paths of every value: scalars, lists, and empty objects."""
    found: list[str] = []
    for key, value in data.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            found.extend(leaves(value, f"{path}."))
        else:
            found.append(path)
    return found


def _check(values: Values) -> None:
    params = values.params()
    paths = [p.path for s in values.sections for p in s.params]
    twice = sorted({p for p in paths if paths.count(p) > 1})
    if twice:
        raise ValuesError(f"documented twice: {', '.join(twice)}")
    for param in params.values():
        if not param.extra and not exists(values.data, param.path):
            raise ValuesError(f"@param {param.path} is not in values.yaml (use @extra)")
    documented = set(params) | values.skipped
    for leaf in leaves(values.data):
        parts = leaf.split(".")
        if not any(".".join(parts[:i]) in documented for i in range(1, len(parts) + 1)):
            raise ValuesError(f"{leaf} has no `## @param` comment")
