"""The runtime's own identity, only when it serves the OpenAI fine-tuning API.

Off (the default), the runtime pod has no service-account token at all. On, it may create
FineTuneJobs and dataset ConfigMaps in its namespace, read and patch (cancel) FineTuneJobs,
and nothing else.
"""

from modelkube_operator.api import GROUP
from modelkube_operator.api.modelservice import ModelServiceSpec
from modelkube_operator.builders.common import Obj, Owner, metadata

COMPONENT = "modelkube-runtime"
RUNTIME_RULES: list[Obj] = [
    {
        "apiGroups": [GROUP],
        "resources": ["finetunejobs"],
        "verbs": ["create", "get", "list", "patch"],
    },
    {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create", "get", "list"]},
]


def fine_tuning_api(spec: ModelServiceSpec) -> bool:
    return spec.fine_tuning_api is not None and spec.fine_tuning_api.enabled


def runtime_account(owner: Owner) -> str:
    return f"{owner.name}-runtime"


def build_runtime_access(owner: Owner, spec: ModelServiceSpec) -> dict[str, Obj | None]:
    """ServiceAccount, Role and RoleBinding by kind; None each when the API is off."""
    if not fine_tuning_api(spec):
        return {"ServiceAccount": None, "Role": None, "RoleBinding": None}
    name = runtime_account(owner)
    return {
        "ServiceAccount": {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": metadata(owner, COMPONENT, name),
            "automountServiceAccountToken": False,  # the pod asks for it explicitly
        },
        "Role": {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": metadata(owner, COMPONENT, name),
            "rules": RUNTIME_RULES,
        },
        "RoleBinding": {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": metadata(owner, COMPONENT, name),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": owner.namespace}],
        },
    }
