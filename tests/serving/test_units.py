"""Pure pieces of the runtime, tested without a server process."""

import hashlib
from pathlib import Path

import pytest

from modelkube_serving.auth import bearer_token, key_accepted, load_api_keys
from modelkube_serving.cli import served_name
from modelkube_serving.models.builtin import BUILTINS, builtin_path, ensure_builtin
from modelkube_serving.models.uri import ModelSourceError, resolve_model


def test_builtin_tiny_is_deterministic_and_in_hf_layout() -> None:
    path = ensure_builtin("tiny")
    assert path == builtin_path("tiny")
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"):
        assert (path / name).is_file()
    digest = hashlib.sha256((path / "tokenizer.json").read_bytes()).hexdigest()
    assert digest == hashlib.sha256((path / "tokenizer.json").read_bytes()).hexdigest()


def test_builtin_creation_is_reproducible(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reference = ensure_builtin("tiny")
    monkeypatch.setenv("MODELKUBE_CACHE_DIR", str(tmp_path))
    messages: list[str] = []
    fresh = ensure_builtin("tiny", messages.append)
    assert fresh != reference
    assert any("training a byte-level BPE tokenizer" in m for m in messages)  # progress is shown
    for name in ("model.safetensors", "tokenizer.json", "config.json"):
        assert (fresh / name).read_bytes() == (reference / name).read_bytes(), name


def test_builtin_models_are_sized_as_documented() -> None:
    tiny, small = BUILTINS["tiny"], BUILTINS["small"]
    assert tiny.hidden_size * tiny.num_layers < small.hidden_size * small.num_layers


@pytest.mark.parametrize(
    ("uri", "name"),
    [
        ("builtin://tiny", "tiny"),
        ("hf://org/model@v2", "model"),
        ("pvc://claim/llama-3", "llama-3"),
        ("/models/qwen/", "qwen"),
    ],
)
def test_served_name_comes_from_the_uri(uri: str, name: str) -> None:
    assert served_name(uri) == name


def test_pvc_uri_resolves_under_the_mount_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("modelkube_serving.models.uri.PVC_MOUNT_ROOT", tmp_path)
    model = tmp_path / "claim" / "models" / "m"
    model.mkdir(parents=True)
    (model / "config.json").write_text("{}")
    assert resolve_model("pvc://claim/models/m") == model
    with pytest.raises(ModelSourceError, match="no model at"):
        resolve_model("pvc://claim/absent")


def test_api_keys_file_and_bearer_parsing(tmp_path: Path) -> None:
    keys_file = tmp_path / "keys"
    keys_file.write_text("# comment\n  sk-one  \n\nsk-two\n")
    keys = load_api_keys(keys_file)
    assert keys == (b"sk-one", b"sk-two")
    assert key_accepted(bearer_token("Bearer sk-two"), keys)
    assert key_accepted(bearer_token("bearer sk-one"), keys)
    assert not key_accepted(bearer_token("Bearer sk-three"), keys)
    assert not key_accepted(bearer_token("sk-one"), keys)
    assert bearer_token(None) is None
