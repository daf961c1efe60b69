"""Generated values on the chart: `helm template` either renders parseable manifests or refuses
the values with one readable message (the schema's, or the chart's own `fail`), never a YAML
parse error in a template or a template that breaks on a value of the type the schema allows.

Derandomized, as tests/serving/test_fuzz.py is, so CI sees the same examples every time (a
random run found the unquoted CIDR here once, and would have failed CI on that day alone);
MODELKUBE_FUZZ_EXAMPLES explores further with fresh examples."""

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.chart.helm import CHART, KUBE_VERSION, NAMESPACE, RELEASE, helm

SCHEMA = json.loads((CHART / "values.schema.json").read_text())
# What a user may see when helm refuses values: the schema's words, or the chart's own `fail`.
CLEAR_REFUSALS = ("values don't meet the specifications of the schema", "execution error at (")

# Strings as users type them into values: plain words and the characters YAML treats specially.
TEXT = st.one_of(
    st.from_regex(r"[a-z0-9]([-a-z0-9.]{0,20}[a-z0-9])?", fullmatch=True),
    st.text(alphabet=st.sampled_from("aZ09 -_.:/#{}[]'\"&*!|>%@`,?\\\n\t"), max_size=12),
)


def _leaves(node: dict[str, Any], path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    if node.get("type") == "object" and "properties" in node:
        return [
            leaf
            for key, child in node["properties"].items()
            for leaf in _leaves(child, (*path, key))
        ]
    return [(path, node)]


LEAVES = _leaves(SCHEMA)


def _sections(node: dict[str, Any], path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every documented object below the top: helm drops what a user sets to null, whole
    sections included."""
    children = node.get("properties", {}) if node.get("type") == "object" else {}
    found = [path] if path and children else []
    return found + [s for key, child in children.items() for s in _sections(child, (*path, key))]


SECTIONS = _sections(SCHEMA)


def _value_of(node: dict[str, Any]) -> st.SearchStrategy[Any]:
    """A value of the leaf's declared type, across its whole range."""
    kind = node.get("type")
    kinds = kind if isinstance(kind, list) else [kind]
    options: list[st.SearchStrategy[Any]] = []
    for k in kinds:
        if k == "string":
            options.append(TEXT)
        elif k == "integer":
            options.append(st.integers(min_value=-(2**40), max_value=2**40))
        elif k == "number":
            options.append(st.floats(allow_nan=False, allow_infinity=False, width=32))
        elif k == "boolean":
            options.append(st.booleans())
        elif k == "array":
            options.append(st.lists(_value_of(node.get("items", {"type": "string"})), max_size=3))
        elif k == "object":
            options.append(st.dictionaries(TEXT, TEXT, max_size=3))
    return st.one_of(options)


ANY = st.one_of(TEXT, st.integers(), st.booleans(), st.lists(TEXT, max_size=2), st.none())


# The switches that decide which templates render at all: each example flips them at random.
SWITCHES = [path for path, node in LEAVES if path[-1] == "enabled"]


@st.composite
def values(draw: st.DrawFn) -> dict[str, Any]:
    """A values file setting a few leaves, mostly of their type, sometimes of any, with the
    switches flipped at random, and now and then a section set to null."""
    chosen = draw(
        st.lists(st.sampled_from(LEAVES), min_size=1, max_size=4, unique_by=lambda x: x[0])
    )
    settings: list[tuple[tuple[str, ...], Any]] = [(p, draw(st.booleans())) for p in SWITCHES]
    for path, node in chosen:
        typed = _value_of(node)
        settings.append((path, draw(st.one_of(typed, ANY) if draw(st.booleans()) else typed)))
    if draw(st.integers(0, 3)) == 0:  # now and then a whole section nulled, last
        settings.append((draw(st.sampled_from(SECTIONS)), None))
    out: dict[str, Any] = {}
    for path, value in settings:
        target = out
        for key in path[:-1]:
            target = target.setdefault(key, {})
            if target is None:  # inside a section nulled already
                break
        if target is None:
            continue
        target[path[-1]] = value
    return out


@settings(
    max_examples=int(os.environ.get("MODELKUBE_FUZZ_EXAMPLES", "60")),
    deadline=None,
    derandomize="MODELKUBE_FUZZ_EXAMPLES" not in os.environ,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(values())
def test_generated_values_render_or_are_refused_clearly(chosen: dict[str, Any]) -> None:
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        yaml.safe_dump(chosen, f)
    try:
        out = helm(
            "template", RELEASE, str(CHART), "--namespace", NAMESPACE,
            "--kube-version", KUBE_VERSION, "--values", f.name, check=False,
        )  # fmt: skip
    finally:
        Path(f.name).unlink()
    errors = [line for line in out.splitlines() if line.startswith("Error:")]
    if errors:
        assert any(r in errors[0] for r in CLEAR_REFUSALS), (chosen, out[:600])
        return
    for doc in yaml.safe_load_all(out):
        assert doc is None or {"apiVersion", "kind", "metadata"} <= set(doc), (chosen, doc)
