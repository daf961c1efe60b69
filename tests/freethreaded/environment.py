"""The free-threaded test environment: CPython 3.14t, a cp314t wheel of modelkube-native built
from this checkout, and a venv (`.venv-ft`) holding the wheel and the pinned test requirements.

`python -m tests.freethreaded.environment` makes whatever is missing or stale and prints the
venv's interpreter; run it from `uv run` (it uses that uv). Warm, it checks hashes and returns.
"""

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.freethreaded.interpreter import VERSION, cache_root, ensure_interpreter

REPO = Path(__file__).resolve().parents[2]
NATIVE = REPO / "native"
VENV = REPO / ".venv-ft"
REQUIREMENTS = Path(__file__).with_name("requirements.txt")
STAMP = VENV / ".modelkube-stamp"
TAG = "cp" + "".join(VERSION.split(".")[:2])
# What the wheel is built from: the same files uv's cache-keys name for the abi3 build.
SOURCE_GLOBS = (
    "pyproject.toml",
    "Cargo.toml",
    "Cargo.lock",
    "*/Cargo.toml",
    "**/*.rs",
    "llama/shim/*",
)


def uv() -> str:
    found = os.environ.get("UV") or shutil.which("uv")
    if found is None:
        raise RuntimeError("run this under `uv run` (it needs uv)")
    return found


def source_key() -> str:
    digest = hashlib.sha256()
    paths = sorted({p for g in SOURCE_GLOBS for p in NATIVE.glob(g) if "target" not in p.parts})
    for path in [*paths, *sorted((NATIVE / "python").rglob("*.py*"))]:
        digest.update(str(path.relative_to(NATIVE)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def ensure_wheel(python: Path) -> Path:
    """The free-threaded wheel of this checkout's sources, built once per source hash."""
    out = cache_root() / "native-wheels" / f"{TAG}t-{source_key()}"
    wheels = sorted(out.glob(f"modelkube_native-*-{TAG}-{TAG}t-*.whl"))
    if wheels:
        return wheels[0]
    staging = out.with_name(out.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    print(f"building the {TAG}t wheel of modelkube-native -> {out}", flush=True)
    # The abi3 feature is on by default; a free-threaded CPython cannot load abi3 extensions.
    env = {**os.environ, "MATURIN_PEP517_ARGS": "--no-default-features"}
    command = [uv(), "build", "--wheel", "--python", str(python), "--out-dir", str(staging)]
    subprocess.run(["nice", "-n", "10", *command, str(NATIVE)], env=env, check=True)
    shutil.rmtree(out, ignore_errors=True)
    staging.rename(out)
    return ensure_wheel(python)


def ensure_venv() -> Path:
    python = ensure_interpreter()
    wheel = ensure_wheel(python)
    stamp = f"{VERSION}t {hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()} {wheel.name}\n"
    venv_python = VENV / "bin" / "python"
    if STAMP.exists() and STAMP.read_text() == stamp and venv_python.exists():
        return venv_python
    shutil.rmtree(VENV, ignore_errors=True)
    subprocess.run([uv(), "venv", "-q", "--python", str(python), str(VENV)], check=True)
    install = [uv(), "pip", "install", "-q", "--python", str(venv_python)]
    pinned = ["--require-hashes", "--no-build", "-r", str(REQUIREMENTS)]
    subprocess.run([*install, *pinned], check=True)
    subprocess.run([*install, "--no-deps", str(wheel)], check=True)
    STAMP.write_text(stamp)
    return venv_python


def compile_requirements() -> None:
    """Regenerates requirements.txt from requirements.in, for this interpreter."""
    command = [uv(), "pip", "compile", "-q", "--generate-hashes", "--only-binary", ":all:"]
    command += ["--python"]
    source = REQUIREMENTS.with_suffix(".in")
    command += [str(ensure_interpreter()), str(source), "-o", str(REQUIREMENTS)]
    subprocess.run(command, check=True, cwd=REPO)


if __name__ == "__main__":
    if sys.argv[1:] == ["--compile-requirements"]:
        compile_requirements()
    else:
        print(ensure_venv())
    sys.exit(0)
