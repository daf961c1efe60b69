"""DSPy programs on the real control plane: the example's programs reach the runtime's
ConfigMap, an edit to the compiled program follows without touching the pods, and a missing
compiled program is said in ProgramsReady until it appears."""

import json
from typing import Any

import yaml

from tests.controlplane.cluster import ControlPlane
from tests.operator.harness import REPO, OperatorProcess, condition, get_json, wait_until
from tests.operator.test_modelservice_e2e import apply, modelservice

EXAMPLE = REPO / "examples" / "modelservice-program.yaml"


def programs(cp: ControlPlane, namespace: str, service: str) -> dict[str, dict[str, Any]]:
    config = get_json(cp, "configmap", f"{service}-runtime", "-n", namespace) or {}
    text = config.get("data", {}).get("programs.json")
    return {p["name"]: p for p in json.loads(text)["programs"]} if text else {}


def programs_ready(
    cp: ControlPlane, namespace: str, service: str, status: str
) -> dict[str, Any] | None:
    cond = condition(get_json(cp, "modelservice", service, "-n", namespace), "ProgramsReady")
    return cond if cond and cond["status"] == status else None


def test_compiled_program_edits_reach_the_runtime_without_a_rollout(
    control_plane: ControlPlane, operator: OperatorProcess, namespace: str
) -> None:
    cp = control_plane
    cp.kubectl("apply", "-n", namespace, "-f", str(EXAMPLE))
    served = wait_until(
        lambda: len(found := programs(cp, namespace, "tiny-programs")) == 2 and found,
        30,
        f"programs.json with both programs\n{operator.log()}",
    )
    assert served["qa"]["module"] == "chain_of_thought"
    assert served["sentiment"]["signature"] == "text -> sentiment"
    assert served["sentiment"]["demos"][0]["sentiment"] == "positive"
    cond = wait_until(lambda: programs_ready(cp, namespace, "tiny-programs", "True"), 15, "ready")
    assert cond["message"] == "the runtime serves: qa, sentiment"
    before = get_json(cp, "deployment", "tiny-programs", "-n", namespace)
    assert before is not None
    args = before["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--programs-file") + 1] == "/etc/modelkube/adapters/programs.json"

    compiled = next(d for d in yaml.safe_load_all(EXAMPLE.read_text()) if d["kind"] == "ConfigMap")
    program = json.loads(compiled["data"]["sentiment.json"])
    program["instructions"] = "Answer with one word."
    compiled["data"]["sentiment.json"] = json.dumps(program)
    apply(cp, namespace, compiled)
    wait_until(
        lambda: (
            programs(cp, namespace, "tiny-programs")["sentiment"].get("instructions")
            == "Answer with one word."
        ),
        15,
        f"the edited program in programs.json\n{operator.log()}",
    )
    after = get_json(cp, "deployment", "tiny-programs", "-n", namespace)
    assert after is not None
    assert after["metadata"]["generation"] == before["metadata"]["generation"]
    assert after["spec"]["template"] == before["spec"]["template"]


def test_a_missing_compiled_program_is_said_until_its_configmap_appears(
    control_plane: ControlPlane, operator: OperatorProcess, namespace: str
) -> None:
    cp = control_plane
    ref = {"name": "later", "key": "program.json"}
    spec = {"programs": [{"name": "late", "signature": "question -> answer", "compiledRef": ref}]}
    apply(cp, namespace, modelservice("waits", **spec))
    cond = wait_until(
        lambda: programs_ready(cp, namespace, "waits", "False"), 30, f"False\n{operator.log()}"
    )
    assert cond["reason"] == "ProgramConfigMissing"
    assert cond["message"] == "late: ConfigMap later does not exist"
    assert programs(cp, namespace, "waits") == {}

    configmap = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "later"},
        "data": {"program.json": json.dumps({"demos": [{"question": "1+1?", "answer": "2"}]})},
    }
    apply(cp, namespace, configmap)
    wait_until(lambda: programs_ready(cp, namespace, "waits", "True"), 15, "ProgramsReady True")
    assert programs(cp, namespace, "waits")["late"]["demos"] == [
        {"question": "1+1?", "answer": "2"}
    ]

    configmap["data"] = {"program.json": "{broken"}
    apply(cp, namespace, configmap)
    cond = wait_until(lambda: programs_ready(cp, namespace, "waits", "False"), 15, "False again")
    assert cond["reason"] == "ProgramConfigInvalid"
    assert cond["message"].startswith("late: ConfigMap later key program.json: ")
