"""A ModelService's conditions from its Deployment's real state."""

from collections.abc import Sequence
from typing import Any

from modelkube_operator.api.modelservice import ModelServiceSpec
from modelkube_operator.status.conditions import Cond


def deployment_conditions(spec: ModelServiceSpec, deployment: dict[str, Any] | None) -> list[Cond]:
    if deployment is None:
        return [
            Cond("Ready", False, "DeploymentMissing", "the runtime Deployment does not exist yet"),
            Cond("Progressing", True, "Creating", "creating the runtime Deployment"),
            Cond("Degraded", False, "AsExpected"),
        ]
    status = deployment.get("status", {})
    desired = deployment.get("spec", {}).get("replicas", spec.min_replicas())
    ready = status.get("readyReplicas", 0)
    updated = status.get("updatedReplicas", 0)
    stale = status.get("observedGeneration", 0) < deployment["metadata"].get("generation", 0)
    dep_conditions = {c["type"]: c for c in status.get("conditions", [])}
    if desired == 0 and spec.scaled_to_zero():
        return [
            Cond(
                "Ready",
                True,
                "ScaledToZero",
                "idle, scaled to zero: the gateway starts a replica on the next request",
            ),
            Cond("Progressing", False, "ScaledToZero", "no replicas while idle"),
            Cond("Degraded", False, "AsExpected"),
        ]
    return [
        _ready(desired, ready),
        _progressing(desired, ready, updated, stale),
        _degraded(dep_conditions, desired, ready),
    ]


def _ready(desired: int, ready: int) -> Cond:
    if desired == 0:
        return Cond("Ready", False, "ScaledToZero", "replicas is 0: nothing serves requests")
    if ready >= desired:
        return Cond("Ready", True, "AllReplicasReady", f"{ready}/{desired} replicas ready")
    if ready > 0:
        return Cond("Ready", True, "SomeReplicasReady", f"{ready}/{desired} replicas ready")
    return Cond("Ready", False, "NoReplicasReady", f"0/{desired} replicas ready")


def _progressing(desired: int, ready: int, updated: int, stale: bool) -> Cond:
    if stale or updated < desired or ready < desired:
        return Cond(
            "Progressing", True, "RollingOut", f"{updated}/{desired} updated, {ready} ready"
        )
    return Cond("Progressing", False, "RolloutComplete", "every replica runs the current spec")


def _degraded(conditions: dict[str, dict[str, Any]], desired: int, ready: int) -> Cond:
    failure = conditions.get("ReplicaFailure")
    if failure and failure.get("status") == "True":
        return Cond("Degraded", True, "ReplicaFailure", failure.get("message", ""))
    progressing = conditions.get("Progressing")
    if progressing and progressing.get("reason") == "ProgressDeadlineExceeded":
        return Cond("Degraded", True, "ProgressDeadlineExceeded", progressing.get("message", ""))
    available = conditions.get("Available")
    if 0 < ready < desired and available and available.get("status") == "False":
        # Still serving (Ready), but with fewer replicas than the rollout strategy allows to
        # be missing: 1 of 4, say. At start-up (none ready yet) Ready=False says it already.
        return Cond(
            "Degraded",
            True,
            "MinimumReplicasUnavailable",
            f"only {ready}/{desired} replicas ready: {available.get('message', '')}".strip(": "),
        )
    return Cond("Degraded", False, "AsExpected")


def auth_condition(spec: ModelServiceSpec) -> Cond:
    if spec.auth is None:
        return Cond(
            "APIKeysRequired",
            False,
            "NoAPIKeys",
            "spec.auth is not set: anyone who can reach the Service can use the model",
        )
    return Cond(
        "APIKeysRequired",
        True,
        "SecretConfigured",
        f"keys from Secret {spec.auth.api_keys_secret_ref.name}",
    )


def served_models(name: str, adapters: Sequence[str]) -> list[str]:
    return [name, *(f"{name}:{adapter}" for adapter in adapters)]


def adapters_condition(ready: Sequence[str], waiting: Sequence[str]) -> Cond:
    """`ready`: adapter names handed to the runtime; `waiting`: "name: why" for the others."""
    if waiting:
        return Cond("AdaptersReady", False, "AdaptersWaiting", "; ".join(waiting))
    if not ready:
        return Cond("AdaptersReady", True, "NoAdapters", "no adapters declared")
    return Cond(
        "AdaptersReady", True, "AdaptersHandedOff", f"the runtime loads: {', '.join(ready)}"
    )


def programs_condition(served: Sequence[str], problems: Sequence[tuple[str, str]]) -> Cond:
    """`served`: program names handed to the runtime; `problems`: (reason, "name: why") for
    the programs left out."""
    if problems:
        reason = problems[0][0]
        return Cond("ProgramsReady", False, reason, "; ".join(m for _, m in problems))
    if not served:
        return Cond("ProgramsReady", True, "NoPrograms", "no programs declared")
    return Cond(
        "ProgramsReady", True, "ProgramsHandedOff", f"the runtime serves: {', '.join(served)}"
    )


def summary_fields(spec: ModelServiceSpec, deployment: dict[str, Any] | None) -> dict[str, str]:
    """The status fields `kubectl get` prints: what is served, ready/desired, the image."""
    model = spec.model.uri if spec.model is not None else ""
    if spec.upstream is not None:
        model = f"{spec.upstream.provider}/{spec.upstream.model}"
    dep = deployment or {}
    desired = dep.get("spec", {}).get("replicas", spec.min_replicas())
    ready = dep.get("status", {}).get("readyReplicas", 0)
    containers = dep.get("spec", {}).get("template", {}).get("spec", {}).get("containers", [])
    return {
        "model": model,
        "replicasSummary": f"{ready}/{desired}",
        "image": containers[0].get("image", "") if containers else "",
    }
