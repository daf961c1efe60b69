"""CustomResourceDefinitions generated from the pydantic models (pure functions).

`crds/*.yaml` is this module's output, checked in; a test fails when they drift.
Regenerate with `modelkube crds --write crds/`.
"""

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from modelkube_operator.api import GROUP, VERSION
from modelkube_operator.api.finetunejob import FineTuneJobSpec, FineTuneJobStatus
from modelkube_operator.api.modelservice import SERVICE_NAME, ModelServiceSpec, ModelServiceStatus
from modelkube_operator.api.schema import DNS_LABEL

# Keys a structural schema may carry; everything else pydantic emits (title, ...) is dropped.
_KEEP = {
    "type",
    "description",
    "default",
    "enum",
    "pattern",
    "format",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "maxProperties",
    "items",
    "properties",
    "required",
    "additionalProperties",
    "x-kubernetes-validations",
    "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys",
    "x-kubernetes-preserve-unknown-fields",
    "nullable",
}


@dataclass(frozen=True)
class KindInfo:
    kind: str
    plural: str
    short_names: tuple[str, ...]
    spec: type[BaseModel]
    status: type[BaseModel]
    description: str
    printer_columns: tuple[dict[str, Any], ...]
    # CEL rules on the whole object: the only place a rule can read metadata.name.
    name_rule: tuple[str, str]
    spec_description: str
    status_description: str
    scale: bool = False
    extra_required: tuple[str, ...] = field(default=())


def _ready(type_: str, field_: str = "status") -> str:
    return f'.status.conditions[?(@.type=="{type_}")].{field_}'


MODELSERVICE = KindInfo(
    kind="ModelService",
    plural="modelservices",
    short_names=("ms",),
    spec=ModelServiceSpec,
    status=ModelServiceStatus,
    description="A model served through an OpenAI-compatible API by modelkube's MLX runtime.",
    printer_columns=(
        {"name": "Ready", "type": "string", "jsonPath": _ready("Ready")},
        # status.model: the local model's URI, or provider/model in proxy mode (a printer
        # column takes one JSONPath, so the operator writes the answer into status).
        {"name": "Model", "type": "string", "jsonPath": ".status.model"},
        {
            "name": "Replicas",
            "type": "string",
            "jsonPath": ".status.replicasSummary",
            "description": "Ready replicas / desired replicas.",
        },
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
        {"name": "Engine", "type": "string", "jsonPath": ".spec.runtime.engine", "priority": 1},
        {"name": "Image", "type": "string", "jsonPath": ".status.image", "priority": 1},
        {"name": "URL", "type": "string", "jsonPath": ".status.url", "priority": 1},
        {"name": "Reason", "type": "string", "jsonPath": _ready("Ready", "reason"), "priority": 1},
    ),
    name_rule=(
        f"self.metadata.name.matches(r'{SERVICE_NAME}') && size(self.metadata.name) <= 63",
        "metadata.name must be a DNS-1035 label of at most 63 characters (it names the "
        "Service): lower-case letters, digits and '-', starting with a letter, no dots",
    ),
    spec_description="What to serve and how: the model (or a hosted upstream), adapters, "
    "replicas or autoscaling, the runtime's pod settings, API keys, monitoring, programs.",
    status_description="What the operator observed: conditions (Ready, Progressing, Degraded, "
    "...), replicas, the URL and the model names clients may send.",
    scale=True,
)

FINETUNEJOB = KindInfo(
    kind="FineTuneJob",
    plural="finetunejobs",
    short_names=("ftj",),
    spec=FineTuneJobSpec,
    status=FineTuneJobStatus,
    description="An mlx-lm LoRA, DoRA or full fine-tune, run as a Kubernetes Job.",
    printer_columns=(
        {"name": "Status", "type": "string", "jsonPath": _ready("Succeeded", "reason")},
        {"name": "Progress", "type": "integer", "jsonPath": ".status.progress.percent"},
        {"name": "Iteration", "type": "integer", "jsonPath": ".status.progress.iteration"},
        {"name": "Loss", "type": "string", "jsonPath": ".status.progress.trainLoss"},
        {"name": "Val Loss", "type": "string", "jsonPath": ".status.progress.validationLoss"},
        {"name": "ETA (s)", "type": "integer", "jsonPath": ".status.progress.etaSeconds"},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
        {"name": "Base", "type": "string", "jsonPath": ".spec.baseModel.uri", "priority": 1},
        {"name": "Output", "type": "string", "jsonPath": ".spec.output.uri", "priority": 1},
    ),
    name_rule=(
        f"self.metadata.name.matches(r'{DNS_LABEL}') && size(self.metadata.name) <= 63",
        "metadata.name must be a DNS label of at most 63 characters (it names the Job and "
        "labels its pods): lower-case letters, digits and '-', no dots",
    ),
    spec_description="What to train: the base model, the dataset, the method and "
    "hyperparameters, where the adapter goes, and the training pod's settings.",
    status_description="What the operator observed: conditions (Running, Succeeded, Failed), "
    "progress, and the adapter's URI once it succeeded.",
)

KINDS = (MODELSERVICE, FINETUNEJOB)


def structural_schema(model: type[BaseModel]) -> dict[str, Any]:
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs: dict[str, Any] = raw.pop("$defs", {})
    return _clean(raw, defs)


def _clean(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in node:
        target = defs[node["$ref"].rsplit("/", 1)[-1]]
        merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        return _clean(merged, defs)
    options = node.get("anyOf")
    if options is not None:
        # Optional[X] arrives as anyOf [X, null]: the API server omits absent fields instead.
        concrete = [o for o in options if o.get("type") != "null"]
        if len(concrete) == 1:
            rest = {
                k: v for k, v in node.items() if k != "anyOf" and not (k == "default" and v is None)
            }
            return _clean({**concrete[0], **rest}, defs)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "exclusiveMinimum":  # JSON Schema 2020 number -> OpenAPI 3.0 boolean
            out["minimum"], out["exclusiveMinimum"] = value, True
        elif key == "properties":
            out[key] = {name: _clean(sub, defs) for name, sub in value.items()}
        elif key in ("items", "additionalProperties") and isinstance(value, dict):
            out[key] = _clean(value, defs)
        elif key == "additionalProperties":
            continue  # `false` from extra="forbid": structural schemas prune unknown fields instead
        elif key in _KEEP:
            out[key] = value
    return out


def build_crd(info: KindInfo) -> dict[str, Any]:
    subresources: dict[str, Any] = {"status": {}}
    if info.scale:
        subresources["scale"] = {
            "specReplicasPath": ".spec.replicas",
            "statusReplicasPath": ".status.replicas",
            "labelSelectorPath": ".status.selector",
        }
    rule, message = info.name_rule
    schema = {
        "type": "object",
        "description": info.description,
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": {"description": info.spec_description, **structural_schema(info.spec)},
            "status": {"description": info.status_description, **structural_schema(info.status)},
        },
        "x-kubernetes-validations": [{"rule": rule, "message": message}],
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{info.plural}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "names": {
                "kind": info.kind,
                "listKind": f"{info.kind}List",
                "plural": info.plural,
                "singular": info.kind.lower(),
                "shortNames": list(info.short_names),
                "categories": ["modelkube"],
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": schema},
                    "subresources": subresources,
                    "additionalPrinterColumns": list(info.printer_columns),
                }
            ],
        },
    }
