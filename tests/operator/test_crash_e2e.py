"""kill -9 the operator while it handles 50 new ModelServices; a restart converges them all."""

import itertools
import signal
import ssl
from concurrent.futures import ThreadPoolExecutor

import httpx
import yaml

from tests.controlplane.cluster import ControlPlane
from tests.operator.harness import OperatorProcess, operator_kubeconfig, wait_until

COUNT = 50
_runs = itertools.count()


def test_operator_killed_mid_burst_converges_after_restart(control_plane: ControlPlane) -> None:
    cp = control_plane
    namespace = f"crash-{next(_runs)}"
    cp.kubectl("create", "namespace", namespace)
    kubeconfig = operator_kubeconfig(cp)
    log = cp.workdir / f"operator-{namespace}.log"
    first = OperatorProcess(kubeconfig, log, namespaces=namespace).start()
    docs = [
        {
            "apiVersion": "modelkube.io/v1alpha1",
            "kind": "ModelService",
            "metadata": {"name": f"ms-{i}", "namespace": namespace},
            "spec": {"model": {"uri": "builtin://tiny"}, "replicas": 1},
        }
        for i in range(COUNT)
    ]

    def deployments() -> list[str]:
        return cp.kubectl("get", "deploy", "-n", namespace, "-o", "name").stdout.split()

    # A watch on the API server, open before the apply: polled with kubectl (each call slower
    # than the operator's whole burst), the first Deployment was seen once all 50 were there.
    context = ssl.create_default_context(cafile=str(cp.ca_file))
    headers = {"Authorization": f"Bearer {cp.admin_token}"}
    url = f"{cp.server}/apis/apps/v1/namespaces/{namespace}/deployments?watch=1"
    with (
        httpx.Client(verify=context, headers=headers, timeout=30) as api,
        api.stream("GET", url) as events,
        ThreadPoolExecutor() as pool,
    ):
        applied = pool.submit(cp.kubectl, "apply", "-f", "-", stdin=yaml.safe_dump_all(docs))
        next(line for line in events.iter_lines() if line)  # the first one's ADDED event
        assert first.proc is not None
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait()
        applied.result()
    partial = len(deployments())
    assert partial < COUNT, "the operator was killed after the burst, not in it"

    second = OperatorProcess(kubeconfig, log, namespaces=namespace).start()
    try:
        wait_until(lambda: len(deployments()) == COUNT, 60, f"{COUNT} deployments\n{second.log()}")

        def not_ready() -> list[str]:
            ready = '{.status.conditions[?(@.type=="Ready")].status}'
            query = f'{{range .items[*]}}{{.metadata.name}}={ready}{{"\\n"}}{{end}}'
            out = cp.kubectl("get", "ms", "-n", namespace, "-o", f"jsonpath={query}").stdout
            return [line for line in out.split() if not line.endswith("=True")]

        try:
            wait_until(lambda: not not_ready(), 120, "every ModelService Ready")
        except TimeoutError as exc:
            detail = cp.kubectl("get", "ms,deploy,pods", "-n", namespace).stdout
            raise TimeoutError(f"{exc}: {not_ready()}\n{detail}\n{second.log()[-6000:]}") from exc
    finally:
        second.stop()
    names = sorted(deployments())
    assert names == sorted(f"deployment.apps/ms-{i}" for i in range(COUNT))  # none duplicated
    owned = cp.kubectl(
        "get",
        "deploy,svc,cm",
        "-n",
        namespace,
        "-l",
        "app.kubernetes.io/managed-by=modelkube-operator",
        "-o",
        "name",
    ).stdout.split()
    assert len(owned) == 3 * COUNT  # no orphans, no extras
    print(f"{partial}/{COUNT} deployments existed when the operator was killed")
