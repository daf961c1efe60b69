"""Model URIs: builtin://name, hf://org/name[@revision], pvc://claim/path, or a local path.

Any of them may name a `.gguf` file (hf://org/name[@revision]/file.gguf for the Hub), which
is converted once into an mlx-lm directory (models.gguf).
"""

import os
from pathlib import Path

from modelkube_serving.models.builtin import BUILTINS, Progress, ensure_builtin
from modelkube_serving.models.errors import ModelSourceError, UnsupportedModelError
from modelkube_serving.models.gguf import ensure_gguf, is_gguf
from modelkube_serving.models.packaged import PACKAGED, packaged_gguf

__all__ = [
    "AdapterNotReady",
    "ModelSourceError",
    "UnsupportedModelError",
    "resolve_adapter",
    "resolve_model",
]

# Where the operator mounts a pvc:// claim inside the runtime pod.
PVC_MOUNT_ROOT = Path(os.environ.get("MODELKUBE_PVC_ROOT", "/mnt/models"))

# What mlx_lm.lora (and our trainer) writes; a directory is complete once both exist.
ADAPTER_FILES = ("adapter_config.json", "adapters.safetensors")


class AdapterNotReady(ModelSourceError):
    """The adapter's directory is missing or incomplete: a fine-tune may still be writing it."""


def resolve_model(uri: str, progress: Progress | None = None, dtype: str = "auto") -> Path:
    """The mlx-lm directory of model `uri`; `dtype` is how a GGUF file's weights are stored."""
    if uri.startswith("builtin://"):
        name = uri.removeprefix("builtin://")
        if name in PACKAGED:
            return ensure_gguf(packaged_gguf(name), dtype, progress)
        if name not in BUILTINS:
            known = ", ".join(f"builtin://{n}" for n in (*BUILTINS, *PACKAGED))
            raise ModelSourceError(f"unknown built-in model {uri} (known: {known})")
        return ensure_builtin(name, progress)
    if uri.startswith("hf://"):
        repo = uri.removeprefix("hf://")
        if is_gguf(Path(repo)):
            return ensure_gguf(_download_hf_file(repo), dtype, progress)
        return _download_hf(repo)
    path = _local_path(uri, "model")
    if is_gguf(path):
        return ensure_gguf(path, dtype, progress)
    if not (path / "config.json").is_file():
        raise ModelSourceError(f"no model at {path}: expected config.json there")
    return path


def resolve_adapter(uri: str) -> Path:
    """The directory of a LoRA/DoRA/full adapter: hf://, pvc:// or a path (no builtin://)."""
    if uri.startswith("builtin://"):
        raise ModelSourceError(f"{uri}: adapters come from hf://, pvc:// or a path")
    hub = uri.startswith("hf://")
    path = _download_hf(uri.removeprefix("hf://")) if hub else _local_path(uri, "adapter")
    if not all((path / name).is_file() for name in ADAPTER_FILES):
        # A hub snapshot will not complete later; a directory being written will.
        error = ModelSourceError if hub else AdapterNotReady
        raise error(f"no adapter at {path}: expected {' and '.join(ADAPTER_FILES)} there")
    return path


def _local_path(uri: str, what: str) -> Path:
    if uri.startswith("pvc://"):
        claim, _, sub = uri.removeprefix("pvc://").partition("/")
        return PVC_MOUNT_ROOT / claim / sub
    if "://" in uri:
        scheme = uri.split("://", 1)[0]
        known = "builtin://, hf://, pvc://" if what == "model" else "hf://, pvc://"
        raise ModelSourceError(f"unsupported {what} URI scheme {scheme}:// (use {known} or a path)")
    return Path(uri).expanduser()


def split_hf_file(repo: str) -> tuple[str, str | None, str]:
    """org/name[@revision]/path/file.gguf as (org/name, revision, path/file.gguf)."""
    org, _, rest = repo.partition("/")
    name, _, filename = rest.partition("/")
    name, _, revision = name.partition("@")
    if not (org and name and filename):
        raise ModelSourceError(f"hf://{repo} is not of the form hf://org/name[@revision]/file.gguf")
    return f"{org}/{name}", revision or None, filename


def _download_hf_file(repo: str) -> Path:
    repo_id, revision, filename = split_hf_file(repo)
    _hub_timeouts()
    from huggingface_hub import hf_hub_download

    try:
        path = hf_hub_download(repo_id, filename, revision=revision)
    except Exception as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelSourceError(f"cannot download hf://{repo}: {reason}") from exc
    return Path(path)


def _hub_timeouts() -> None:
    # Fail fast when the Hub is unreachable instead of retrying for minutes.
    os.environ.setdefault("HF_HUB_ETAG_TIMEOUT", "10")
    os.environ.setdefault("HF_HUB_DOWNLOAD_TIMEOUT", "10")


def _download_hf(repo: str) -> Path:
    repo_id, _, revision = repo.partition("@")
    if repo_id.count("/") != 1:
        raise ModelSourceError(f"hf://{repo} is not of the form hf://org/name[@revision]")
    _hub_timeouts()
    from huggingface_hub import snapshot_download

    try:
        path = snapshot_download(repo_id, revision=revision or None)
    except Exception as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelSourceError(f"cannot download hf://{repo}: {reason}") from exc
    return Path(path)
