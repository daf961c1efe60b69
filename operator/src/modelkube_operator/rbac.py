"""The operator's permissions, written once: the ClusterRole's rules (chart, e2e tests).

Every verb and resource is listed explicitly: no wildcards.
"""

from typing import Any

from modelkube_operator.api import GROUP

READ = ["get", "list", "watch"]
MANAGE = [*READ, "create", "patch", "update", "delete"]

RULES: list[dict[str, Any]] = [
    {"apiGroups": [GROUP], "resources": ["modelservices"], "verbs": [*READ, "patch"]},
    # create: a runtime serving the fine-tuning API is granted it, and RBAC lets the operator
    # grant only what it holds.
    {"apiGroups": [GROUP], "resources": ["finetunejobs"], "verbs": [*READ, "create", "patch"]},
    {
        "apiGroups": [GROUP],
        "resources": ["modelservices/status", "finetunejobs/status"],
        "verbs": ["get", "patch", "update"],
    },
    {"apiGroups": [""], "resources": ["configmaps", "services"], "verbs": MANAGE},
    {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": MANAGE},
    {"apiGroups": ["autoscaling"], "resources": ["horizontalpodautoscalers"], "verbs": MANAGE},
    {"apiGroups": ["policy"], "resources": ["poddisruptionbudgets"], "verbs": MANAGE},
    {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": MANAGE},
    # A failed training pod's termination message: the trainer's one-line error.
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]},
    # Whether the claims adapters live on exist: pods mounting a missing one never start.
    {"apiGroups": [""], "resources": ["persistentvolumeclaims"], "verbs": ["get"]},
    # Each training pod gets its own account, allowed to patch its FineTuneJob's status only.
    # (Granting that Role needs the operator to hold get/patch on finetunejobs/status: above.)
    {"apiGroups": [""], "resources": ["serviceaccounts"], "verbs": MANAGE},
    {
        "apiGroups": ["rbac.authorization.k8s.io"],
        "resources": ["roles", "rolebindings"],
        "verbs": MANAGE,
    },
    {"apiGroups": ["monitoring.coreos.com"], "resources": ["servicemonitors"], "verbs": MANAGE},
    # KEDA's ScaledObject replaces the HPA when a ModelService asks for KEDA and it is installed.
    {"apiGroups": ["keda.sh"], "resources": ["scaledobjects"], "verbs": MANAGE},
    # The Inference Extension's InferencePool, when a ModelService asks for one.
    {
        "apiGroups": ["inference.networking.k8s.io"],
        "resources": ["inferencepools"],
        "verbs": MANAGE,
    },
    # To notice whether the Prometheus Operator's, KEDA's and the Inference Extension's CRDs exist.
    {
        "apiGroups": ["apiextensions.k8s.io"],
        "resources": ["customresourcedefinitions"],
        "verbs": READ,
    },
    {"apiGroups": ["", "events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]},
    # kopf watches namespaces when it serves several of them.
    {"apiGroups": [""], "resources": ["namespaces"], "verbs": READ},
]
