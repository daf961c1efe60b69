"""The batch/v1 Job that runs `modelkube finetune` for a FineTuneJob."""

from modelkube_operator.api import GROUP
from modelkube_operator.api.finetunejob import FineTuneJobSpec
from modelkube_operator.builders.common import (
    Obj,
    Owner,
    labels,
    metadata,
    restricted_container_context,
    restricted_pod_context,
)
from modelkube_operator.builders.pods import cache_volume, env_var, resources, scheduling, wants_gpu
from modelkube_operator.builders.runtime import CACHE_DIR, MODELS_ROOT
from modelkube_operator.images import Images, configured

COMPONENT = "modelkube-finetune"
# So no trainer runs BestEffort; spec.trainer.resources overrides them key by key.
DEFAULT_REQUESTS = {"cpu": "1", "memory": "2Gi"}
DATA_DIR = "/etc/modelkube/dataset"
BAD_INPUT_EXIT_CODE = 2  # `modelkube finetune`'s exit code for bad data or arguments


def _claim(uri: str) -> str:
    return uri.removeprefix("pvc://").split("/", 1)[0]


def _mounted(uri: str) -> str:
    return f"{MODELS_ROOT}/{uri.removeprefix('pvc://')}" if uri.startswith("pvc://") else uri


def _data_path(spec: FineTuneJobSpec) -> str:
    ref = spec.dataset.config_map_ref
    return f"{DATA_DIR}/{ref.key}" if ref is not None else _mounted(spec.dataset.uri or "")


def _args(spec: FineTuneJobSpec) -> list[str]:
    h = spec.hyperparameters
    return [
        "finetune",
        "--base",
        _mounted(spec.base_model.uri),
        "--data",
        _data_path(spec),
        "--method",
        spec.method,
        "--output",
        _mounted(spec.output.uri),
        "--iterations",
        str(h.iterations),
        "--learning-rate",
        h.learning_rate,
        "--batch-size",
        str(h.batch_size),
        "--rank",
        str(h.rank),
        "--seed",
        str(h.seed),
        *(["--num-layers", str(h.num_layers)] if h.num_layers is not None else []),
        "--progress",
        "lines",
    ]


def _volumes(spec: FineTuneJobSpec) -> tuple[list[Obj], list[Obj]]:
    volumes: list[Obj] = [cache_volume(spec.trainer), {"name": "tmp", "emptyDir": {}}]
    mounts: list[Obj] = [
        {"name": "cache", "mountPath": CACHE_DIR},
        {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 - an emptyDir, not the host's /tmp
    ]
    if spec.dataset.config_map_ref is not None:
        volumes.append({"name": "dataset", "configMap": {"name": spec.dataset.config_map_ref.name}})
        mounts.append({"name": "dataset", "mountPath": DATA_DIR, "readOnly": True})
    claims = {
        _claim(u)
        for u in (spec.base_model.uri, spec.dataset.uri or "", spec.output.uri)
        if u.startswith("pvc://")
    }
    # Numbered, not named after the claim: a 63-character claim name is a valid claim, but
    # `pvc-<claim>` would not be a valid volume name.
    for i, claim in enumerate(sorted(claims)):
        volumes.append({"name": f"claim-{i}", "persistentVolumeClaim": {"claimName": claim}})
        mounts.append({"name": f"claim-{i}", "mountPath": f"{MODELS_ROOT}/{claim}"})
    return volumes, mounts


def trainer_account(owner: Owner) -> str:
    return f"{owner.name}-trainer"


def build_trainer_rbac(owner: Owner) -> list[Obj]:
    """The training pod's identity: it may patch its own FineTuneJob's status, nothing else."""
    name = trainer_account(owner)
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": metadata(owner, COMPONENT, name),
        "rules": [
            {
                "apiGroups": [GROUP],
                "resources": ["finetunejobs/status"],
                "resourceNames": [owner.name],
                "verbs": ["get", "patch"],
            }
        ],
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": metadata(owner, COMPONENT, name),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": owner.namespace}],
    }
    account = {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": metadata(owner, COMPONENT, name),
        "automountServiceAccountToken": False,  # only the training pod asks for its token
    }
    return [account, role, binding]


def trainer_image(spec: FineTuneJobSpec, images: Images) -> str:
    return spec.trainer.image or images.training(wants_gpu(spec.trainer))


def build_job(owner: Owner, spec: FineTuneJobSpec, images: Images | None = None) -> Obj:
    """`images`: the operator's configured images (its environment when not given)."""
    volumes, mounts = _volumes(spec)
    trainer = spec.trainer
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata(owner, COMPONENT),
        "spec": {
            "backoffLimit": trainer.backoff_limit,
            "activeDeadlineSeconds": trainer.active_deadline_seconds,
            # The operator keeps the FineTuneJob's status and never trains again once the
            # Job is gone, so the ended Job may go.
            "ttlSecondsAfterFinished": trainer.ttl_seconds_after_finished,
            # Exit code 2 is bad input (data, arguments): retrying cannot help. Other
            # failures retry, and a retry resumes from the last checkpoint.
            "podFailurePolicy": {
                "rules": [
                    {
                        "action": "FailJob",
                        "onExitCodes": {
                            "containerName": "trainer",
                            "operator": "In",
                            "values": [BAD_INPUT_EXIT_CODE],
                        },
                    }
                ]
            },
            "suspend": spec.suspend,
            "template": {
                "metadata": {"labels": labels(owner, COMPONENT)},
                "spec": {
                    "restartPolicy": "Never",
                    "serviceAccountName": trainer_account(owner),
                    # Its token reports progress to the FineTuneJob's status (the Role above).
                    "automountServiceAccountToken": True,
                    **scheduling(trainer),
                    "securityContext": restricted_pod_context(),
                    "containers": [
                        {
                            "name": "trainer",
                            "image": trainer_image(spec, images or configured()),
                            # The trainer writes its one-line error there; a crash leaves
                            # the log's tail instead. The FineTuneJob's Failed shows it.
                            "terminationMessagePolicy": "FallbackToLogsOnError",
                            "command": ["modelkube"],
                            "args": _args(spec),
                            "env": [
                                {"name": "MODELKUBE_CACHE_DIR", "value": CACHE_DIR},
                                {"name": "MODELKUBE_FINETUNEJOB", "value": owner.name},
                                *(env_var(e) for e in trainer.env),
                            ],
                            "resources": resources(trainer.resources, DEFAULT_REQUESTS),
                            "securityContext": restricted_container_context(),
                            "volumeMounts": mounts,
                        }
                    ],
                    "volumes": volumes,
                },
            },
        },
    }
