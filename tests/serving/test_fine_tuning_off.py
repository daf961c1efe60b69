"""The fine-tuning API is off unless asked for, and asked for, it needs a service account."""

import os
from pathlib import Path

import openai
import pytest

from modelkube_serving.services.fine_tuning import FineTuningSetupError, fine_tuning_settings
from tests.serving.test_cli import run_main


def test_fine_tuning_routes_are_absent_by_default(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        client.fine_tuning.jobs.list()
    with pytest.raises(openai.NotFoundError):
        client.files.create(file=("train.jsonl", b'{"text": "hi"}'), purpose="fine-tune")


def test_serve_without_a_service_account_fails_with_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in [k for k in os.environ if k.startswith("KUBERNETES_")]:
        monkeypatch.delenv(name)
    code, stderr = run_main(
        monkeypatch,
        capsys,
        *("serve", "--model", "builtin://tiny"),
        *("--fine-tuning-api", "--fine-tuning-output-claim", "adapters"),
    )
    assert code == 2
    assert stderr.strip().splitlines()[-1] == (
        "modelkube serve: error: --fine-tuning-api needs in-cluster credentials: "
        "not in a cluster: KUBERNETES_SERVICE_HOST is not set"
    )
    assert "Traceback" not in stderr


@pytest.fixture
def sa_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    monkeypatch.setenv("MODELKUBE_SERVICEACCOUNT_DIR", str(tmp_path))
    return tmp_path


def test_settings_come_from_the_pods_service_account(sa_dir: Path) -> None:
    for name, text in (("token", "t0k3n\n"), ("ca.crt", "PEM"), ("namespace", "team-a")):
        (sa_dir / name).write_text(text)
    settings = fine_tuning_settings("adapters", "hf://org/model@main")
    assert settings.credentials.server == "https://10.96.0.1:443"
    assert settings.credentials.namespace == "team-a"
    assert settings.credentials.token == "t0k3n"
    assert (settings.output_claim, settings.base_model_uri) == ("adapters", "hf://org/model@main")


@pytest.mark.parametrize(
    ("claim", "base", "files", "message"),
    [
        (None, "builtin://tiny", ("token", "ca.crt", "namespace"), "needs --fine-tuning-output"),
        ("Adapters!", "builtin://tiny", ("token", "ca.crt", "namespace"), "is no claim name"),
        ("adapters", "/models/x", ("token", "ca.crt", "namespace"), "must be a builtin://"),
        ("adapters", "builtin://tiny", (), "no service account token at"),
        ("adapters", "builtin://tiny", ("token", "ca.crt"), "namespace"),
        ("adapters", "builtin://tiny", ("token", "namespace"), "no CA certificate at"),
    ],
)
def test_what_fine_tuning_lacks_is_said_in_one_line(
    sa_dir: Path, claim: str | None, base: str, files: tuple[str, ...], message: str
) -> None:
    for name in files:
        (sa_dir / name).write_text("x")
    with pytest.raises(FineTuningSetupError, match=message) as caught:
        fine_tuning_settings(claim, base)
    assert "\n" not in str(caught.value)
