"""kopf registration: thin handlers that call the reconcilers. Importing this registers them."""

import copy
import logging
from typing import Any, cast

import kopf

from modelkube_operator.api import GROUP, VERSION
from modelkube_operator.builders.common import MANAGED_BY
from modelkube_operator.k8s.client import Kube
from modelkube_operator.k8s.credentials import load_credentials
from modelkube_operator.reconcilers.finetunejob import reconcile_finetunejob
from modelkube_operator.reconcilers.modelservice import reconcile_child, reconcile_modelservice

RESYNC_S = 60.0
OURS = {"app.kubernetes.io/managed-by": MANAGED_BY}
_RECONCILERS = {"ModelService": reconcile_modelservice, "FineTuneJob": reconcile_finetunejob}


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    # kopf's bookkeeping lives in annotations under our domain, not in status.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    # Only warnings become Events by themselves: at INFO kopf would post one per handler run
    # per object, an API call each. Condition transitions are still posted (kopf.info/warn).
    settings.posting.level = logging.WARNING
    logging.getLogger("httpx").setLevel(logging.WARNING)
    settings.watching.server_timeout = 300
    memo.kube = Kube(load_credentials())


@kopf.on.cleanup()
async def close(memo: kopf.Memo, **_: Any) -> None:
    await memo.kube.close()


@kopf.on.login()
def login(**_: Any) -> kopf.ConnectionInfo:
    creds = load_credentials()
    return kopf.ConnectionInfo(
        server=creds.server,
        ca_path=creds.ca_file,
        insecure=creds.insecure,
        token=creds.token,
        certificate_path=creds.cert_file,
        private_key_path=creds.key_file,
        default_namespace=creds.namespace,
    )


async def _reconcile(memo: kopf.Memo, body: kopf.Body) -> None:
    _post(body, await _RECONCILERS[body["kind"]](memo.kube, body))


def _post(body: kopf.Body, transitions: list[dict[str, Any]]) -> None:
    """Each condition that changed becomes an Event on the resource."""
    for cond in transitions:
        post = kopf.info if cond["status"] == "True" or cond["type"] != "Ready" else kopf.warn
        message = f"{cond['type']}={cond['status']}: {cond['message']}"
        post(body, reason=cond["reason"], message=message)


@kopf.on.resume(GROUP, VERSION, "modelservices")
@kopf.on.create(GROUP, VERSION, "modelservices")
@kopf.on.update(GROUP, VERSION, "modelservices")
@kopf.on.resume(GROUP, VERSION, "finetunejobs")
@kopf.on.create(GROUP, VERSION, "finetunejobs")
@kopf.on.update(GROUP, VERSION, "finetunejobs")
async def reconcile(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    await _reconcile(memo, body)


@kopf.timer(GROUP, VERSION, "modelservices", interval=RESYNC_S, idle=RESYNC_S)
@kopf.timer(GROUP, VERSION, "finetunejobs", interval=RESYNC_S, idle=RESYNC_S)
async def resync(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """A safety net: child events already correct drift within seconds."""
    await _reconcile(memo, body)


@kopf.index(GROUP, VERSION, "modelservices")
@kopf.index(GROUP, VERSION, "finetunejobs")
def owners(body: kopf.Body, **_: Any) -> dict[tuple[str, str, str], dict[str, Any]]:
    """The custom resources in memory, so a child's event finds its owner without a GET.

    Only what the reconcilers read is kept: managedFields and kopf's annotations (one holds a
    whole copy of the spec) would double the memory and the copying on every event.
    """
    meta = body.metadata
    kept = {k: meta.get(k) for k in ("name", "namespace", "uid", "generation", "deletionTimestamp")}
    owner = {
        "apiVersion": body["apiVersion"],
        "kind": body["kind"],
        "metadata": kept,
        "spec": copy.deepcopy(dict(body.spec)),
        "status": copy.deepcopy(dict(body.status)),
    }
    return {(body["kind"], meta.namespace or "", meta.name or ""): owner}


@kopf.on.event("apps", "v1", "deployments", labels=OURS)
@kopf.on.event("", "v1", "services", labels=OURS)
@kopf.on.event("", "v1", "configmaps", labels=OURS)
@kopf.on.event("autoscaling", "v2", "horizontalpodautoscalers", labels=OURS)
@kopf.on.event("policy", "v1", "poddisruptionbudgets", labels=OURS)
@kopf.on.event("batch", "v1", "jobs", labels=OURS)
async def child_changed(body: kopf.Body, memo: kopf.Memo, **kwargs: Any) -> None:
    """A child changed or vanished (drift, a rollout, a finished Job): reconcile its owner."""
    owners: kopf.Index[tuple[str, str, str], dict[str, Any]] = kwargs["owners"]
    for ref in body.metadata.get("ownerReferences", []):
        if ref.get("apiVersion") != f"{GROUP}/{VERSION}" or ref["kind"] not in _RECONCILERS:
            continue
        for owner in owners.get((ref["kind"], body.metadata.namespace or "", ref["name"]), []):
            if owner["metadata"]["uid"] != ref["uid"] or owner["metadata"].get("deletionTimestamp"):
                continue
            if ref["kind"] == "ModelService":
                transitions = await reconcile_child(memo.kube, owner, body)
            else:
                transitions = await reconcile_finetunejob(memo.kube, owner)
            _post(kopf.Body(cast(kopf.RawBody, owner)), transitions)
