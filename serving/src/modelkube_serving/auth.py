"""API keys: loaded once, compared in constant time, never logged."""

import hashlib
import hmac
from pathlib import Path


class KeyFileError(Exception):
    pass


def load_api_keys(path: Path) -> tuple[bytes, ...]:
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise KeyFileError(f"cannot read API keys file {path}: {exc.strerror}") from exc
    keys = tuple(
        line.strip().encode()
        for line in lines
        if line.strip() and not line.lstrip().startswith("#")
    )
    if not keys:
        raise KeyFileError(f"API keys file {path} holds no keys")
    return keys


def bearer_token(header: str | None) -> bytes | None:
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    return token.strip().encode() if scheme.lower() == "bearer" and token.strip() else None


def key_accepted(presented: bytes | None, keys: tuple[bytes, ...]) -> bool:
    if presented is None:
        return False
    # Compare against every key so the time taken does not say which one nearly matched.
    matches = [hmac.compare_digest(presented, key) for key in keys]
    return any(matches)


def client_key(authorization: str | None, keys: tuple[bytes, ...]) -> str:
    """Whose request this is, for fair queueing and rate limits: a digest of its API key, so
    the key itself is never kept. Without keys every client shares one."""
    token = bearer_token(authorization)
    return hashlib.sha256(token).hexdigest()[:16] if token and keys else ""
