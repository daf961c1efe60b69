"""Hypothesis strategies for the objects a CRD's structural schema accepts (types, enums,
patterns, lengths, bounds, list-map keys): what a user could get past the OpenAPI part of the
API server's validation. CEL rules are not modelled; the pydantic model behind the CRD
checks those."""

import re
import string
from typing import Any

from hypothesis import strategies as st

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.text(string.ascii_lowercase, max_size=5),
    lambda inner: (
        st.lists(inner, max_size=2)
        | st.dictionaries(
            st.text(string.ascii_lowercase, min_size=1, max_size=5), inner, max_size=2
        )
    ),
    max_leaves=4,
)
_TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12)


def from_schema(node: dict[str, Any]) -> st.SearchStrategy[Any]:
    if node.get("x-kubernetes-preserve-unknown-fields"):
        return st.dictionaries(
            st.text(string.ascii_letters, min_size=1, max_size=8), JSON, max_size=2
        )
    if "enum" in node:
        return st.sampled_from(node["enum"])
    kind = node.get("type")
    if kind == "object":
        return _object(node)
    if kind == "array":
        return _array(node)
    if kind == "string":
        return _string(node)
    if kind == "integer":
        return st.integers(node.get("minimum", -(2**31)), node.get("maximum", 2**31))
    if kind == "number":
        low = node.get("minimum")
        return st.floats(
            low, node.get("maximum"), allow_nan=False, allow_infinity=False,
            exclude_min=bool(node.get("exclusiveMinimum")),
        )  # fmt: skip
    if kind == "boolean":
        return st.booleans()
    return JSON


def _object(node: dict[str, Any]) -> st.SearchStrategy[Any]:
    properties = node.get("properties")
    if properties is None:
        values = from_schema(node.get("additionalProperties") or {"type": "string"})
        keys = st.text(string.ascii_letters + string.digits + "-_./", min_size=1, max_size=16)
        return st.dictionaries(keys, values, max_size=min(node.get("maxProperties", 3), 3))
    required = set(node.get("required", ()))
    return st.fixed_dictionaries(
        {k: from_schema(v) for k, v in properties.items() if k in required},
        optional={k: from_schema(v) for k, v in properties.items() if k not in required},
    )


def _array(node: dict[str, Any]) -> st.SearchStrategy[Any]:
    keys = node.get("x-kubernetes-list-map-keys")
    return st.lists(
        from_schema(node.get("items") or {}),
        max_size=min(node.get("maxItems", 3), 3),
        unique_by=(lambda item: tuple(item.get(k) for k in keys)) if keys else None,
    )


def _string(node: dict[str, Any]) -> st.SearchStrategy[str]:
    low, high = node.get("minLength", 0), node.get("maxLength", 64)
    pattern = node.get("pattern")
    if pattern is None:
        return _TEXT.filter(lambda s: low <= len(s) <= high)

    def fits(s: str) -> bool:
        # Go's regexp (the API server's) has no Python `$` before a trailing newline.
        return low <= len(s) <= high and not s.endswith("\n") and bool(re.search(pattern, s))

    return st.from_regex(pattern, fullmatch=True).filter(fits)
