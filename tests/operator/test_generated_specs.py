"""Generated ModelService and FineTuneJob specs, of every shape their CRDs' schemas accept,
through the operator's pure half: a spec is either refused with a readable message (the
pydantic model's CEL-equivalent checks, shown in status) or it builds every child and every
status field without an exception, whatever the FineTuneJobs and program ConfigMaps it names
hold. A builder that raised would crash-loop the reconcile with a traceback in the operator's
log and nothing in status.

Derandomized, as the other generated-input tests; MODELKUBE_FUZZ_EXAMPLES explores further."""

import json
import os
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from modelkube_operator.api.crd import structural_schema
from modelkube_operator.api.finetunejob import FineTuneJobSpec
from modelkube_operator.api.modelservice import SERVICE_NAME, ModelServiceSpec
from modelkube_operator.builders.adapters import SERVICE_LABEL, plan_adapters
from modelkube_operator.builders.common import Owner
from modelkube_operator.builders.networking import service_name_problem
from modelkube_operator.builders.programs import compiled_sources, plan_programs
from modelkube_operator.builders.training import build_job, build_trainer_rbac
from modelkube_operator.reconcilers.common import spec_error
from modelkube_operator.reconcilers.modelservice import (
    OptionalCRDs,
    desired_children,
    desired_status,
)
from pydantic import ValidationError

from tests.operator.schema_strategies import JSON, from_schema

GENERATED = settings(
    max_examples=int(os.environ.get("MODELKUBE_FUZZ_EXAMPLES", "150")),
    deadline=None,
    derandomize="MODELKUBE_FUZZ_EXAMPLES" not in os.environ,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
API_VERSION = "modelkube.io/v1alpha1"
NAMESPACE = "team-a"

names = st.from_regex(SERVICE_NAME, fullmatch=True).filter(lambda s: len(s) <= 63)
MODELSERVICE_SPECS = from_schema(structural_schema(ModelServiceSpec))
FINETUNEJOB_SPECS = from_schema(structural_schema(FineTuneJobSpec))


@st.composite
def model_services(draw: st.DrawFn) -> dict[str, Any]:
    """A spec the schema accepts, serving either a model or an upstream (a spec with both or
    neither is refused by a CEL rule on the API server, before the operator sees it)."""
    spec: dict[str, Any] = draw(MODELSERVICE_SPECS)
    if "model" in spec and "upstream" in spec:
        del spec[draw(st.sampled_from(["model", "upstream"]))]
    if "model" not in spec and "upstream" not in spec:
        spec["model"] = {"uri": "builtin://tiny"}
    return spec


conditions = st.lists(
    st.fixed_dictionaries(
        {"type": st.sampled_from(["Succeeded", "Failed", "Running"]),
         "status": st.sampled_from(["True", "False", "Unknown"])}
    ),
    max_size=3,
)  # fmt: skip
job_status = st.fixed_dictionaries(
    {},
    optional={
        "conditions": conditions,
        "adapterURI": st.sampled_from(["pvc://adapters/a", "hf://org/a", ""]),
        "progress": st.fixed_dictionaries({}, optional={"percent": JSON}),
    },
)


@st.composite
def fine_tune_jobs(draw: st.DrawFn, service: str, spec: dict[str, Any]) -> dict[str, Any]:
    """FineTuneJobs by name: those the adapters name (some missing), and perhaps one labelled
    for the service, as the runtime's fine-tuning API makes them."""
    refs = [a["fineTuneJobRef"]["name"] for a in spec.get("adapters", []) if "fineTuneJobRef" in a]
    labelled = draw(st.lists(names, max_size=1))
    jobs = {}
    for name in [*refs, *labelled]:
        if draw(st.booleans()) or name in labelled:
            labels = {SERVICE_LABEL: service} if name in labelled else {}
            jobs[name] = {
                "metadata": {"name": name, "labels": labels},
                "spec": draw(FINETUNEJOB_SPECS),
                "status": draw(job_status),
            }
    return jobs


program_text = st.one_of(
    st.text(max_size=20),
    JSON.map(json.dumps),
    st.fixed_dictionaries(
        {}, optional={"instructions": JSON, "demos": JSON, "programs": st.lists(JSON, max_size=2)}
    ).map(json.dumps),
)


@st.composite
def program_configmaps(draw: st.DrawFn, spec: ModelServiceSpec) -> dict[str, Any]:
    """The ConfigMaps the programs' compiledRefs name (some missing), holding any text."""
    found = {}
    for name in compiled_sources(spec):
        if draw(st.booleans()):
            keys = {p.compiled_ref.key for p in spec.programs if p.compiled_ref is not None}
            found[name] = {"data": {key: draw(program_text) for key in keys}}
    return found


def _check_children(children: dict[str, Any]) -> None:
    for kind, obj in children.items():
        if obj is None:
            continue
        assert obj["kind"] == kind and obj["apiVersion"], obj
        assert obj["metadata"]["name"] and obj["metadata"]["namespace"] == NAMESPACE, obj
        json.dumps(obj)  # what is applied is JSON


@GENERATED
@given(data=st.data(), name=names, raw=model_services())
def test_a_generated_modelservice_is_refused_readably_or_builds_everything(
    data: st.DataObject, name: str, raw: dict[str, Any]
) -> None:
    try:
        spec = ModelServiceSpec.model_validate(raw)
    except ValidationError as exc:
        message = spec_error(exc)
        assert message and "\n" not in message and "Traceback" not in message, message
        event("refused")
        return
    event("built")
    owner = Owner(API_VERSION, "ModelService", name, NAMESPACE, "uid-1", 1)
    assert service_name_problem(name) == ""
    plan = plan_adapters(name, spec, data.draw(fine_tune_jobs(name, raw)))
    programs = plan_programs(spec, data.draw(program_configmaps(spec)))
    crds = OptionalCRDs(
        data.draw(st.booleans()), data.draw(st.booleans()), data.draw(st.booleans())
    )
    children = desired_children(owner, spec, plan, programs, crds)
    _check_children(children)
    deployment = children["Deployment"]
    assert deployment is not None
    deployment["status"] = data.draw(
        st.fixed_dictionaries(
            {},
            optional={
                k: st.integers(0, 5)
                for k in ("replicas", "readyReplicas", "updatedReplicas", "availableReplicas")
            },
        )
    )
    missing = data.draw(st.lists(st.sampled_from(plan.claims), unique=True)) if plan.claims else []
    for built in (deployment, {}):  # the Deployment as read back, and none yet
        conds, fields = desired_status(owner, spec, built, plan, programs, missing)
        assert conds and all(c.type and c.reason for c in conds)
        assert fields["servedModels"][0] == name
        json.dumps(fields)
    json.loads(plan.file())
    json.loads(programs.file())


@GENERATED
@given(name=names, raw=FINETUNEJOB_SPECS)
def test_a_generated_finetunejob_is_refused_readably_or_builds_its_job(
    name: str, raw: dict[str, Any]
) -> None:
    try:
        spec = FineTuneJobSpec.model_validate(raw)
    except ValidationError as exc:
        message = spec_error(exc)
        assert message and "Traceback" not in message, message
        event("refused")
        return
    event("built")
    owner = Owner(API_VERSION, "FineTuneJob", name, NAMESPACE, "uid-1", 1)
    job = build_job(owner, spec)
    _check_children({"Job": job, **{o["kind"]: o for o in build_trainer_rbac(owner)}})
