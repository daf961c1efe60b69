"""The chart's generated files match their sources, and every value is documented."""

import json
import shutil
from pathlib import Path

import pytest
import yaml
from modelkube_operator.__main__ import main as operator_main
from modelkube_operator.chart import ValuesError, chart_files
from modelkube_operator.chart.templates import literal
from modelkube_operator.chart.values import parse

from tests.chart.helm import CHART, RELEASE, helm

FIX = "run `uv run modelkube chart --write charts/modelkube`"


def test_generated_files_match_their_sources() -> None:
    for name, text in chart_files(CHART).items():
        path = CHART / name
        assert path.exists(), f"{path} missing: {FIX}"
        assert path.read_text() == text, f"{path} drifted: {FIX}"


def test_a_value_without_a_param_comment_is_refused() -> None:
    with pytest.raises(ValuesError, match="replicas has no"):
        parse("## @section S\n## @param image.tag The tag\nimage:\n  tag: x\nreplicas: 1\n")
    with pytest.raises(ValuesError, match=r"not in values\.yaml"):
        parse("## @section S\n## @param replicas Pods\nreplicaCount: 1\n")


def test_readme_has_a_row_for_every_param() -> None:
    readme = (CHART / "README.md").read_text()
    for path in parse((CHART / "values.yaml").read_text()).params():
        assert f"| `{path}` |" in readme, path


def test_schema_is_draft_07_and_closed_at_the_top() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    assert schema["additionalProperties"] is False
    image = schema["properties"]["image"]
    assert image["additionalProperties"] is False
    assert image["properties"]["tag"]["type"] == "string"
    assert image["properties"]["tag"]["description"]
    assert "additionalProperties" not in schema["properties"]["nodeSelector"]


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("replicaCont=1", "additional properties 'replicaCont' not allowed"),
        ("image.tags=v1", "additional properties 'tags' not allowed"),
        ("replicaCount=one", "got string, want integer"),
        ("crds.enabled=maybe", "got string, want boolean"),
        ("gateway.drainSeconds=-1", "at '/gateway/drainSeconds'"),
        ("metrics.port=70000", "at '/metrics/port'"),
        ("readinessProbe.periodSeconds=0", "at '/readinessProbe/periodSeconds'"),
        ("image.tag=a: b", "at '/image/tag'"),
        ("networkPolicy.apiServerCIDRs={:}", "at '/networkPolicy/apiServerCIDRs/0'"),
        ("networkPolicy.apiServerCIDRs={10.0.0.0}", "at '/networkPolicy/apiServerCIDRs/0'"),
        # null drops the chart's default before the schema sees the values: a key with a
        # default is required, so the refusal names it (not a template's type error, nor an
        # alert rendered with an empty field)
        (
            "monitoring.prometheusRule.enabled=true,monitoring.prometheusRule.rateWindow=null",
            "at '/monitoring/prometheusRule': missing property 'rateWindow'",
        ),
        (
            "monitoring.prometheusRule.runbookURL=null",
            "at '/monitoring/prometheusRule': missing property 'runbookURL'",
        ),
        ("monitoring.prometheusRule.errorRatio.for=null", "missing property 'for'"),
        ("gateway.enabled=null", "at '/gateway': missing property 'enabled'"),
        ("monitoring=null", "at '': missing property 'monitoring'"),
    ],
)
def test_helm_refuses_values_the_schema_refuses(setting: str, message: str) -> None:
    out = helm("template", RELEASE, str(CHART), "--set", setting, check=False)
    assert message in out


def test_null_says_none_for_free_form_maps_and_lists() -> None:
    """helm's way to drop a default map (`nodeSelector: null`) stays allowed where the map is
    free-form: the pod gets none."""
    out = helm(
        "template", RELEASE, str(CHART),
        "--set", "nodeSelector=null,resources=null,networkPolicy.apiServerCIDRs=null",
    )  # fmt: skip
    operator = next(d for d in yaml.safe_load_all(out) if d and d["kind"] == "Deployment")
    assert "nodeSelector" not in operator["spec"]["template"]["spec"]


def test_free_form_values_take_any_keys() -> None:
    helm("template", RELEASE, str(CHART), "--set", "nodeSelector.pool=cpu,podLabels.team=a")


def test_modelkube_chart_writes_the_generated_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("Chart.yaml", "values.yaml"):
        shutil.copy(CHART / name, tmp_path / name)
    assert operator_main(["chart", "--write", str(tmp_path)]) == 0
    for name, text in chart_files(CHART).items():
        assert (tmp_path / name).read_text() == text
    assert "wrote" in capsys.readouterr().out
    assert operator_main(["chart", "--write", str(tmp_path)]) == 0  # nothing left to write
    assert "wrote" not in capsys.readouterr().out


def test_the_operator_image_entry_point_has_the_operator_commands(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        operator_main(["operator", "--help"])
    usage = capsys.readouterr().out
    assert "--all-namespaces" in usage and "--liveness" in usage and "--metrics-port" in usage


def test_generated_templates_print_braces_literally() -> None:
    """A CRD description or CEL rule with `{{` must reach the API server as written."""
    assert literal("a {{ b }} c") == 'a {{ "{{" }} b {{ "}}" }} c'
