"""`modelkube gateway` refuses bad input with one readable line and exit status 2."""

from pathlib import Path

import pytest

from modelkube_serving.cli import main


def test_a_load_bound_below_one_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["gateway", "--load-bound", "0.5"])
    assert exit_.value.code == 2
    assert "--load-bound: must be at least 1, got 0.5" in capsys.readouterr().err


def test_no_cluster_to_watch_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    missing = tmp_path / "nowhere.kubeconfig"
    assert main(["gateway", "--kubeconfig", str(missing)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("modelkube gateway: error: ") and str(missing) in err
    assert "\n" not in err


def test_an_empty_keys_file_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    keys = tmp_path / "keys"
    keys.write_text("# none\n")
    assert main(["gateway", "--api-keys-file", str(keys)]) == 2
    assert "holds no keys" in capsys.readouterr().err
