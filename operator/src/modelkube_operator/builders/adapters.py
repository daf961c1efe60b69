"""Which adapters a ModelService serves now, which wait, and what the runtime is told.

An adapter is `{name, uri}` (ready), `{name, fineTuneJobRef}` (ready once that job has
succeeded), or a FineTuneJob labelled `modelkube.io/model-service: <service>` (made by the
runtime's fine-tuning API; served under the job's name). The runtime reads the ready list from
a file in its ConfigMap, which the kubelet refreshes in place: no rollout, no restart.
"""

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from modelkube_operator.api.modelservice import ModelServiceSpec

ADAPTERS_KEY = "adapters.json"
SERVICE_LABEL = "modelkube.io/model-service"
# What the llama.cpp engine serves of a FineTuneJob's methods: GGUF LoRA has no DoRA
# magnitudes and no full weights. (Under `auto` the engine is chosen on the node; there the
# runtime reports the adapter failed, with the same reason.)
LLAMACPP_METHODS = ("lora",)


@dataclass(frozen=True)
class AdapterPlan:
    ready: tuple[tuple[str, str], ...] = ()  # (name, uri)
    waiting: tuple[str, ...] = ()  # "name: why"
    claims: tuple[str, ...] = ()  # PVCs the runtime mounts, read-only, before they are needed

    def file(self) -> str:
        adapters = [{"name": name, "uri": uri} for name, uri in self.ready]
        return json.dumps({"adapters": adapters}, indent=2, sort_keys=True) + "\n"


def plan_adapters(
    service: str, spec: ModelServiceSpec, jobs: Mapping[str, Mapping[str, Any]]
) -> AdapterPlan:
    """`jobs`: the FineTuneJobs of the service's namespace, by name."""
    if spec.upstream is not None:
        return AdapterPlan()  # a hosted model takes no adapters, not even a labelled job's
    ready: list[tuple[str, str]] = []
    waiting: list[str] = []
    claims: set[str] = set()
    wanted: list[tuple[str, str]] = []  # (adapter name, job name)
    for adapter in spec.adapters:
        if adapter.uri is not None:
            ready.append((adapter.name, adapter.uri))
            claims.update(_claim(adapter.uri))
        elif adapter.fine_tune_job_ref is not None:
            wanted.append((adapter.name, adapter.fine_tune_job_ref.name))
    named = {name for name, _ in wanted} | {name for name, _ in ready}
    referenced = {job for _, job in wanted}
    for job_name, labelled in sorted(jobs.items()):
        labels = labelled.get("metadata", {}).get("labels") or {}
        mine = labels.get(SERVICE_LABEL) == service
        if mine and job_name not in referenced and job_name not in named:
            wanted.append((job_name, job_name))
    for name, job_name in wanted:
        job = jobs.get(job_name)
        if job is None:
            waiting.append(f"{name}: FineTuneJob {job_name} does not exist")
            continue
        claims.update(_claim(job.get("spec", {}).get("output", {}).get("uri", "")))
        uri, why = _job_adapter(job_name, job)
        method = job.get("spec", {}).get("method", "lora")
        if spec.runtime.engine == "llamacpp" and method not in LLAMACPP_METHODS:
            uri, why = (
                "",
                (
                    f"FineTuneJob {job_name} trains a {method} adapter, which the llama.cpp engine "
                    "does not serve (it serves lora; use spec.runtime.engine mlx)"
                ),
            )
        if uri:
            ready.append((name, uri))
        else:
            waiting.append(f"{name}: {why}")
    return AdapterPlan(tuple(ready), tuple(waiting), tuple(sorted(claims)))


def _job_adapter(name: str, job: Mapping[str, Any]) -> tuple[str, str]:
    status = job.get("status") or {}
    conditions = {c.get("type"): c for c in status.get("conditions", [])}
    if _true(conditions, "Succeeded") and status.get("adapterURI"):
        return str(status["adapterURI"]), ""
    if _true(conditions, "Failed"):
        return "", f"FineTuneJob {name} failed"
    if job.get("spec", {}).get("suspend"):
        return "", f"FineTuneJob {name} is suspended"
    percent = (status.get("progress") or {}).get("percent", 0)
    return "", f"FineTuneJob {name} is training ({percent}%)"


def _true(conditions: Mapping[str, Mapping[str, Any]], type_: str) -> bool:
    return conditions.get(type_, {}).get("status") == "True"


def _claim(uri: str) -> set[str]:
    return {uri.removeprefix("pvc://").split("/", 1)[0]} if uri.startswith("pvc://") else set()
