"""values.schema.json from values.yaml: types from the defaults (or the @param modifiers),
descriptions from the @param comments, and no unknown keys where the keys are documented."""

from typing import Any

from modelkube_operator.chart.values import Param, Values, exists, lookup

DRAFT_07 = "http://json-schema.org/draft-07/schema#"
_SCALARS = {bool: "boolean", int: "integer", float: "number", str: "string"}

# What Kubernetes, the image reference grammar or Prometheus demand of a value anyway, checked
# by `helm` up front with the value's path: otherwise a stray `:` or quote surfaces as a YAML
# parse error inside a template, or as a refusal at install time. Empty strings stay allowed
# where the default is empty ("use the chart's choice").
_DNS_LABEL = {"pattern": r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?)?$", "maxLength": 63}
_DNS_SUBDOMAIN = {
    "pattern": r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*)?$",
    "maxLength": 253,
}
_DURATION = {"pattern": r"^([0-9]+(ms|s|m|h|d|w|y))+$"}
_SERVICE_TYPE = {"enum": ["ClusterIP", "NodePort", "LoadBalancer"]}
_COUNT = {"minimum": 0}
# An IPv4 or IPv6 range as NetworkPolicy's ipBlock takes it (address/prefix length).
_CIDR = {
    "type": "string",
    "pattern": r"^((25[0-5]|2[0-4][0-9]|1?[0-9]?[0-9])(\.(25[0-5]|2[0-4][0-9]|1?[0-9]?[0-9])){3}"
    r"/(3[0-2]|[12]?[0-9])|[0-9a-fA-F:]*:[0-9a-fA-F:.]*/(12[0-8]|1[01][0-9]|[1-9]?[0-9]))$",
}
_AT_LEAST_ONE = {"minimum": 1}  # what Kubernetes demands of a probe's period and thresholds
_BY_KEY: dict[str, dict[str, Any]] = {
    # host[:port] then lowercase path components, as `docker pull` parses a repository
    "repository": {
        "pattern": r"^([a-zA-Z0-9][a-zA-Z0-9.-]*(:[0-9]+)?/)?[a-z0-9]+([._-]+[a-z0-9]+)*"
        r"(/[a-z0-9]+([._-]+[a-z0-9]+)*)*$|^$"
    },
    "tag": {"pattern": r"^([A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?$"},
    "digest": {"pattern": r"^([a-z0-9]+([+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,})?$"},
    "pullPolicy": {"enum": ["Always", "IfNotPresent", "Never"]},
    "severity": {"pattern": r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"},
    "for": _DURATION,
    "interval": _DURATION,
    "scrapeTimeout": _DURATION,
    "rateWindow": _DURATION,
    "port": {"minimum": 1, "maximum": 65535},
    "periodSeconds": _AT_LEAST_ONE,
    "timeoutSeconds": _AT_LEAST_ONE,
    "failureThreshold": _AT_LEAST_ONE,
    "replicaCount": _COUNT,
    "revisionHistoryLimit": _COUNT,
    "afterMinutes": _COUNT,
    "threshold": {"minimum": 0, "maximum": 1},  # the alerts' ratios
}
_BY_PATH: dict[str, dict[str, Any]] = {
    "nameOverride": _DNS_LABEL,
    "fullnameOverride": _DNS_LABEL,
    "priorityClassName": _DNS_SUBDOMAIN,
    "serviceAccount.name": _DNS_SUBDOMAIN,
    "gateway.namespace": _DNS_LABEL,
    "gateway.apiKeysSecret": _DNS_SUBDOMAIN,
    "gateway.loadBound": {"pattern": r"^[0-9]+(\.[0-9]+)?$"},
    "gateway.front": {"enum": ["uvicorn", "native"]},
    "gateway.service.type": _SERVICE_TYPE,
    "service.type": _SERVICE_TYPE,
    "podDisruptionBudget.maxUnavailable": {"pattern": r"^[0-9]+%$", "minimum": 0},
    "monitoring.dashboards.namespace": _DNS_LABEL,
    "monitoring.prometheusRule.runbookURL": {"pattern": r"^https?://[^\s\"'`]+$"},
    "networkPolicy.apiServerCIDRs": {"items": _CIDR},
}


def build_schema(values: Values) -> dict[str, Any]:
    return {"$schema": DRAFT_07, "title": "modelkube chart values", **_object(values, "")}


def _object(values: Values, prefix: str) -> dict[str, Any]:
    """An object whose keys are documented one by one: nothing else is accepted."""
    node = lookup(values.data, prefix) if prefix else values.data
    keys = list(node) if isinstance(node, dict) else []
    for path in values.params():  # @extra keys exist only in the comments
        if path.startswith(prefix) and (key := path[len(prefix) :].split(".")[0]) not in keys:
            keys.append(key)
    properties = {key: _node(values, f"{prefix}{key}") for key in keys}
    node_schema: dict[str, Any] = {
        "type": "object",
        "additionalProperties": False,
        "properties": properties,
    }
    if required := [key for key in keys if _needs_a_value(values, f"{prefix}{key}")]:
        node_schema["required"] = required
    return node_schema


def _needs_a_value(values: Values, path: str) -> bool:
    """helm drops a key its user sets to null before the schema sees the values, so a
    template would get nothing where the chart has a default: an alert with an empty `for:`,
    a `true` switch turned off, every key of a section gone. Such a key is required: null is
    refused, naming it. Free-form maps and lists stay optional: null says "none" there (as
    helm's docs use it, `nodeSelector: null`), and so does it for a string whose default is
    empty."""
    param = values.params().get(path)
    if (param is not None and (param.nullable or param.extra)) or not exists(values.data, path):
        return False
    default = lookup(values.data, path)
    if isinstance(default, dict):
        return any(p.startswith(f"{path}.") for p in values.params())
    return type(default) in _SCALARS and default != ""


def _node(values: Values, path: str) -> dict[str, Any]:
    param = values.params().get(path)
    documented_below = any(p.startswith(f"{path}.") for p in values.params())
    if documented_below:
        node = _object(values, f"{path}.")
        if param is not None:  # documented as a whole too: free-form beyond the listed keys
            node.pop("additionalProperties")
            node["description"] = param.description
        return node
    if param is None:  # @skip
        return {}
    return _leaf(param, lookup(values.data, path))


def _leaf(param: Param, default: Any) -> dict[str, Any]:
    types = list(param.types) or ([] if param.extra else [_type(default)])
    if param.nullable:
        types.append("null")
    node: dict[str, Any] = {"type": types[0] if len(types) == 1 else types} if types else {}
    node["description"] = param.description
    if isinstance(default, list) and default:
        item_types = {_type(item) for item in default}
        if len(item_types) == 1 and (item_type := item_types.pop()) not in ("object", "array"):
            node["items"] = {"type": item_type}
    if type(default) in _SCALARS:
        node["default"] = default
    return node | _formats(param.path)


def _formats(path: str) -> dict[str, Any]:
    key = path.rsplit(".", 1)[-1]
    # Any other span of seconds (a delay, a drain, a hold) is at least 0.
    return _BY_PATH.get(path) or _BY_KEY.get(key) or (_COUNT if key.endswith("Seconds") else {})


def _type(value: Any) -> str:
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    if value is None:
        return "null"
    return _SCALARS[type(value)]
