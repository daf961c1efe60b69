"""kwok's Stage configuration: nodes become Ready, pods Running, Job pods finish.

A FineTuneJob named `fail-*` gets its training pod failed, so tests can drive a failed
Job through the real Job controller.
"""

from pathlib import Path
from typing import Any

import yaml

from tests.controlplane.binaries import MODULES, binary_dir

FAIL_PREFIX = "fail-"
_FINETUNE_LABEL = '.metadata.labels.["modelkube.io/finetunejob"]'


def _stage_dir() -> Path:
    return binary_dir(next(m for m in MODULES if m.directory == "kwok"))


def write_stages(workdir: Path) -> Path:
    docs: list[dict[str, Any]] = []
    for name in ("node-initialize.yaml", "pod-ready.yaml", "pod-delete.yaml"):
        docs.extend(yaml.safe_load_all((_stage_dir() / name).read_text()))
    complete = yaml.safe_load((_stage_dir() / "pod-complete.yaml").read_text())
    docs.append(_without_failing(complete))
    docs.append(_failing(complete))
    path = workdir / "kwok-stages.yaml"
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return path


def _without_failing(stage: dict[str, Any]) -> dict[str, Any]:
    stage["spec"]["selector"]["matchExpressions"].append(
        {"key": _FINETUNE_LABEL, "operator": "DoesNotExist"}
    )
    return stage


def _failing(complete: dict[str, Any]) -> dict[str, Any]:
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
                "matchExpressions": [*expressions, {"key": _FINETUNE_LABEL, "operator": "Exists"}]
            },
            "next": {"statusTemplate": _outcome_template(template)},
        },
    }


def _outcome_template(template: str) -> str:
    """Pods of `fail-*` FineTuneJobs exit 1 and fail; the others succeed as usual."""
    label = '(index $root.metadata.labels "modelkube.io/finetunejob")'  # $root: the pod
    fails = f'(hasPrefix "{FAIL_PREFIX}" {label})'  # sprig: prefix first
    return (
        template.replace(
            "exitCode: 0", f"exitCode: {{{{ if {fails} }}}}1{{{{ else }}}}0{{{{ end }}}}"
        )
        .replace(
            "reason: Completed",
            f"reason: {{{{ if {fails} }}}}Error{{{{ else }}}}Completed{{{{ end }}}}",
        )
        .replace(
            "phase: Succeeded",
            f"phase: {{{{ if {fails} }}}}Failed{{{{ else }}}}Succeeded{{{{ end }}}}",
        )
    )
