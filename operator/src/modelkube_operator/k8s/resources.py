"""Where each kind we touch lives in the API: one table, no discovery round-trips."""

from dataclasses import dataclass

from modelkube_operator.api import API_VERSION


@dataclass(frozen=True)
class Resource:
    api_version: str  # `v1` for the core group, otherwise `<group>/<version>`
    kind: str
    plural: str
    namespaced: bool = True

    @property
    def prefix(self) -> str:
        """`/api/v1` for the core group, `/apis/<group>/<version>` for the others."""
        return "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"

    @property
    def qualified(self) -> str:
        """`configmaps` or `finetunejobs.modelkube.io`, as RBAC and kubectl name it."""
        group = self.api_version.rpartition("/")[0]
        return f"{self.plural}.{group}" if group else self.plural

    def path(self, namespace: str | None, name: str | None = None) -> str:
        """The collection's path (every namespace's when `namespace` is None), or an object's."""
        if self.namespaced and namespace is not None:
            base = f"{self.prefix}/namespaces/{namespace}/{self.plural}"
        else:
            base = f"{self.prefix}/{self.plural}"
        return f"{base}/{name}" if name else base


RESOURCES: dict[tuple[str, str], Resource] = {
    (r.api_version, r.kind): r
    for r in (
        Resource("v1", "ConfigMap", "configmaps"),
        Resource("v1", "Event", "events"),
        Resource("v1", "PersistentVolumeClaim", "persistentvolumeclaims"),
        Resource("v1", "Pod", "pods"),
        Resource("v1", "Secret", "secrets"),
        Resource("v1", "Service", "services"),
        Resource("v1", "ServiceAccount", "serviceaccounts"),
        Resource("apps/v1", "Deployment", "deployments"),
        Resource("autoscaling/v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers"),
        Resource("batch/v1", "Job", "jobs"),
        Resource("discovery.k8s.io/v1", "EndpointSlice", "endpointslices"),
        Resource("policy/v1", "PodDisruptionBudget", "poddisruptionbudgets"),
        Resource("rbac.authorization.k8s.io/v1", "Role", "roles"),
        Resource("rbac.authorization.k8s.io/v1", "RoleBinding", "rolebindings"),
        Resource("monitoring.coreos.com/v1", "ServiceMonitor", "servicemonitors"),
        Resource("keda.sh/v1alpha1", "ScaledObject", "scaledobjects"),
        Resource("inference.networking.k8s.io/v1", "InferencePool", "inferencepools"),
        Resource(
            "apiextensions.k8s.io/v1",
            "CustomResourceDefinition",
            "customresourcedefinitions",
            namespaced=False,
        ),
        Resource(API_VERSION, "ModelService", "modelservices"),
        Resource(API_VERSION, "FineTuneJob", "finetunejobs"),
    )
}


def resource(api_version: str, kind: str) -> Resource:
    try:
        return RESOURCES[(api_version, kind)]
    except KeyError:
        raise KeyError(f"{kind} ({api_version}) is not in modelkube's resource table") from None
