"""The runtime's ConfigMap and Deployment for a ModelService."""

import hashlib
import json

from modelkube_operator.api.modelservice import ModelServiceSpec
from modelkube_operator.builders.adapters import ADAPTERS_KEY, AdapterPlan
from modelkube_operator.builders.common import (
    RUNTIME_PORT,
    Obj,
    Owner,
    labels,
    metadata,
    restricted_container_context,
    restricted_pod_context,
    selector_labels,
)
from modelkube_operator.builders.pods import cache_volume, env_var, resources, scheduling, wants_gpu
from modelkube_operator.builders.programs import PROGRAMS_KEY, ProgramPlan
from modelkube_operator.builders.runtime_access import fine_tuning_api, runtime_account
from modelkube_operator.images import Images, configured

COMPONENT = "modelkube-runtime"
KEYS_DIR = "/etc/modelkube/keys"
UPSTREAM_CA_DIR = "/etc/modelkube/upstream-ca"
UPSTREAM_CA_FILE = "ca.pem"
ADAPTERS_DIR = "/etc/modelkube/adapters"  # also holds programs.json: one ConfigMap volume
MODELS_ROOT = "/mnt/models"
CACHE_DIR = "/var/cache/modelkube"
UPSTREAM_API_KEY = "MODELKUBE_UPSTREAM_API_KEY"
# Files the runtime polls and reloads while it serves: edits to them roll no pods.
LIVE_KEYS = frozenset({ADAPTERS_KEY, PROGRAMS_KEY})
# So no runtime pod runs BestEffort; spec.runtime.resources overrides them key by key.
DEFAULT_REQUESTS = {"cpu": "500m", "memory": "1Gi"}
# Between SIGTERM's arrival and the endpoint's removal everywhere (kube-proxy, ingress
# controllers) requests still arrive: the preStop sleep keeps the pod serving them, and the
# runtime's drain (readiness failing, 503 to new requests) starts only after it.
PRESTOP_SECONDS = 5
# Room after the drain for the process to exit before SIGKILL.
EXIT_MARGIN_SECONDS = 10
PROBE_PERIOD_SECONDS = 5
# Readiness waits for the startup probe's success (kubelet then runs it at once), so this
# period is what a pod whose model has loaded waits to be Ready: at 5 s the Ready leg of a
# cold start through the gateway took 2.4 s of its 5.95 s (bench/gateway/cold_node.py). A
# probe a second costs a loading pod one /readyz; it stops once the pod has started.
STARTUP_PROBE_PERIOD_SECONDS = 1


def runtime_settings(owner: Owner, spec: ModelServiceSpec) -> dict[str, str]:
    """What the runtime is told, as environment variables from the ConfigMap."""
    settings = {
        **_source_settings(spec),
        "MODELKUBE_SERVED_MODEL_NAME": owner.name,
        "MODELKUBE_MAX_CONCURRENT_REQUESTS": str(spec.runtime.max_concurrent_requests),
        "MODELKUBE_MAX_QUEUED_REQUESTS": str(spec.runtime.max_queued_requests),
        "MODELKUBE_CACHE_DIR": CACHE_DIR,
        "MODELKUBE_PVC_ROOT": MODELS_ROOT,
        "HF_HOME": f"{CACHE_DIR}/huggingface",
    }
    if spec.runtime.context_length is not None:
        settings["MODELKUBE_CONTEXT_LENGTH"] = str(spec.runtime.context_length)
    if spec.runtime.engine != "mlx":
        settings["MODELKUBE_ENGINE"] = spec.runtime.engine
    return settings


def _source_settings(spec: ModelServiceSpec) -> dict[str, str]:
    """The local model, or the hosted one the runtime forwards to (proxy mode)."""
    if spec.upstream is None:
        return {"MODELKUBE_MODEL": spec.model.uri} if spec.model is not None else {}
    settings = {
        "MODELKUBE_UPSTREAM_PROVIDER": spec.upstream.provider,
        "MODELKUBE_UPSTREAM_MODEL": spec.upstream.model,
    }
    if spec.upstream.base_url is not None:
        settings["MODELKUBE_UPSTREAM_BASE_URL"] = spec.upstream.base_url
    return settings


def build_configmap(
    owner: Owner, spec: ModelServiceSpec, plan: AdapterPlan, programs: ProgramPlan
) -> Obj:
    data = {**runtime_settings(owner, spec), ADAPTERS_KEY: plan.file()}
    if spec.programs:
        data[PROGRAMS_KEY] = programs.file()
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(owner, COMPONENT, f"{owner.name}-runtime"),
        "data": data,
    }


def settings_hash(configmap: Obj) -> str:
    """Changes when the settings do, so the pod template rolls out new pods. The adapter and
    program lists are left out: the runtime reloads them from its mounted files as it serves."""
    settings = {k: v for k, v in configmap["data"].items() if k not in LIVE_KEYS}
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def _source_args(spec: ModelServiceSpec) -> list[str]:
    if spec.upstream is None:
        return ["--model", "$(MODELKUBE_MODEL)"]
    args = [
        "--upstream-provider",
        "$(MODELKUBE_UPSTREAM_PROVIDER)",
        "--upstream-model",
        "$(MODELKUBE_UPSTREAM_MODEL)",
    ]
    if spec.upstream.base_url is not None:
        args += ["--upstream-base-url", "$(MODELKUBE_UPSTREAM_BASE_URL)"]
    if spec.upstream.ca_bundle_ref is not None:
        args += ["--upstream-ca-file", f"{UPSTREAM_CA_DIR}/{UPSTREAM_CA_FILE}"]
    return args


def _args(spec: ModelServiceSpec) -> list[str]:
    args = [
        "serve",
        *_source_args(spec),
        "--served-model-name",
        "$(MODELKUBE_SERVED_MODEL_NAME)",
        "--host",
        "0.0.0.0",  # noqa: S104 - a pod serves on its own IP
        "--port",
        str(RUNTIME_PORT),
        "--max-concurrent-requests",
        "$(MODELKUBE_MAX_CONCURRENT_REQUESTS)",
        "--max-queued-requests",
        "$(MODELKUBE_MAX_QUEUED_REQUESTS)",
        "--drain-grace-period",
        str(spec.runtime.drain_seconds),
    ]
    if spec.runtime.context_length is not None:
        args += ["--context-length", "$(MODELKUBE_CONTEXT_LENGTH)"]
    if spec.runtime.engine != "mlx":
        args += ["--engine", "$(MODELKUBE_ENGINE)"]
    if spec.auth is not None:
        args += ["--api-keys-file", f"{KEYS_DIR}/{spec.auth.api_keys_secret_ref.key}"]
    if spec.fine_tuning_api is not None and fine_tuning_api(spec):
        args += [
            "--fine-tuning-api",
            "--fine-tuning-output-claim",
            spec.fine_tuning_api.output_claim,
        ]
    if spec.programs:
        args += ["--programs-file", f"{ADAPTERS_DIR}/{PROGRAMS_KEY}"]
    return [*args, "--adapters-file", f"{ADAPTERS_DIR}/{ADAPTERS_KEY}"]


def _volumes(
    owner: Owner, spec: ModelServiceSpec, plan: AdapterPlan
) -> tuple[list[Obj], list[Obj]]:
    live = [ADAPTERS_KEY, PROGRAMS_KEY] if spec.programs else [ADAPTERS_KEY]
    adapters = {
        "name": "adapters",
        "configMap": {
            "name": f"{owner.name}-runtime",
            "items": [{"key": key, "path": key} for key in live],
        },
    }
    volumes: list[Obj] = [
        cache_volume(spec.runtime),
        {"name": "tmp", "emptyDir": {}},
        adapters,
    ]
    mounts: list[Obj] = [
        {"name": "cache", "mountPath": CACHE_DIR},
        {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 - an emptyDir, not the host's /tmp
        {"name": "adapters", "mountPath": ADAPTERS_DIR, "readOnly": True},
    ]
    if spec.auth is not None:
        volumes.append(
            {"name": "api-keys", "secret": {"secretName": spec.auth.api_keys_secret_ref.name}}
        )
        mounts.append({"name": "api-keys", "mountPath": KEYS_DIR, "readOnly": True})
    if spec.upstream is not None and spec.upstream.ca_bundle_ref is not None:
        ref = spec.upstream.ca_bundle_ref
        items = [{"key": ref.key, "path": UPSTREAM_CA_FILE}]
        volumes.append({"name": "upstream-ca", "configMap": {"name": ref.name, "items": items}})
        mounts.append({"name": "upstream-ca", "mountPath": UPSTREAM_CA_DIR, "readOnly": True})
    claims = set(plan.claims)
    if spec.model is not None and spec.model.uri.startswith("pvc://"):
        claims.add(spec.model.uri.removeprefix("pvc://").split("/", 1)[0])
    # Adapter claims are mounted from the start, so a finished fine-tune needs no rollout.
    for i, claim in enumerate(sorted(claims)):
        name = f"claim-{i}"
        volumes.append(
            {"name": name, "persistentVolumeClaim": {"claimName": claim, "readOnly": True}}
        )
        mounts.append({"name": name, "mountPath": f"{MODELS_ROOT}/{claim}", "readOnly": True})
    return volumes, mounts


def _probe(path: str, period: int, failures: int) -> Obj:
    return {
        "httpGet": {"path": path, "port": "http"},
        "periodSeconds": period,
        "failureThreshold": failures,
        "timeoutSeconds": 5,
    }


# What the CRD used to write into every ModelService as its default: such an image was never
# chosen by the user, so it follows the operator's configuration like an empty one.
LEGACY_DEFAULT_IMAGE = "ghcr.io/modelkube/runtime:0.1.0"


def runtime_image(spec: ModelServiceSpec, images: Images) -> str:
    """The spec's image, else the operator's (its CUDA image for a pod that asks for a GPU)."""
    if spec.runtime.image and spec.runtime.image != LEGACY_DEFAULT_IMAGE:
        return spec.runtime.image
    return images.serving(wants_gpu(spec.runtime))


def _container(owner: Owner, spec: ModelServiceSpec, mounts: list[Obj], images: Images) -> Obj:
    startup_failures = -(-spec.runtime.startup_seconds // STARTUP_PROBE_PERIOD_SECONDS)
    return {
        "name": "runtime",
        "image": runtime_image(spec, images),
        "command": ["modelkube"],
        "args": _args(spec),
        "env": [
            *_settings_env(owner, spec),
            *_upstream_key_env(spec),
            *(env_var(e) for e in spec.runtime.env),
        ],
        "ports": [{"name": "http", "containerPort": RUNTIME_PORT, "protocol": "TCP"}],
        # /readyz answers 200 once the model is downloaded and loaded, so the startup probe
        # covers the download (spec.runtime.startupSeconds); /healthz only says the process
        # lives, which is all liveness should ask after that.
        "startupProbe": _probe("/readyz", STARTUP_PROBE_PERIOD_SECONDS, startup_failures),
        "livenessProbe": _probe("/healthz", 10, 3),
        "readinessProbe": _probe("/readyz", PROBE_PERIOD_SECONDS, 2),
        "lifecycle": {"preStop": {"exec": {"command": ["sleep", str(PRESTOP_SECONDS)]}}},
        "resources": resources(spec.runtime.resources, DEFAULT_REQUESTS),
        "securityContext": restricted_container_context(),
        "volumeMounts": mounts,
    }


def _settings_env(owner: Owner, spec: ModelServiceSpec) -> list[Obj]:
    """Each setting by key (envFrom would also turn the adapter list into a variable)."""
    source = f"{owner.name}-runtime"
    return [
        {"name": key, "valueFrom": {"configMapKeyRef": {"name": source, "key": key}}}
        for key in runtime_settings(owner, spec)
    ]


def _upstream_key_env(spec: ModelServiceSpec) -> list[Obj]:
    """The provider's API key, straight from its Secret (never through the ConfigMap)."""
    if spec.upstream is None or spec.upstream.api_key_secret_ref is None:
        return []
    ref = spec.upstream.api_key_secret_ref
    selector = {"name": ref.name, "key": ref.key}
    return [{"name": UPSTREAM_API_KEY, "valueFrom": {"secretKeyRef": selector}}]


def _identity(owner: Owner, spec: ModelServiceSpec) -> Obj:
    if fine_tuning_api(spec):
        return {"serviceAccountName": runtime_account(owner), "automountServiceAccountToken": True}
    # Named even when off: the API server copies the name into the deprecated
    # `serviceAccount`, which would bring a removed name back.
    return {"serviceAccountName": "default", "automountServiceAccountToken": False}


def rolling_update(spec: ModelServiceSpec) -> Obj:
    """spec.runtime.rollout, or a default that needs no spare accelerator: with more than one
    replica, stop one old pod before starting its replacement (the others keep serving); with
    one, start the new pod first, so a rollout never leaves the service with no replica (on a
    full node it waits, and the old pod keeps serving)."""
    rollout = spec.runtime.rollout
    surge, unavailable = rollout.max_surge, rollout.max_unavailable
    if surge is None and unavailable is None:
        surge, unavailable = (0, 1) if spec.min_replicas() > 1 else (1, 0)
    elif surge is None:  # one of the two must be above 0
        surge = 0 if unavailable else 1
    elif unavailable is None:
        unavailable = 0 if surge else 1
    return {"maxSurge": surge, "maxUnavailable": unavailable}


def build_deployment(
    owner: Owner,
    spec: ModelServiceSpec,
    plan: AdapterPlan,
    config_hash: str,
    images: Images | None = None,
) -> Obj:
    """`images`: the operator's configured images (its environment when not given)."""
    volumes, mounts = _volumes(owner, spec, plan)
    deployment: Obj = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(owner, COMPONENT),
        "spec": {
            "selector": {"matchLabels": selector_labels(owner)},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": rolling_update(spec)},
            "template": {
                "metadata": {
                    "labels": labels(owner, COMPONENT),
                    "annotations": {"modelkube.io/settings-hash": config_hash},
                },
                "spec": {
                    **_identity(owner, spec),
                    **scheduling(spec.runtime),
                    "enableServiceLinks": False,
                    # The grace period covers the preStop sleep, then the runtime's drain.
                    "terminationGracePeriodSeconds": PRESTOP_SECONDS
                    + spec.runtime.drain_seconds
                    + EXIT_MARGIN_SECONDS,
                    "securityContext": restricted_pod_context(),
                    "containers": [_container(owner, spec, mounts, images or configured())],
                    "volumes": volumes,
                },
            },
        },
    }
    if spec.autoscaling is None or spec.scaled_to_zero():
        # With an HPA the field is left to it: applying it here would fight the autoscaler.
        # Scaled to zero there is no HPA; once awake again the field is released, defaults
        # to 1, and the HPA takes over.
        deployment["spec"]["replicas"] = spec.replicas
    return deployment
