"""Declarative DSPy programs: what a program is, read from JSON, never from pickled code.

`{"programs": [{"name", "signature", "module", "instructions"?, "demos"?}]}`: the signature is
DSPy's string form (`"question -> answer"`, typed fields allowed: `"question: str -> answer:
int"`), the module `predict` or `chain_of_thought`, and the instructions and demos are what a
DSPy optimizer produced (`modelkube optimize` writes this form).
"""

import json
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

NAME = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
M = TypeVar("M", bound=BaseModel)


class ProgramSpecError(ValueError):
    """The programs file is unusable; str() is one line."""


class ProgramSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=NAME, max_length=63)
    signature: str = Field(min_length=4, max_length=2048)
    module: Literal["predict", "chain_of_thought"] = "predict"
    instructions: str | None = Field(default=None, max_length=65536)
    demos: tuple[dict[str, Any], ...] = Field(default=(), max_length=64)


class ProgramsFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    programs: tuple[ProgramSpec, ...] = ()


def parse_programs(text: str, source: str) -> tuple[ProgramSpec, ...]:
    parsed = _validate(ProgramsFile, _json(text, source), source)
    names = [p.name for p in parsed.programs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ProgramSpecError(f"{source}: program names must be unique: {', '.join(duplicates)}")
    return parsed.programs


def read_programs_file(path: Path) -> tuple[ProgramSpec, ...] | None:
    """The programs in the file; None without one (yet: a ConfigMap key may come later)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ProgramSpecError(f"cannot read {path}: {exc.strerror or exc}") from exc
    return parse_programs(text, str(path))


def parse_program(text: str, source: str, name: str | None = None) -> ProgramSpec:
    """One program: a program object, or the one named `name` in a programs file."""
    data = _json(text, source)
    if not (isinstance(data, dict) and "programs" in data):
        spec = _validate(ProgramSpec, data, source)
        if name is not None and spec.name != name:
            raise ProgramSpecError(f"{source}: holds program {spec.name}, not {name}")
        return spec
    programs = parse_programs(text, source)
    names = [p.name for p in programs]
    if name is None and len(programs) == 1:
        return programs[0]
    if name is None:
        raise ProgramSpecError(f"{source}: holds {len(names)} programs, choose one: {names}")
    for program in programs:
        if program.name == name:
            return program
    raise ProgramSpecError(f"{source}: no program named {name}; it holds {names}")


def _json(text: str, source: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ProgramSpecError(f"{source}: not valid JSON: {exc.msg} (line {exc.lineno})") from exc


def _validate(model: type[M], data: Any, source: str) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "top level"
        raise ProgramSpecError(f"{source}: {where}: {first['msg']}") from exc
