"""The chart's alert rules, rendered by the real helm, checked and unit-tested by promtool."""

import subprocess
from pathlib import Path

import yaml

from tests.observability.prometheus import tool
from tests.observability.queries import alerts, rule_groups

HERE = Path(__file__).parent
UNIT_TESTS = HERE / "alerts_test.yaml"


def write_rules(directory: Path) -> Path:
    path = directory / "rendered-rules.yaml"
    path.write_text(yaml.safe_dump({"groups": rule_groups()}, sort_keys=False))
    return path


def promtool(*args: str) -> str:
    done = subprocess.run([tool("promtool"), *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"promtool {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_promtool_checks_the_rendered_rules(tmp_path: Path) -> None:
    out = promtool("check", "rules", str(write_rules(tmp_path)))
    assert f"SUCCESS: {len(alerts())} rules found" in out


def test_every_alert_fires_as_its_unit_test_expects(tmp_path: Path) -> None:
    write_rules(tmp_path)  # beside the copy: its rule_files name is relative to it
    path = tmp_path / UNIT_TESTS.name
    path.write_text(UNIT_TESTS.read_text())
    assert "SUCCESS" in promtool("test", "rules", str(path))
    suite = yaml.safe_load(UNIT_TESTS.read_text())
    tested = {
        case["alertname"]
        for group in suite["tests"]
        for case in group["alert_rule_test"]
        if case.get("exp_alerts")
    }
    assert tested == set(alerts()), "every alert needs a unit test that makes it fire"


def test_every_alert_says_what_broke_and_where_to_look() -> None:
    for name, rule in alerts().items():
        notes = rule["annotations"]
        assert {"summary", "description", "runbook_url"} <= set(notes), name
        assert notes["runbook_url"].endswith(f"runbooks.md#{name.lower()}"), name
        assert rule["labels"]["severity"] in ("critical", "warning", "info"), name
    runbooks = (HERE.parents[1] / "charts" / "modelkube" / "docs" / "runbooks.md").read_text()
    for name in alerts():
        assert f"## {name}\n" in runbooks, f"runbooks.md has no section for {name}"


def test_thresholds_come_from_values(tmp_path: Path) -> None:
    rule = {
        "errorRatio": {"threshold": 0.2},
        "timeToFirstToken": {"p95Seconds": 7},
        "queueSaturation": {"for": "2m"},
        "fineTuneJobStalled": {"afterMinutes": 45},
        "upstreamErrors": {"threshold": 0.25},
        "upstreamCircuitOpen": {"for": "10m", "severity": "critical"},
        "rateWindow": "10m",
    }
    values = tmp_path / "values.yaml"  # --set would pass 0.2 as a string
    values.write_text(yaml.safe_dump({"monitoring": {"prometheusRule": rule}}))
    tuned = alerts(values)
    assert tuned["ModelKubeHighErrorRatio"]["expr"].endswith("> 0.2")
    assert "[10m]" in tuned["ModelKubeHighErrorRatio"]["expr"]
    assert tuned["ModelKubeSlowTimeToFirstToken"]["expr"].endswith("> 7")
    assert tuned["ModelKubeQueueSaturated"]["for"] == "2m"
    assert "> 45 * 60" in tuned["ModelKubeFineTuneJobStalled"]["expr"]
    assert tuned["ModelKubeUpstreamErrors"]["expr"].endswith("> 0.25")
    assert "[10m]" in tuned["ModelKubeUpstreamErrors"]["expr"]
    circuit = tuned["ModelKubeUpstreamCircuitOpen"]
    assert (circuit["for"], circuit["labels"]["severity"]) == ("10m", "critical")
