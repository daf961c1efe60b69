"""llama.cpp's `llama-server`, built from the llama-cpp-python sdist on PyPI, once.

It is the peer a CPU user would pick: native, continuous batching over `--parallel` slots,
running the GGUF file as it is (Q4_1 here). The build goes the way a fresh machine's would:
`pip download` of the sdist (no binary wheel), then cmake on its vendored llama.cpp, CPU only,
with the server on. The result lives at ~/.cache/modelkube/bench/llama.cpp-<version>/bin with
a `.ready` file naming the recipe, so a re-run reuses it and an interrupted or outdated build
starts over. A build takes about half an hour on two cores, niced so the machine stays usable.
"""

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path

VERSION = "0.3.36"  # llama-cpp-python, whose sdist vendors llama.cpp
CACHE = Path.home() / ".cache" / "modelkube" / "bench"
# CPU only, portable (no -march=native), no network or TLS code, shared libraries beside it.
CMAKE_FLAGS = (
    "-DCMAKE_BUILD_TYPE=Release", "-DGGML_NATIVE=OFF", "-DGGML_OPENMP=OFF", "-DLLAMA_CURL=OFF",
    "-DLLAMA_OPENSSL=OFF", "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_BUILD_SERVER=ON",
)  # fmt: skip
RECIPE = f"llama-cpp-python=={VERSION} sdist, vendor/llama.cpp, {' '.join(CMAKE_FLAGS)}\n"


def install_dir(version: str = VERSION) -> Path:
    return CACHE / f"llama.cpp-{version}"


def server_env(binary: Path) -> dict[str, str]:
    """The environment llama-server runs in: its shared libraries sit beside it."""
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = os.pathsep.join(
        p for p in (str(binary.parent), env.get("LD_LIBRARY_PATH", "")) if p
    )
    return env


def ensure_llama_server(log: Callable[[str], None] = print) -> Path:
    """The cached `llama-server` binary, built first if the cache lacks a finished build."""
    root = install_dir()
    binary = root / "bin" / "llama-server"
    ready = root / ".ready"
    if ready.is_file() and ready.read_text() == RECIPE and binary.is_file():
        return binary
    log(f"building llama-server from llama-cpp-python=={VERSION} into {root} (once, ~30 min)")
    shutil.rmtree(root, ignore_errors=True)
    with tempfile.TemporaryDirectory(prefix="llama.cpp-build-") as work:
        source = _download_sdist(Path(work))
        build = Path(work) / "build"
        _build(source / "vendor" / "llama.cpp", build)
        install(build / "bin", root)
    return binary


def install(build_bin: Path, root: Path) -> None:
    """Copy a build's bin/ (server plus shared libraries) into `root`, then mark it ready.

    Also how a cache is seeded from a build made elsewhere with the same recipe."""
    staging = root.with_name(root.name + ".staging")
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "bin").mkdir(parents=True)
    for item in build_bin.iterdir():
        if item.name == "llama-server" or ".so" in item.name:
            shutil.copy2(item, staging / "bin" / item.name, follow_symlinks=True)
    if not (staging / "bin" / "llama-server").is_file():
        raise RuntimeError(f"{build_bin} has no llama-server")
    (staging / ".ready").write_text(RECIPE)
    shutil.rmtree(root, ignore_errors=True)
    staging.rename(root)


def _download_sdist(work: Path) -> Path:
    """pip's own download of the sdist (through uv's tool runner when pip is not installed)."""
    spec = f"llama-cpp-python=={VERSION}"
    pip = [sys.executable, "-m", "pip"] if _has_pip() else [_uv(), "tool", "run", "pip"]
    args = ["download", "--no-deps", "--no-binary", ":all:", "-d", str(work), spec]
    subprocess.run([*pip, *args], check=True)
    [archive] = work.glob("llama_cpp_python-*.tar.gz")
    with tarfile.open(archive) as tar:
        tar.extractall(work, filter="data")
    return work / f"llama_cpp_python-{VERSION}"


def _build(source: Path, build: Path) -> None:
    generator = ["-G", "Ninja"] if shutil.which("ninja") else []
    jobs = os.environ.get("BENCH_BUILD_JOBS", "1")
    nice = ["nice", "-n", "10"]
    subprocess.run([*nice, "cmake", "-S", str(source), "-B", str(build), *generator,
                    *CMAKE_FLAGS], check=True)  # fmt: skip
    subprocess.run([*nice, "cmake", "--build", str(build), "--target", "llama-server",
                    "-j", jobs], check=True)  # fmt: skip


def _has_pip() -> bool:
    done = subprocess.run([sys.executable, "-m", "pip", "--version"], capture_output=True)
    return done.returncode == 0


def _uv() -> str:
    found = os.environ.get("UV") or shutil.which("uv")
    if not found:
        raise RuntimeError("pip or uv is needed to download the llama-cpp-python sdist")
    return found


if __name__ == "__main__":
    # `python -m bench.serving.llamacpp [BUILD_BIN]`: build, or seed the cache from a build's bin/.
    if len(sys.argv) > 1:
        install(Path(sys.argv[1]), install_dir())
    print(ensure_llama_server())
