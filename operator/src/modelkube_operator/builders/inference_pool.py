"""The InferencePool of the Gateway API Inference Extension, when asked for and its CRD exists:
the service's pods on the runtime's port, for an endpoint picker (EPP) to choose among by the
vLLM-named metrics the runtime exports."""

from modelkube_operator.api.modelservice import ModelServiceSpec
from modelkube_operator.builders.common import (
    RUNTIME_PORT,
    Obj,
    Owner,
    metadata,
    selector_labels,
)
from modelkube_operator.builders.runtime import COMPONENT

API_VERSION = "inference.networking.k8s.io/v1"
EPP_SUFFIX = "-epp"  # the upstream inferencepool chart names its EPP Service <release>-epp


def build_inference_pool(owner: Owner, spec: ModelServiceSpec, crd_present: bool) -> Obj | None:
    pool = spec.inference_pool
    if pool is None or not crd_present:
        return None
    return {
        "apiVersion": API_VERSION,
        "kind": "InferencePool",
        "metadata": metadata(owner, COMPONENT),
        "spec": {
            "selector": {"matchLabels": selector_labels(owner)},
            "targetPorts": [{"number": RUNTIME_PORT}],
            "endpointPickerRef": {
                "name": pool.endpoint_picker or f"{owner.name}{EPP_SUFFIX}",
                "port": {"number": pool.endpoint_picker_port},
            },
        },
    }
