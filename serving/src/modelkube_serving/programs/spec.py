"""Declarative DSPy programs: what a program is, read from JSON, never from pickled code.

`{"programs": [{"name", "signature", "module", "instructions"?, "demos"?}]}`: the signature is
DSPy's string form (`"question -> answer"`, typed fields allowed: `"question: str -> answer:
int"`), the module `predict` or `chain_of_thought`, and the instructions and demos are what a
DSPy optimizer produced (`modelkube optimize` writes this form).
"""

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

NAME = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"


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
    try:
        parsed = ProgramsFile.model_validate(json.loads(text))
    except json.JSONDecodeError as exc:
        raise ProgramSpecError(f"{source}: not valid JSON: {exc.msg} (line {exc.lineno})") from exc
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ProgramSpecError(f"{source}: {where}: {first['msg']}") from exc
    names = [p.name for p in parsed.programs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ProgramSpecError(f"{source}: program names must be unique: {', '.join(duplicates)}")
    return parsed.programs
