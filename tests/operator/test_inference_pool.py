"""The InferencePool builder (pure): the service's pods on the runtime's port, for the endpoint
picker the spec names (or the upstream chart's <name>-epp), only when asked for and served."""

from modelkube_operator.api.modelservice import ModelServiceSpec
from modelkube_operator.builders.adapters import AdapterPlan
from modelkube_operator.builders.common import RUNTIME_PORT, Owner, selector_labels
from modelkube_operator.builders.inference_pool import build_inference_pool
from modelkube_operator.builders.programs import ProgramPlan
from modelkube_operator.reconcilers.modelservice import OptionalCRDs, desired_children

OWNER = Owner("modelkube.io/v1alpha1", "ModelService", "chat", "team-a", "uid-1", 3)


def spec(**extra: object) -> ModelServiceSpec:
    return ModelServiceSpec.model_validate({"model": {"uri": "builtin://tiny"}, **extra})


def test_the_pool_selects_the_services_pods_on_the_runtime_port_for_its_epp() -> None:
    pool = build_inference_pool(OWNER, spec(inferencePool={}), crd_present=True)
    assert pool is not None
    assert (pool["apiVersion"], pool["kind"]) == ("inference.networking.k8s.io/v1", "InferencePool")
    assert pool["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    assert pool["spec"] == {
        "selector": {"matchLabels": selector_labels(OWNER)},
        "targetPorts": [{"number": RUNTIME_PORT}],
        "endpointPickerRef": {"name": "chat-epp", "port": {"number": 9002}},
    }


def test_a_named_endpoint_picker_is_used_as_given() -> None:
    named = spec(inferencePool={"endpointPicker": "shared-epp", "endpointPickerPort": 9102})
    pool = build_inference_pool(OWNER, named, crd_present=True)
    assert pool is not None
    assert pool["spec"]["endpointPickerRef"] == {"name": "shared-epp", "port": {"number": 9102}}


def test_no_pool_unless_asked_for_and_its_crd_is_served() -> None:
    assert build_inference_pool(OWNER, spec(), crd_present=True) is None
    assert build_inference_pool(OWNER, spec(inferencePool={}), crd_present=False) is None
    wanted = desired_children(OWNER, spec(inferencePool={}), AdapterPlan(), ProgramPlan())
    assert wanted["InferencePool"] is None
    served = OptionalCRDs(inference_pools=True)
    assert desired_children(OWNER, spec(inferencePool={}), AdapterPlan(), ProgramPlan(), served)[
        "InferencePool"
    ]
