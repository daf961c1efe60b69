"""ModelService: a model served through the OpenAI API by modelkube's runtime."""

from typing import Literal, Self

from pydantic import Field, model_validator

from modelkube_operator.api.conditions import CONDITIONS_EXTRA, Condition
from modelkube_operator.api.pods import PodSettings
from modelkube_operator.api.programs import Program
from modelkube_operator.api.schema import CLAIM, DATA_KEY, DNS_LABEL, NO_PARENT, ApiModel, cel
from modelkube_operator.api.upstream import Upstream

MODEL_URI_PATTERN = rf"^(builtin://[a-z0-9-]+|hf://[A-Za-z0-9._-]+/[A-Za-z0-9._-]+(@[A-Za-z0-9._/-]+)?|pvc://{CLAIM}/[^/].*)$"
EXACTLY_ONE_SOURCE = "set exactly one of spec.model and spec.upstream"
# A ModelService's name is its Service's: a DNS-1035 label (a letter first, no dots).
SERVICE_NAME = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
CPU_REQUEST_MESSAGE = (
    "autoscaling.metric cpu scales on CPU utilization of the request: "
    "set spec.runtime.resources.requests.cpu"
)


class ModelSource(ApiModel):
    uri: str = Field(
        pattern=MODEL_URI_PATTERN,
        max_length=512,
        json_schema_extra=cel(NO_PARENT),
        description="builtin://name, hf://org/name[@revision] or pvc://claim/path.",
    )


class LocalObjectReference(ApiModel):
    name: str = Field(pattern=DNS_LABEL, max_length=63, description="Name in the same namespace.")


class Adapter(ApiModel):
    model_config = ApiModel.model_config | {
        "json_schema_extra": cel(
            (
                "has(self.uri) != has(self.fineTuneJobRef)",
                "set exactly one of uri or fineTuneJobRef",
            ),
        )
    }
    name: str = Field(
        pattern=DNS_LABEL, max_length=63, description="Served as model '<service>:<name>'."
    )
    uri: str | None = Field(
        default=None,
        pattern=rf"^(pvc://{CLAIM}/[^/].*|hf://.+)$",
        max_length=512,
        json_schema_extra=cel(NO_PARENT),
        description="Where the adapter is: pvc://claim/path or hf://org/name.",
    )
    fine_tune_job_ref: LocalObjectReference | None = Field(
        default=None, description="A FineTuneJob whose adapter is served once it succeeds."
    )


class Keda(ApiModel):
    prometheus_address: str = Field(
        pattern=r"^https?://.+",
        max_length=512,
        description=(
            "The Prometheus that KEDA's prometheus trigger queries for the in-flight requests, "
            "e.g. http://prometheus-operated.monitoring.svc:9090."
        ),
    )


class Autoscaling(ApiModel):
    model_config = ApiModel.model_config | {
        "json_schema_extra": cel(
            ("self.minReplicas <= self.maxReplicas", "minReplicas must not exceed maxReplicas"),
            (
                "!has(self.keda) || !has(self.metric) || self.metric == 'inFlightRequests'",
                "keda scales on inFlightRequests only",
            ),
        )
    }
    min_replicas: int = Field(
        default=1,
        ge=0,
        le=1000,
        description="The fewest replicas. 0: `modelkube gateway` scales the service to zero "
        "after idleSeconds without a request, and back to one on the next request.",
    )
    idle_seconds: int = Field(
        default=600,
        ge=1,
        le=604800,
        description="With minReplicas 0: seconds without a request (through the gateway, "
        "or to the service's pods as they report) before the gateway scales it to zero.",
    )
    max_replicas: int = Field(ge=1, le=1000, description="The most replicas.")
    metric: Literal["inFlightRequests", "cpu"] = Field(
        default="inFlightRequests",
        description="inFlightRequests: per-pod modelkube_requests_in_flight; cpu: CPU utilization.",
    )
    target: int = Field(
        ge=1,
        le=10000,
        description="Target per pod: in-flight requests, or CPU utilization in percent.",
    )
    scale_down_delay_seconds: int | None = Field(
        default=None,
        ge=0,
        le=3600,
        description="Seconds the load must stay low before replicas are removed (the HPA's "
        "scale-down stabilization window; KEDA's too). Default: the cluster's, 300.",
    )
    keda: Keda | None = Field(
        default=None,
        description=(
            "Scale with KEDA instead of an HPA: a ScaledObject with a prometheus trigger on the "
            "in-flight requests, once KEDA's ScaledObject CRD is installed (an HPA until then)."
        ),
    )


class Rollout(ApiModel):
    model_config = ApiModel.model_config | {
        "json_schema_extra": cel(
            (
                "!has(self.maxSurge) || !has(self.maxUnavailable) || "
                "self.maxSurge + self.maxUnavailable > 0",
                "maxSurge and maxUnavailable must not both be 0",
            ),
        )
    }
    max_surge: int | None = Field(
        default=None,
        ge=0,
        le=1000,
        description="Extra pods a rollout may start. Default: 0 with more than one replica, "
        "1 with one.",
    )
    max_unavailable: int | None = Field(
        default=None,
        ge=0,
        le=1000,
        description="Pods a rollout may stop before their replacements are ready. Default: 1 "
        "with more than one replica (a rollout needs no spare accelerator), 0 with one (no "
        "outage; the new pod needs room next to the old one).",
    )


class Runtime(PodSettings):
    max_concurrent_requests: int = Field(
        default=32, ge=1, le=1024, description="Requests decoded together per replica."
    )
    max_queued_requests: int = Field(
        default=256, ge=0, le=100000, description="Requests waiting per replica before 429."
    )
    context_length: int | None = Field(
        default=None, ge=16, le=1048576, description="Override the model's context length."
    )
    engine: Literal["mlx", "llamacpp", "auto"] = Field(
        default="mlx",
        description="What runs the model: mlx (mlx-lm; Apple silicon, NVIDIA and CPU), "
        "llamacpp (llama.cpp in the runtime's Rust core; GGUF models, fastest on CPU nodes), "
        "or auto (llamacpp for a GGUF model on a node without an accelerator, else mlx).",
    )
    drain_seconds: int = Field(
        default=30,
        ge=0,
        le=3600,
        description="On shutdown, how long in-flight requests may finish (the runtime's "
        "--drain-grace-period); the pod's grace period is this plus the preStop delay.",
    )
    startup_seconds: int = Field(
        default=600,
        ge=10,
        le=86400,
        description="How long a new pod may take to download and load its model before it is "
        "restarted (the startup probe on /readyz).",
    )
    rollout: Rollout = Field(
        default_factory=Rollout, description="How a changed spec rolls out new pods."
    )


class SecretKeySelector(ApiModel):
    name: str = Field(pattern=DNS_LABEL, max_length=253, description="The Secret's name.")
    key: str = Field(
        default="keys",
        pattern=DATA_KEY,
        max_length=253,
        description="The key holding one API key per line.",
    )


class Auth(ApiModel):
    api_keys_secret_ref: SecretKeySelector = Field(description="API keys the runtime accepts.")


class Monitoring(ApiModel):
    service_monitor: bool = Field(
        default=False, description="Create a ServiceMonitor (needs the Prometheus Operator CRD)."
    )


class InferencePool(ApiModel):
    endpoint_picker: str | None = Field(
        default=None,
        pattern=DNS_LABEL,
        max_length=63,
        description=(
            "The Service of the endpoint picker (EPP) that chooses this pool's pods; default "
            "<name>-epp, the name the Inference Extension's inferencepool chart gives it."
        ),
    )
    endpoint_picker_port: int = Field(
        default=9002, ge=1, le=65535, description="The endpoint picker's ext-proc gRPC port."
    )


class FineTuningAPI(ApiModel):
    enabled: bool = Field(
        default=False,
        description=(
            "Serve the OpenAI fine-tuning API (/v1/files, /v1/fine_tuning/jobs) on "
            "FineTuneJobs in this namespace; the runtime then gets a service account allowed "
            "to create FineTuneJobs and dataset ConfigMaps here."
        ),
    )
    output_claim: str = Field(
        default="",
        pattern=rf"^({CLAIM})?$",
        max_length=63,
        description="The PVC that adapters trained through the API are written to.",
    )


SCALE_UNDER_AUTOSCALING_MESSAGE = (
    "spec.replicas cannot change while spec.autoscaling is set (the autoscaler owns the "
    "replica count): change spec.autoscaling.minReplicas and maxReplicas instead"
)


class ModelServiceSpec(ApiModel):
    model_config = ApiModel.model_config | {
        "json_schema_extra": cel(
            (
                "!has(self.adapters) || "
                "self.adapters.all(a, self.adapters.exists_one(b, b.name == a.name))",
                "adapter names must be unique",
            ),
            (
                "!has(self.fineTuningAPI) || !self.fineTuningAPI.enabled || "
                "self.fineTuningAPI.outputClaim != ''",
                "fineTuningAPI.outputClaim is required when the fine-tuning API is enabled",
            ),
            ("has(self.model) != has(self.upstream)", EXACTLY_ONE_SOURCE),
            (
                "!has(self.upstream) || !has(self.adapters) || size(self.adapters) == 0",
                "spec.upstream serves a hosted model: spec.adapters are not allowed with it",
            ),
            (
                "!has(self.upstream) || !has(self.fineTuningAPI) || !self.fineTuningAPI.enabled",
                "spec.upstream serves a hosted model: spec.fineTuningAPI is not allowed with it",
            ),
            (
                "!has(self.programs) || "
                "self.programs.all(p, self.programs.exists_one(q, q.name == p.name))",
                "program names must be unique",
            ),
            (
                "!has(self.autoscaling) || self.autoscaling.metric != 'cpu' || "
                "(has(self.runtime) && has(self.runtime.resources) && "
                "has(self.runtime.resources.requests) && "
                "'cpu' in self.runtime.resources.requests)",
                CPU_REQUEST_MESSAGE,
            ),
            (
                # `kubectl scale` writes spec.replicas; under an autoscaler it would say
                # "scaled" and change nothing, so it is refused with what to do instead.
                # With minReplicas 0 it is the on/off switch the gateway flips (0 or more).
                "!has(self.autoscaling) || !has(oldSelf.autoscaling) || "
                "self.replicas == oldSelf.replicas || self.autoscaling.minReplicas == 0",
                SCALE_UNDER_AUTOSCALING_MESSAGE,
            ),
        )
    }
    model: ModelSource | None = Field(
        default=None, description="The base model to serve (or set upstream instead)."
    )
    upstream: Upstream | None = Field(
        default=None,
        description="Serve a hosted model through this runtime instead (proxy mode): the "
        "runtime keeps its API keys, queueing, rate limits and metrics and forwards requests.",
    )
    adapters: list[Adapter] = Field(
        default_factory=list, max_length=32, description="Adapters served on the base model."
    )
    replicas: int = Field(
        default=1,
        ge=0,
        le=1000,
        description="Replicas when autoscaling is not set. With autoscaling.minReplicas 0: "
        "0 while scaled to zero, more while awake (the gateway's /scale writes it).",
    )
    autoscaling: Autoscaling | None = Field(default=None, description="Horizontal autoscaling.")
    runtime: Runtime = Field(default_factory=Runtime, description="The runtime container.")
    auth: Auth | None = Field(
        default=None, description="API keys; without them the API is open (status says so)."
    )
    monitoring: Monitoring = Field(
        default_factory=Monitoring, description="Prometheus integration."
    )
    inference_pool: InferencePool | None = Field(
        default=None,
        description=(
            "Create an InferencePool (inference.networking.k8s.io/v1) of this service's pods, "
            "for the Gateway API Inference Extension, once its CRD is installed."
        ),
    )
    fine_tuning_api: FineTuningAPI | None = Field(
        default=None,
        alias="fineTuningAPI",
        description="The OpenAI fine-tuning jobs API on this service (off by default).",
    )
    programs: list[Program] = Field(
        default_factory=list,
        max_length=64,
        description="Declarative DSPy programs served at /v1/programs on this service's model.",
    )

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        # The CRD's CEL rule says the same; this keeps the builders from seeing neither.
        if (self.model is None) == (self.upstream is None):
            raise ValueError(EXACTLY_ONE_SOURCE)
        return self

    def scaled_to_zero(self) -> bool:
        """Asleep: it may scale to zero (minReplicas 0) and the gateway set replicas to 0."""
        return bool(self.autoscaling and self.autoscaling.min_replicas == 0 and not self.replicas)

    def min_replicas(self) -> int:
        """The replicas that always run: the autoscaler's floor, or the fixed count."""
        return self.autoscaling.min_replicas if self.autoscaling else self.replicas


class ModelServiceStatus(ApiModel):
    conditions: list[Condition] = Field(
        default_factory=list,
        json_schema_extra=CONDITIONS_EXTRA,
        description="Ready, Progressing, Degraded.",
    )
    replicas: int = Field(default=0, description="Pods of the runtime Deployment.")
    ready_replicas: int = Field(default=0, description="Pods ready to serve.")
    replicas_summary: str = Field(
        default="", description="Ready replicas / desired replicas, e.g. 1/4 (kubectl get)."
    )
    model: str = Field(
        default="",
        description="What is served: the model's URI, or provider/model for a hosted upstream.",
    )
    image: str = Field(default="", description="The runtime image the pods run.")
    selector: str = Field(default="", description="Label selector of the pods (for /scale).")
    url: str = Field(default="", description="In-cluster base URL of the OpenAI API.")
    served_models: list[str] = Field(
        default_factory=list, description="Model names clients may send."
    )
    observed_generation: int = Field(default=0, description="The generation last reconciled.")
