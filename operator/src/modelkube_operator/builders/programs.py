"""The DSPy programs a ModelService hands its runtime, resolved from the spec and ConfigMaps.

A program is its spec entry, plus the instructions and demos of a compiled program (the JSON
`modelkube optimize` writes) in a ConfigMap key when `compiledRef` names one. The spec's
signature and module always win, and so do its instructions when set. The runtime polls the
resulting file in its ConfigMap, so an edit to a compiled program reaches it without a restart.
A compiled program that is missing or unreadable leaves its program out, and the plan says why.
"""

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from modelkube_operator.api.modelservice import ModelServiceSpec
from modelkube_operator.api.programs import Program

PROGRAMS_KEY = "programs.json"
MISSING = "ProgramConfigMissing"
INVALID = "ProgramConfigInvalid"
# The runtime's own limits (modelkube_serving.programs.spec): past them it rejects the whole file.
MAX_INSTRUCTIONS = 65536
MAX_DEMOS = 64


@dataclass(frozen=True)
class ProgramPlan:
    programs: tuple[dict[str, Any], ...] = ()
    problems: tuple[tuple[str, str], ...] = ()  # (reason, "name: why")

    def file(self) -> str:
        return json.dumps({"programs": list(self.programs)}, indent=2, sort_keys=True) + "\n"


def compiled_sources(spec: ModelServiceSpec) -> list[str]:
    """The ConfigMaps the programs' compiled forms come from, by name."""
    return sorted({p.compiled_ref.name for p in spec.programs if p.compiled_ref is not None})


def plan_programs(
    spec: ModelServiceSpec, configmaps: Mapping[str, Mapping[str, Any]]
) -> ProgramPlan:
    """`configmaps`: the ConfigMaps `compiled_sources` names that exist, by name."""
    programs: list[dict[str, Any]] = []
    problems: list[tuple[str, str]] = []
    for program in spec.programs:
        compiled, problem = _compiled(program, configmaps)
        if problem is not None:
            problems.append((problem[0], f"{program.name}: {problem[1]}"))
            continue
        programs.append(_merge(program, compiled))
    return ProgramPlan(tuple(programs), tuple(problems))


def _compiled(
    program: Program, configmaps: Mapping[str, Mapping[str, Any]]
) -> tuple[Mapping[str, Any], tuple[str, str] | None]:
    ref = program.compiled_ref
    if ref is None:
        return {}, None
    configmap = configmaps.get(ref.name)
    if configmap is None:
        return {}, (MISSING, f"ConfigMap {ref.name} does not exist")
    text = (configmap.get("data") or {}).get(ref.key)
    if text is None:
        return {}, (MISSING, f"ConfigMap {ref.name} has no key {ref.key}")
    try:
        compiled = _select(json.loads(text), program.name)
    except ValueError as exc:  # json.JSONDecodeError is a ValueError too
        return {}, (INVALID, f"ConfigMap {ref.name} key {ref.key}: {exc}")
    return compiled, None


def _select(data: Any, name: str) -> Mapping[str, Any]:
    """The compiled program: a program object, or the one named `name` in a programs file."""
    if isinstance(data, dict) and isinstance(data.get("programs"), list):
        named = [p for p in data["programs"] if isinstance(p, dict) and p.get("name") == name]
        if not named and len(data["programs"]) != 1:
            raise ValueError(f"no program named {name} in it")
        data = named[0] if named else data["programs"][0]
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    instructions = data.get("instructions")
    if instructions is not None and not isinstance(instructions, str):
        raise ValueError("instructions must be a string")
    if instructions is not None and len(instructions) > MAX_INSTRUCTIONS:
        raise ValueError(f"instructions longer than {MAX_INSTRUCTIONS} characters")
    demos = data.get("demos", [])
    if not isinstance(demos, list) or not all(isinstance(d, dict) for d in demos):
        raise ValueError("demos must be a list of objects")
    if len(demos) > MAX_DEMOS:
        raise ValueError(f"more than {MAX_DEMOS} demos")
    return data


def _merge(program: Program, compiled: Mapping[str, Any]) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": program.name,
        "signature": program.signature,
        "module": program.module,
    }
    instructions = program.instructions or compiled.get("instructions")
    if instructions:
        entry["instructions"] = instructions
    if compiled.get("demos"):
        entry["demos"] = compiled["demos"]
    return entry
