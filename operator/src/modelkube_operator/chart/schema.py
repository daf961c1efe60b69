"""values.schema.json from values.yaml: types from the defaults (or the @param modifiers),
descriptions from the @param comments, and no unknown keys where the keys are documented."""

from typing import Any

from modelkube_operator.chart.values import Param, Values, lookup

DRAFT_07 = "http://json-schema.org/draft-07/schema#"
_SCALARS = {bool: "boolean", int: "integer", float: "number", str: "string"}


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
    return {"type": "object", "additionalProperties": False, "properties": properties}


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
    return node


def _type(value: Any) -> str:
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    if value is None:
        return "null"
    return _SCALARS[type(value)]
