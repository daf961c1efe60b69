"""Model URIs: builtin://name, hf://org/name[@revision], pvc://claim/path, or a local path."""

import os
from pathlib import Path

from modelkube_serving.models.builtin import Progress, ensure_builtin

# Where the operator mounts a pvc:// claim inside the runtime pod.
PVC_MOUNT_ROOT = Path(os.environ.get("MODELKUBE_PVC_ROOT", "/mnt/models"))


class ModelSourceError(Exception):
    """The model cannot be found or fetched; the message is one line for the user."""


def resolve_model(uri: str, progress: Progress | None = None) -> Path:
    if uri.startswith("builtin://"):
        try:
            return ensure_builtin(uri.removeprefix("builtin://"), progress)
        except ValueError as exc:
            raise ModelSourceError(str(exc)) from exc
    if uri.startswith("hf://"):
        return _download_hf(uri.removeprefix("hf://"))
    if uri.startswith("pvc://"):
        claim_and_path = uri.removeprefix("pvc://")
        claim, _, sub = claim_and_path.partition("/")
        path = PVC_MOUNT_ROOT / claim / sub
    elif "://" in uri:
        scheme = uri.split("://", 1)[0]
        raise ModelSourceError(
            f"unsupported model URI scheme {scheme}:// (use builtin://, hf://, pvc:// or a path)"
        )
    else:
        path = Path(uri).expanduser()
    if not (path / "config.json").is_file():
        raise ModelSourceError(f"no model at {path}: expected config.json there")
    return path


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
