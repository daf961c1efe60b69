"""Which BLAS this process really uses, read from its memory map rather than timed."""

import os
from pathlib import Path

OPENBLAS_CANDIDATES = (
    "/usr/lib/x86_64-linux-gnu/libopenblas.so.0",
    "/usr/lib/aarch64-linux-gnu/libopenblas.so.0",
    "/usr/lib64/libopenblas.so.0",
)


def find_openblas() -> str | None:
    override = os.environ.get("MODELKUBE_OPENBLAS")
    for path in (override,) if override else OPENBLAS_CANDIDATES:
        if Path(path).exists():
            return path
    return None


def loaded_blas(pid: int | str = "self") -> str:
    """'openblas' when libopenblas is mapped into the process, else 'reference'."""
    try:
        maps = Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return "unknown"
    return "openblas" if "libopenblas" in maps else "reference"
