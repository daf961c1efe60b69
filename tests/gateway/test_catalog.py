"""The catalog: what the watch feeds in, and the model names and endpoints read out."""

from typing import Any

from modelkube_serving.gateway.catalog import Catalog, ready_endpoints, service_view


def ms(namespace: str, name: str, **spec: Any) -> dict[str, Any]:
    return {"metadata": {"namespace": namespace, "name": name}, "spec": spec}


def eps(namespace: str, name: str, service: str, *endpoints: dict[str, Any]) -> dict[str, Any]:
    return {
        "metadata": {
            "namespace": namespace,
            "name": name,
            "labels": {"kubernetes.io/service-name": service},
        },
        "ports": [{"name": "metrics", "port": 9090}, {"name": "http", "port": 8000}],
        "endpoints": list(endpoints),
    }


def pod(ip: str, **conditions: bool) -> dict[str, Any]:
    return {"addresses": [ip], "conditions": conditions}


def test_only_ready_endpoints_that_are_not_terminating_on_the_http_port() -> None:
    found = ready_endpoints(
        eps(
            "a",
            "s1",
            "chat",
            pod("10.0.0.1", ready=True),
            pod("10.0.0.2", ready=False),
            pod("10.0.0.3", ready=True, terminating=True),
            pod("10.0.0.4"),  # no conditions: ready, as the API says
        )
    )
    assert found == ("10.0.0.1:8000", "10.0.0.4:8000")
    assert ready_endpoints({"metadata": {}, "endpoints": [pod("10.0.0.1")]}) == ()


def test_a_service_may_scale_to_zero_only_with_min_replicas_zero() -> None:
    view = service_view(ms("a", "s", autoscaling={"minReplicas": 0, "idleSeconds": 5}))
    assert view.scales_to_zero and view.idle_s == 5 and view.replicas == 1
    assert not service_view(ms("a", "s", autoscaling={"minReplicas": 1})).scales_to_zero
    assert not service_view(ms("a", "s", replicas=0)).scales_to_zero


def test_models_resolve_by_service_and_adapter_and_slices_come_and_go() -> None:
    catalog = Catalog()
    catalog.replace("ModelService", [ms("a", "chat", adapters=[{"name": "sql"}]), ms("a", "x")])
    catalog.put_slice(eps("a", "chat-1", "chat", pod("10.0.0.1")))
    catalog.put_slice(eps("b", "chat-2", "chat", pod("10.0.0.9")))  # another namespace's
    target = catalog.resolve("chat:sql")
    assert target is not None and target.adapter == "sql"
    assert catalog.endpoints(target.service) == ["10.0.0.1:8000"]
    assert catalog.resolve("chat:nope") is None and catalog.resolve("nope") is None
    assert catalog.models() == ["chat", "chat:sql", "x"]
    catalog.drop_slice("a", "chat-1")
    assert catalog.endpoints(target.service) == []
    catalog.drop_service("a", "x")
    assert catalog.models() == ["chat", "chat:sql"]


def test_the_same_name_in_two_namespaces_is_served_from_the_first() -> None:
    catalog = Catalog()
    catalog.put_service(ms("zeta", "chat"))
    catalog.put_service(ms("alpha", "chat"))
    target = catalog.resolve("chat")
    assert target is not None and target.service.namespace == "alpha"
