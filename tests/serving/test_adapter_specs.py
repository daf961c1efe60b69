"""Adapter names, flags, the adapters file, adapter configs and adapter URIs (pure parts)."""

import json
from pathlib import Path

import pytest

from modelkube_serving.models import uri
from modelkube_serving.models.adapters import (
    AdapterSpec,
    AdapterSpecError,
    check_name,
    fingerprint,
    parse_adapter_arg,
    parse_adapters_file,
    read_adapter_config,
)
from modelkube_serving.models.uri import AdapterNotReady, ModelSourceError, resolve_adapter


@pytest.mark.parametrize("name", ["a", "lora-1", "0x", "a" * 63])
def test_dns_labels_are_adapter_names(name: str) -> None:
    assert check_name(name) == name


@pytest.mark.parametrize("name", ["", "A", "-a", "a-", "a_b", "a.b", "a:b", "a" * 64])
def test_other_names_are_refused(name: str) -> None:
    with pytest.raises(AdapterSpecError, match="is not a DNS label"):
        check_name(name)


def test_flag_splits_at_the_first_equals_sign() -> None:
    assert parse_adapter_arg("a=pvc://c/x=y") == AdapterSpec("a", "pvc://c/x=y")
    for bad in ("a", "a=", "=x"):
        with pytest.raises(AdapterSpecError):
            parse_adapter_arg(bad)


def test_adapters_file_skips_bad_entries_and_keeps_the_rest() -> None:
    text = json.dumps(
        {
            "adapters": [
                {"name": "a", "uri": "/x"},
                {"name": "Bad", "uri": "/y"},
                {"name": "b"},
                "c",
                {"name": "a", "uri": "/z"},
            ]
        }
    )
    specs, problems = parse_adapters_file(text)
    assert specs == [AdapterSpec("a", "/z")]
    assert len(problems) == 4
    assert "listed twice" in problems[-1]


@pytest.mark.parametrize("text", ["{", "[]", '{"adapters": {}}', "{}"])
def test_adapters_file_of_the_wrong_shape_raises(text: str) -> None:
    with pytest.raises(AdapterSpecError):
        parse_adapters_file(text)


def write_config(path: Path, **config: object) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "adapter_config.json").write_text(json.dumps(config))
    return path


def test_adapter_configs_as_mlx_lm_writes_them_are_read(tmp_path: Path) -> None:
    params = {"rank": 8, "dropout": 0.0, "scale": 20.0}
    config = read_adapter_config(
        write_config(tmp_path, fine_tune_type="dora", num_layers=4, lora_parameters=params)
    )
    assert (config.fine_tune_type, config.num_layers, config.lora_parameters) == (
        "dora",
        4,
        params,
    )
    # mlx-lm reads a config without fine_tune_type as lora; full needs no LoRA parameters.
    assert read_adapter_config(write_config(tmp_path, num_layers=2, lora_parameters=params))
    assert read_adapter_config(write_config(tmp_path, fine_tune_type="full"))


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"fine_tune_type": "qlora"}, "fine_tune_type 'qlora' is not one of"),
        ({"lora_parameters": {"rank": 8, "scale": 1.0, "dropout": 0}}, "integer num_layers"),
        ({"num_layers": 2, "lora_parameters": {"rank": 8, "alpha": 16}}, "lacks scale, dropout"),
    ],
)
def test_bad_adapter_configs_are_refused_with_a_reason(
    tmp_path: Path, config: dict[str, object], message: str
) -> None:
    with pytest.raises(AdapterSpecError, match=message):
        read_adapter_config(write_config(tmp_path, **config))


def test_an_adapter_directory_is_ready_once_both_files_exist(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(uri, "PVC_MOUNT_ROOT", tmp_path)
    run = tmp_path / "claim" / "run"
    with pytest.raises(AdapterNotReady, match=f"no adapter at {run}"):
        resolve_adapter("pvc://claim/run")
    write_config(run, fine_tune_type="full")
    with pytest.raises(AdapterNotReady):
        resolve_adapter("pvc://claim/run")
    before = fingerprint(run)
    (run / "adapters.safetensors").write_bytes(b"weights")
    assert resolve_adapter("pvc://claim/run") == run
    assert resolve_adapter(str(run)) == run
    assert fingerprint(run) != before


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("builtin://tiny", "adapters come from hf://, pvc:// or a path"),
        ("s3://bucket/x", "unsupported adapter URI scheme s3://"),
        ("hf://no-org", "not of the form hf://org/name"),
    ],
)
def test_adapter_uris_that_cannot_work_fail_for_good(source: str, message: str) -> None:
    with pytest.raises(ModelSourceError, match=message) as error:
        resolve_adapter(source)
    assert not isinstance(error.value, AdapterNotReady)
