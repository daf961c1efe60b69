"""Pod settings that ModelService runtimes and FineTuneJob trainers share.

Every rule here is one the API server would otherwise enforce only on the Deployment or Job the
operator makes, where the user never sees the refusal: the CRD refuses the spec instead.
"""

from typing import Annotated, Any, Literal

from pydantic import Field

from modelkube_operator.api.schema import CLAIM, DATA_KEY, ApiModel, cel

DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
LABEL_VALUE = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"
RESERVED_ENV_PREFIX = "MODELKUBE_"
RESERVED_ENV = ("HF_HOME",)
RESERVED_ENV_MESSAGE = (
    f"{RESERVED_ENV_PREFIX}* and {', '.join(RESERVED_ENV)} are set by the operator "
    "(use the spec's own fields)"
)
RESOURCE_NAMES_MESSAGE = (
    "resource names are cpu, memory, ephemeral-storage, hugepages-<size> or a "
    "domain-qualified name such as nvidia.com/gpu"
)
_RESOURCE_NAME = (
    "k in ['cpu', 'memory', 'ephemeral-storage'] || k.startsWith('hugepages-') || "
    "k.matches('^[a-z0-9]([-a-z0-9.]*[a-z0-9])?/[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$')"
)

Quantity = Annotated[
    str,
    Field(
        max_length=64,
        json_schema_extra=cel(
            (
                "isQuantity(self) && !quantity(self).isLessThan(quantity('0'))",
                "must be a non-negative Kubernetes quantity, e.g. 500m, 2 or 4Gi",
            )
        ),
    ),
]


class Resources(ApiModel):
    model_config = ApiModel.model_config | {
        "json_schema_extra": cel(
            (
                "!has(self.requests) || !has(self.limits) || self.requests.all(k, "
                "!(k in self.limits) || !isQuantity(self.requests[k]) || "
                "!isQuantity(self.limits[k]) || "
                "quantity(self.requests[k]).compareTo(quantity(self.limits[k])) <= 0)",
                "a request must not exceed its limit",
            ),
        )
    }
    requests: dict[str, Quantity] = Field(
        default_factory=dict,
        max_length=16,
        json_schema_extra=cel((f"self.all(k, {_RESOURCE_NAME})", RESOURCE_NAMES_MESSAGE)),
        description="Resource requests, e.g. {cpu: '2', memory: 4Gi}. Keys left out get the "
        "operator's defaults (runtime: cpu 500m, memory 1Gi; trainer: cpu 1, memory 2Gi) unless "
        "a limit is set for them; set a request to '0' to request none.",
    )
    limits: dict[str, Quantity] = Field(
        default_factory=dict,
        max_length=16,
        json_schema_extra=cel((f"self.all(k, {_RESOURCE_NAME})", RESOURCE_NAMES_MESSAGE)),
        description="Resource limits, e.g. {memory: 8Gi, nvidia.com/gpu: '1'}.",
    )


class KeySelector(ApiModel):
    name: str = Field(pattern=DNS_SUBDOMAIN, max_length=253, description="The object's name.")
    key: str = Field(pattern=DATA_KEY, max_length=253, description="The key in its data.")
    optional: bool | None = Field(
        default=None, description="Start the pod even if the object or key is missing."
    )


class EnvVarSource(ApiModel):
    model_config = ApiModel.model_config | {
        "json_schema_extra": cel(
            (
                "has(self.secretKeyRef) != has(self.configMapKeyRef)",
                "set exactly one of secretKeyRef or configMapKeyRef",
            ),
        )
    }
    secret_key_ref: KeySelector | None = Field(
        default=None, description="A key of a Secret in the same namespace, e.g. a HF_TOKEN."
    )
    config_map_key_ref: KeySelector | None = Field(
        default=None, description="A key of a ConfigMap in the same namespace."
    )


class EnvVar(ApiModel):
    model_config = ApiModel.model_config | {
        "json_schema_extra": cel(
            (
                "!(has(self.value) && has(self.valueFrom))",
                "set value or valueFrom, not both",
            ),
        )
    }
    name: str = Field(
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        max_length=256,
        json_schema_extra=cel(
            (
                f"!self.startsWith('{RESERVED_ENV_PREFIX}') && "
                f"!(self in [{', '.join(repr(n) for n in RESERVED_ENV)}])",
                RESERVED_ENV_MESSAGE,
            ),
        ),
        description="The variable's name (a C identifier; not MODELKUBE_* nor HF_HOME, which "
        "the operator sets).",
    )
    value: str | None = Field(
        default=None, max_length=4096, description="The variable's value (or set valueFrom)."
    )
    value_from: EnvVarSource | None = Field(
        default=None,
        description="Take the value from a Secret or ConfigMap key, so tokens stay out of the "
        "spec.",
    )


class SecretReference(ApiModel):
    name: str = Field(pattern=DNS_SUBDOMAIN, max_length=253, description="The Secret's name.")


class Toleration(ApiModel):
    model_config = ApiModel.model_config | {
        "json_schema_extra": cel(
            (
                "!has(self.operator) || self.operator != 'Exists' || !has(self.value) || "
                "self.value == ''",
                "value must be empty when operator is Exists",
            ),
            (
                "has(self.key) || (has(self.operator) && self.operator == 'Exists')",
                "operator must be Exists when key is empty",
            ),
            (
                "!has(self.tolerationSeconds) || (has(self.effect) && self.effect == 'NoExecute')",
                "tolerationSeconds needs effect NoExecute",
            ),
        )
    }
    key: str | None = Field(default=None, max_length=317, description="The taint key to match.")
    operator: Literal["Exists", "Equal"] | None = Field(
        default=None, description="Exists or Equal (the default)."
    )
    value: str | None = Field(
        default=None, pattern=LABEL_VALUE, max_length=63, description="The taint value to match."
    )
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        default=None, description="The taint effect to match; empty matches all."
    )
    toleration_seconds: int | None = Field(
        default=None, description="With NoExecute: how long the pod stays bound after the taint."
    )


_FREE_FORM: dict[str, Any] = {"x-kubernetes-preserve-unknown-fields": True}


class Affinity(ApiModel):
    """Each part as in a Pod spec; the Deployment or Job validates the inside."""

    node_affinity: dict[str, Any] | None = Field(
        default=None, json_schema_extra=_FREE_FORM, description="A Pod's nodeAffinity."
    )
    pod_affinity: dict[str, Any] | None = Field(
        default=None, json_schema_extra=_FREE_FORM, description="A Pod's podAffinity."
    )
    pod_anti_affinity: dict[str, Any] | None = Field(
        default=None, json_schema_extra=_FREE_FORM, description="A Pod's podAntiAffinity."
    )


class ModelCache(ApiModel):
    model_config = ApiModel.model_config | {
        "json_schema_extra": cel(
            (
                "!has(self.claimName) || !has(self.sizeLimit)",
                "sizeLimit is for the emptyDir cache: leave it out with claimName",
            ),
        )
    }
    claim_name: str | None = Field(
        default=None,
        pattern=f"^{CLAIM}$",
        max_length=63,
        description="A PersistentVolumeClaim to keep downloaded models in (the Hugging Face "
        "cache, one directory per model), so a model is downloaded once, not by every new pod. "
        "ReadWriteMany shares it between pods on any node. Empty: an emptyDir per pod.",
    )
    size_limit: Quantity | None = Field(
        default=None, description="Without claimName: the per-pod emptyDir cache's size limit."
    )


class PodSettings(ApiModel):
    """Where and how the pods run: the fields both pod-making kinds have."""

    image: str | None = Field(
        default=None,
        min_length=1,
        max_length=1024,
        description="The container image. Empty: the operator's configured image (the chart's "
        "images.* values), so an operator upgrade moves the pods to its new image.",
    )
    resources: Resources = Field(default_factory=Resources, description="Container resources.")
    env: list[EnvVar] = Field(
        default_factory=list,
        max_length=64,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
        description="Extra environment variables, by value or from Secret and ConfigMap keys.",
    )
    image_pull_secrets: list[SecretReference] = Field(
        default_factory=list,
        max_length=16,
        description="Secrets holding credentials for a private registry.",
    )
    node_selector: dict[str, Annotated[str, Field(pattern=LABEL_VALUE, max_length=63)]] = Field(
        default_factory=dict, max_length=32, description="Node labels the pods must match."
    )
    tolerations: list[Toleration] = Field(
        default_factory=list, max_length=32, description="Taints the pods tolerate."
    )
    affinity: Affinity | None = Field(
        default=None, description="The pods' affinity, as in a Pod spec."
    )
    model_cache: ModelCache = Field(
        default_factory=ModelCache,
        description="Where downloaded models are kept: an emptyDir per pod, or a claim.",
    )
    priority_class_name: str | None = Field(
        default=None,
        pattern=DNS_SUBDOMAIN,
        max_length=253,
        description="The PriorityClass of the pods.",
    )
