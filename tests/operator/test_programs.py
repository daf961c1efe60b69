"""Declarative DSPy programs: resolved from the spec and ConfigMaps into the runtime's file,
which the runtime reloads, so it never rolls the pods."""

import json
from typing import Any

import pytest
from modelkube_operator.api.modelservice import ModelServiceSpec
from modelkube_operator.builders.adapters import AdapterPlan
from modelkube_operator.builders.common import Owner
from modelkube_operator.builders.programs import ProgramPlan, compiled_sources, plan_programs
from modelkube_operator.builders.runtime import build_configmap, build_deployment, settings_hash
from modelkube_operator.reconcilers.programs import referenced_configmaps, source_state
from modelkube_operator.status.modelservice import programs_condition
from pydantic import ValidationError

OWNER = Owner("modelkube.io/v1alpha1", "ModelService", "chat", "team-a", "uid-1", 3)
QA = {"name": "qa", "signature": "question -> answer"}
COMPILED = {"name": "tuned", "compiledRef": {"name": "compiled", "key": "tuned.json"}}
TUNED = {
    "name": "tuned",
    "signature": "question -> answer",
    "module": "chain_of_thought",
    "instructions": "Answer in one word.",
    "demos": [{"question": "Sky?", "answer": "blue"}],
}


def spec(*programs: dict[str, Any]) -> ModelServiceSpec:
    return ModelServiceSpec.model_validate(
        {"model": {"uri": "builtin://tiny"}, "programs": list(programs)}
    )


def configmap(**data: str) -> dict[str, Any]:
    return {"metadata": {"name": "compiled"}, "data": data}


def tuned(**extra: Any) -> dict[str, Any]:
    return {**COMPILED, "signature": "text -> label", **extra}


def test_spec_only_programs_are_passed_as_written() -> None:
    plan = plan_programs(spec(QA, {**QA, "name": "cot", "module": "chain_of_thought"}), {})
    assert plan.programs == (
        {"name": "qa", "signature": "question -> answer", "module": "predict"},
        {"name": "cot", "signature": "question -> answer", "module": "chain_of_thought"},
    )
    assert plan.problems == ()


def test_compiled_program_brings_its_demos_and_instructions_but_not_its_signature() -> None:
    plan = plan_programs(
        spec(tuned()), {"compiled": configmap(**{"tuned.json": json.dumps(TUNED)})}
    )
    assert plan.programs == (
        {
            "name": "tuned",
            "signature": "text -> label",
            "module": "predict",
            "instructions": "Answer in one word.",
            "demos": [{"question": "Sky?", "answer": "blue"}],
        },
    )


def test_the_specs_instructions_win_over_the_compiled_ones() -> None:
    sources = {"compiled": configmap(**{"tuned.json": json.dumps(TUNED)})}
    (program,) = plan_programs(spec(tuned(instructions="Be brief.")), sources).programs
    assert program["instructions"] == "Be brief."
    assert program["demos"] == TUNED["demos"]


def test_a_programs_file_in_the_configmap_gives_the_program_of_that_name() -> None:
    other = {**TUNED, "name": "other", "instructions": "Other."}
    text = json.dumps({"programs": [other, TUNED]})
    sources = {"compiled": configmap(**{"tuned.json": text})}
    (program,) = plan_programs(spec(tuned()), sources).programs
    assert program["instructions"] == "Answer in one word."


@pytest.mark.parametrize(
    ("sources", "reason", "message"),
    [
        ({}, "ProgramConfigMissing", "tuned: ConfigMap compiled does not exist"),
        (
            {"compiled": configmap(other="{}")},
            "ProgramConfigMissing",
            "tuned: ConfigMap compiled has no key tuned.json",
        ),
        (
            {"compiled": configmap(**{"tuned.json": "{not json"})},
            "ProgramConfigInvalid",
            "tuned: ConfigMap compiled key tuned.json: Expecting property name",
        ),
        (
            {"compiled": configmap(**{"tuned.json": "[1, 2]"})},
            "ProgramConfigInvalid",
            "tuned: ConfigMap compiled key tuned.json: not a JSON object",
        ),
        (
            {"compiled": configmap(**{"tuned.json": '{"demos": [1]}'})},
            "ProgramConfigInvalid",
            "demos must be a list of objects",
        ),
        (
            {"compiled": configmap(**{"tuned.json": '{"instructions": 3}'})},
            "ProgramConfigInvalid",
            "instructions must be a string",
        ),
    ],
)
def test_an_unusable_compiled_program_is_left_out_and_said_so(
    sources: dict[str, Any], reason: str, message: str
) -> None:
    plan = plan_programs(spec(QA, tuned()), sources)
    assert [p["name"] for p in plan.programs] == ["qa"]
    cond = programs_condition([p["name"] for p in plan.programs], plan.problems)
    assert (cond.type, cond.status, cond.reason) == ("ProgramsReady", False, reason)
    assert message in cond.message


def test_programs_condition_when_all_are_served_or_none_declared() -> None:
    served = programs_condition(["qa", "tuned"], ())
    assert (served.status, served.reason) == (True, "ProgramsHandedOff")
    assert served.message == "the runtime serves: qa, tuned"
    none = programs_condition([], ())
    assert (none.status, none.reason) == (True, "NoPrograms")


def test_programs_file_is_mounted_beside_the_adapters_and_never_rolls_the_pods() -> None:
    s = spec(QA)
    plain = build_configmap(OWNER, s, AdapterPlan(), ProgramPlan())
    plan = plan_programs(s, {})
    with_programs = build_configmap(OWNER, s, AdapterPlan(), plan)
    assert json.loads(with_programs["data"]["programs.json"]) == {"programs": list(plan.programs)}
    assert settings_hash(plain) == settings_hash(with_programs)
    pod = build_deployment(OWNER, s, AdapterPlan(), "h")["spec"]["template"]["spec"]
    args = pod["containers"][0]["args"]
    assert args[args.index("--programs-file") + 1] == "/etc/modelkube/adapters/programs.json"
    (volume,) = [v for v in pod["volumes"] if v["name"] == "adapters"]
    assert volume["configMap"]["items"] == [
        {"key": "adapters.json", "path": "adapters.json"},
        {"key": "programs.json", "path": "programs.json"},
    ]


def test_without_programs_there_is_no_file_and_no_flag() -> None:
    s = ModelServiceSpec.model_validate({"model": {"uri": "builtin://tiny"}})
    assert "programs.json" not in build_configmap(OWNER, s, AdapterPlan(), ProgramPlan())["data"]
    pod = build_deployment(OWNER, s, AdapterPlan(), "h")["spec"]["template"]["spec"]
    assert "--programs-file" not in pod["containers"][0]["args"]


def test_referenced_configmaps_come_from_compiled_refs_only() -> None:
    s = spec(QA, tuned(), {**tuned(), "name": "again"})
    assert compiled_sources(s) == ["compiled"]
    body = {"spec": s.model_dump(by_alias=True, exclude_none=True)}
    assert referenced_configmaps(body) == {"compiled"}
    assert referenced_configmaps({"spec": {"programs": [QA]}}) == set()


def test_a_configmap_matters_for_its_data_only() -> None:
    a = {"metadata": {"labels": {"x": "1"}}, "data": {"k": "v"}}
    b = {"metadata": {"labels": {"x": "2"}}, "data": {"k": "v"}}
    assert source_state(a) == source_state(b)
    assert source_state(a) != source_state({"data": {"k": "w"}})


def test_program_names_and_modules_are_validated() -> None:
    with pytest.raises(ValidationError):
        spec({**QA, "name": "Bad_Name"})
    with pytest.raises(ValidationError):
        spec({**QA, "module": "react"})
    with pytest.raises(ValidationError):
        spec({**QA, "signature": "q"})
