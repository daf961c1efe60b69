"""When a FineTuneJob's change matters to the ModelServices that serve its adapter."""

from collections.abc import Mapping
from typing import Any

from modelkube_operator.builders.adapters import SERVICE_LABEL


def handoff_state(job: Mapping[str, Any]) -> tuple[str, bool, bool, bool]:
    """What a serving ModelService reads of a job: its adapter, whether it failed or is
    suspended, and that it exists. Progress updates leave it unchanged, so they cost nothing."""
    status = job.get("status") or {}
    failed = any(
        c.get("type") == "Failed" and c.get("status") == "True"
        for c in status.get("conditions", [])
    )
    suspended = bool((job.get("spec") or {}).get("suspend"))
    return (str(status.get("adapterURI", "")), failed, suspended, True)


def serves_job(service: Mapping[str, Any], job: str, job_labels: Mapping[str, str]) -> bool:
    if job_labels.get(SERVICE_LABEL) == service["metadata"]["name"]:
        return True
    adapters = (service.get("spec") or {}).get("adapters") or []
    return any((a.get("fineTuneJobRef") or {}).get("name") == job for a in adapters)
