"""`modelkube chart --write charts/modelkube`: the chart's files that are generated.

The CRD templates and the ClusterRole come from the operator's code (the same source as crds/
and the e2e tests' RBAC); values.schema.json and README.md come from values.yaml's `## @param`
comments. A test fails when any of them drifts from what this writes.
"""

import json
from pathlib import Path

import yaml

from modelkube_operator.chart.readme import render_readme
from modelkube_operator.chart.schema import build_schema
from modelkube_operator.chart.templates import clusterrole_template, crd_templates
from modelkube_operator.chart.values import ValuesError, parse

__all__ = ["ValuesError", "chart_files"]


def chart_files(chart: Path) -> dict[str, str]:
    """Every generated file of the chart in `chart`, by path relative to it."""
    values = parse((chart / "values.yaml").read_text())
    metadata = yaml.safe_load((chart / "Chart.yaml").read_text())
    return {
        **crd_templates(),
        **clusterrole_template(),
        "values.schema.json": json.dumps(build_schema(values), indent=2) + "\n",
        "README.md": render_readme(values, metadata),
    }
