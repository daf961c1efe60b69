"""Model URIs: builtin://name, hf://org/name[@revision], pvc://claim/path, or a local path."""

import os
from pathlib import Path

from modelkube_serving.models.builtin import Progress, ensure_builtin

# Where the operator mounts a pvc:// claim inside the runtime pod.
PVC_MOUNT_ROOT = Path(os.environ.get("MODELKUBE_PVC_ROOT", "/mnt/models"))

# What mlx_lm.lora (and our trainer) writes; a directory is complete once both exist.
ADAPTER_FILES = ("adapter_config.json", "adapters.safetensors")


class ModelSourceError(Exception):
    """The model cannot be found or fetched; the message is one line for the user."""


class AdapterNotReady(ModelSourceError):
    """The adapter's directory is missing or incomplete: a fine-tune may still be writing it."""


def resolve_model(uri: str, progress: Progress | None = None) -> Path:
    if uri.startswith("builtin://"):
        try:
            return ensure_builtin(uri.removeprefix("builtin://"), progress)
        except ValueError as exc:
            raise ModelSourceError(str(exc)) from exc
    if uri.startswith("hf://"):
        return _download_hf(uri.removeprefix("hf://"))
    path = _local_path(uri, "model")
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


def _download_hf(repo: str) -> Path:
    repo_id, _, revision = repo.partition("@")
    if repo_id.count("/") != 1:
        raise ModelSourceError(f"hf://{repo} is not of the form hf://org/name[@revision]")
    # Fail fast when the Hub is unreachable instead of retrying for minutes.
    os.environ.setdefault("HF_HUB_ETAG_TIMEOUT", "10")
    os.environ.setdefault("HF_HUB_DOWNLOAD_TIMEOUT", "10")
    from huggingface_hub import snapshot_download

    try:
        path = snapshot_download(repo_id, revision=revision or None)
    except Exception as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelSourceError(f"cannot download hf://{repo}: {reason}") from exc
    return Path(path)
