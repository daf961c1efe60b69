"""kill -9 the operator while it handles 50 new ModelServices; a restart converges them all."""

import itertools
import signal

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
    cp.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(docs))

    def deployments() -> list[str]:
        return cp.kubectl("get", "deploy", "-n", namespace, "-o", "name").stdout.split()

    wait_until(lambda: len(deployments()) >= 1, 30, "the first deployment")
    assert first.proc is not None
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait()
    partial = len(deployments())

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
