"""kwok's Stage configuration: nodes become Ready, pods Running, Job and `helm test` pods finish.

A FineTuneJob's training pod keeps running until a test annotates it with the exit code its
trainer had (`modelkube.io/test-exit-code`): the trainer itself runs in the test process, and
kwok then finishes the pod, so the real Job controller drives the Job to Complete or Failed.
"""

from pathlib import Path
from typing import Any

import yaml

from tests.controlplane.binaries import MODULES, binary_dir

EXIT_CODE_ANNOTATION = "modelkube.io/test-exit-code"
MESSAGE_ANNOTATION = "modelkube.io/test-termination-message"
HELM_HOOK = '.metadata.annotations.["helm.sh/hook"]'
_FINETUNE_LABEL = '.metadata.labels.["modelkube.io/finetunejob"]'
_EXIT_CODE = f'.metadata.annotations.["{EXIT_CODE_ANNOTATION}"]'


def _stage_dir() -> Path:
    return binary_dir(next(m for m in MODULES if m.directory == "kwok"))


def write_stages(workdir: Path) -> Path:
    docs: list[dict[str, Any]] = []
    for name in ("node-initialize.yaml", "pod-ready.yaml", "pod-delete.yaml"):
        docs.extend(yaml.safe_load_all((_stage_dir() / name).read_text()))
    complete = yaml.safe_load((_stage_dir() / "pod-complete.yaml").read_text())
    docs.append(_not_finetune(complete))
    docs.append(_finishing(complete))
    docs.append(_helm_test(complete))
    path = workdir / "kwok-stages.yaml"
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return path


def _not_finetune(stage: dict[str, Any]) -> dict[str, Any]:
    stage["spec"]["selector"]["matchExpressions"].append(
        {"key": _FINETUNE_LABEL, "operator": "DoesNotExist"}
    )
    return stage


def _finishing(complete: dict[str, Any]) -> dict[str, Any]:
    template: str = complete["spec"]["next"]["statusTemplate"]
    expressions = [
        e for e in complete["spec"]["selector"]["matchExpressions"] if e["key"] != _FINETUNE_LABEL
    ]
    return {
        "apiVersion": complete["apiVersion"],
        "kind": "Stage",
        "metadata": {"name": "finetune-pod-outcome"},
        "spec": {
            "resourceRef": complete["spec"]["resourceRef"],
            "selector": {
                "matchExpressions": [
                    *expressions,
                    {"key": _FINETUNE_LABEL, "operator": "Exists"},
                    {"key": _EXIT_CODE, "operator": "Exists"},
                ]
            },
            "next": {"statusTemplate": _outcome_template(template)},
        },
    }


def _outcome_template(template: str) -> str:
    """The pod exits with the code the test annotated it with, and its termination message."""
    code = f'(index $root.metadata.annotations "{EXIT_CODE_ANNOTATION}")'  # $root: the pod
    message = f'(index $root.metadata.annotations "{MESSAGE_ANNOTATION}")'
    failed = f'(ne "0" {code})'
    reason_line = next(line for line in template.splitlines() if "reason: Completed" in line)
    indent = reason_line[: len(reason_line) - len(reason_line.lstrip())]
    return (
        template.replace("exitCode: 0", f"exitCode: {{{{ {code} }}}}")
        .replace(
            "reason: Completed",
            f"reason: {{{{ if {failed} }}}}Error{{{{ else }}}}Completed{{{{ end }}}}\n"
            f"{indent}message: {{{{ {message} | Quote }}}}",
        )
        .replace(
            "phase: Succeeded",
            f"phase: {{{{ if {failed} }}}}Failed{{{{ else }}}}Succeeded{{{{ end }}}}",
        )
    )


def _helm_test(complete: dict[str, Any]) -> dict[str, Any]:
    """`helm test` pods have no Job: they succeed once Running, as their check would."""
    kept = [
        e
        for e in complete["spec"]["selector"]["matchExpressions"]
        if e["key"] not in (".metadata.ownerReferences.[].kind", _FINETUNE_LABEL)
    ]
    return {
        "apiVersion": complete["apiVersion"],
        "kind": "Stage",
        "metadata": {"name": "helm-test-pod-complete"},
        "spec": {
            "resourceRef": complete["spec"]["resourceRef"],
            "selector": {
                "matchExpressions": [
                    *kept,
                    {"key": HELM_HOOK, "operator": "In", "values": ["test", "test-success"]},
                ]
            },
            "next": complete["spec"]["next"],
        },
    }
