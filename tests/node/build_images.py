"""The runtime and operator images, built with no registry: `make images`.

The one recipe for both images (the README points here). Each image is a Debian bookworm root
filesystem from `mmdebstrap` (Debian's python3, and OpenBLAS for the runtime), with the
project's locked Python environment made inside it by uv (`uv sync --frozen`, exactly uv.lock)
and, for the runtime, the Rust core as a wheel built here by maturin. The result is an OCI image
layout archive that `ctr images import`, `docker load`, `kind load image-archive` and
`skopeo copy oci-archive:...` all read, tagged with the chart's appVersion.

The images run as uid 10001 (the pods' runAsUser) and need no writable root filesystem: all
bytecode is compiled at build time (hash-checked, so it stays valid whatever the file times);
the runtime writes only to /tmp and /var/cache/modelkube, which the operator mounts as emptyDirs.

Archives are cached under ~/.cache/modelkube/images by the hash of their inputs (the sources
and lock files, this recipe, the package lists), so a second `make images` is instant.
Needs root (mmdebstrap's root mode, a chroot) and Debian's mirror; about 3 minutes cold.
"""

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml

from tests.node.images import LAYER_GZIP, write_layout

# Part of every cache key with what the recipe puts in an image: bump it when a change to the
# code below changes the images.
RECIPE = 1
REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "modelkube" / "Chart.yaml"
NATIVE = REPO / "native"
NATIVE_BUILD_FILES = (
    *(NATIVE / "Cargo.toml", NATIVE / "Cargo.lock", NATIVE / "core" / "Cargo.toml"),
    *(NATIVE / "llama" / "Cargo.toml", NATIVE / "llama" / "build.rs"),
)
NATIVE_ROOTS = [NATIVE / root for root in ("src", "core/src", "python", "llama/src", "llama/shim")]
# The Rust core's wheel: `uv build` with maturin's --locked, cached by these and its inputs.
WHEEL_BUILD = ("build", "--wheel", "--package", "modelkube-native")
WHEEL_MATURIN_ARGS = "--locked"
SUITE = "bookworm"
UID = 10001  # the runAsUser of every pod the chart and the operator make
VENV = "/app/.venv"
PATH = f"{VENV}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Checked-hash bytecode: valid whatever the files' times, so a read-only root never recompiles.
EPOCH = "0"
# Left out of every image: documentation and translations nobody reads in a pod.
DPKG_EXCLUDES = ("/usr/share/doc/*", "/usr/share/man/*", "/usr/share/info/*", "/usr/share/locale/*")
# What every image drops after its environment is made: the build's tools and caches.
BUILD_LEFTOVERS = (
    "app/pyproject.toml",
    "app/uv.lock",
    "app/operator",
    "app/serving",
    "app/native",
    "usr/local/bin/uv",
    "var/uv-cache",
    "var/wheels",
    "var/cache/apt",
    "var/lib/apt/lists",
    "var/log",
    "etc/resolv.conf",
    "var/build-ca.crt",
)
BUILD_CA = "var/build-ca.crt"


@dataclass(frozen=True)
class ImageSpec:
    name: str  # the repository, e.g. ghcr.io/modelkube/runtime
    package: str  # the workspace member whose environment the image holds
    debian: tuple[str, ...]  # Debian packages beside the essential set
    entrypoint: tuple[str, ...]
    cmd: tuple[str, ...]
    ports: tuple[int, ...]
    env: tuple[tuple[str, str], ...] = ()
    native: bool = False  # holds the Rust core
    sources: tuple[str, ...] = ()  # workspace members copied in (besides their pyproject.toml)
    wrapper: str | None = None  # /usr/local/bin/modelkube, when the package has no such script


RUNTIME = ImageSpec(
    name="ghcr.io/modelkube/runtime",
    package="modelkube-serving",
    # OpenBLAS: MLX's bundled reference BLAS is ~40x slower (the runtime preloads Debian's).
    debian=("python3", "libopenblas0-pthread", "libstdc++6", "ca-certificates"),
    entrypoint=("modelkube",),
    cmd=("serve", "--model", "builtin://tiny", "--host", "0.0.0.0"),
    ports=(8000,),
    env=(
        ("MODELKUBE_CACHE_DIR", "/var/cache/modelkube"),
        ("HF_HOME", "/var/cache/modelkube/huggingface"),
    ),
    native=True,
    # The operator's distribution too: its Kubernetes client is the runtime's.
    sources=("serving", "operator"),
)
OPERATOR = ImageSpec(
    name="ghcr.io/modelkube/operator",
    package="modelkube-operator",
    debian=("python3", "ca-certificates"),
    entrypoint=("modelkube",),
    cmd=("operator", "--all-namespaces"),
    ports=(8080, 8081),
    sources=("operator",),
    # `modelkube` belongs to the runtime's distribution; here it is the operator's own.
    wrapper=f'#!/bin/sh\nexec {VENV}/bin/python -m modelkube_operator "$@"\n',
)
IMAGES = {"runtime": RUNTIME, "operator": OPERATOR}


def app_version() -> str:
    version: str = yaml.safe_load(CHART.read_text())["appVersion"]
    return version


def reference(spec: ImageSpec) -> str:
    return f"{spec.name}:{app_version()}"


def image_config(spec: ImageSpec) -> dict[str, object]:
    """The OCI image config's `config`: a numeric non-root user, the entry point, the env."""
    env = {
        "PATH": PATH,
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
        **dict(spec.env),
    }
    return {
        "User": f"{UID}:{UID}",
        "Entrypoint": list(spec.entrypoint),
        "Cmd": list(spec.cmd),
        "Env": [f"{k}={v}" for k, v in env.items()],
        "WorkingDir": "/",
        "ExposedPorts": {f"{port}/tcp": {} for port in spec.ports},
        "Labels": {
            "org.opencontainers.image.title": spec.name.rsplit("/", 1)[1],
            "org.opencontainers.image.version": app_version(),
            "org.opencontainers.image.source": "https://github.com/modelkube/modelkube",
        },
    }


def _input_files(spec: ImageSpec) -> Iterator[Path]:
    yield from (REPO / "pyproject.toml", REPO / "uv.lock", CHART)
    for member in ("operator", "serving", "native"):
        yield REPO / member / "pyproject.toml"
    roots = [REPO / member / "src" for member in spec.sources]
    if spec.native:
        yield from NATIVE_BUILD_FILES
        roots += NATIVE_ROOTS
    for root in roots:
        yield from _files_under(root)


def native_wheel_key() -> str:
    digest = hashlib.sha256(repr((WHEEL_BUILD, WHEEL_MATURIN_ARGS)).encode())
    for path in _native_input_files():
        digest.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def _native_input_files() -> Iterator[Path]:
    """What the Rust core's wheel is built from."""
    yield from (NATIVE / "pyproject.toml", *NATIVE_BUILD_FILES)
    for root in NATIVE_ROOTS:
        yield from _files_under(root)


def _files_under(root: Path) -> Iterator[Path]:
    yield from sorted(p for p in root.rglob("*") if p.is_file() and not _built_here(p))


def _built_here(path: Path) -> bool:
    """What a build leaves among the sources (bytecode, the extension `make python-deps`
    puts into native/python): not an input, and never the same bytes twice, so hashing it
    would miss the cache on every fresh clone."""
    return "__pycache__" in path.parts or path.suffix in {".so", ".pyc", ".pyd"}


def input_key(spec: ImageSpec, uv_version: str) -> str:
    digest = hashlib.sha256()
    recipe = (RECIPE, spec, image_config(spec), SUITE, DPKG_EXCLUDES, BUILD_LEFTOVERS, uv_version)
    digest.update(repr(recipe).encode())
    for path in _input_files(spec):
        digest.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def cache_dir() -> Path:
    base = os.environ.get("MODELKUBE_CACHE_DIR") or str(Path.home() / ".cache" / "modelkube")
    return Path(base) / "images"


def find_uv() -> Path:
    """The uv that runs us (`uv run` sets UV), else the one `make` installs."""
    found = os.environ.get("UV") or shutil.which("uv")
    if found:
        return Path(found)
    raise SystemExit("make images: uv not found (run it through `make images`)")


def archive_path(name: str, spec: ImageSpec, uv: Path) -> Path:
    version = subprocess.run([str(uv), "--version"], capture_output=True, text=True, check=True)
    key = input_key(spec, version.stdout.split()[1])
    return cache_dir() / f"{name}-{app_version()}-{key}.oci.tar"


def build(name: str, uv: Path, log: "Log") -> Path:
    """The image's archive, from the cache when its inputs have not changed."""
    spec = IMAGES[name]
    target = archive_path(name, spec, uv)
    if target.exists():
        log(f"{reference(spec)}: cached {target}")
        return target
    if os.geteuid() != 0:
        raise SystemExit("make images: needs root (mmdebstrap --mode=root and a chroot)")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"image-{name}-", dir=target.parent) as tmp:
        work = Path(tmp)
        rootfs = work / "rootfs"
        _debootstrap(spec, rootfs)
        log(f"{name}: Debian root filesystem")
        wheels = _native_wheel(uv, work / "wheels") if spec.native else None
        if wheels is not None:
            log(f"{name}: Rust core wheel")
        _python_environment(spec, rootfs, uv, wheels)
        log(f"{name}: locked Python environment")
        _finish(spec, rootfs)
        partial = target.with_suffix(".partial")
        _archive(spec, rootfs, work, partial)
        partial.rename(target)
    log(f"{reference(spec)}: built {target} ({target.stat().st_size / 1e6:.0f} MB)")
    return target


def _debootstrap(spec: ImageSpec, rootfs: Path) -> None:
    """mmdebstrap's essential set plus the image's packages, cached as a tar by that list
    (not by the mirror's state: delete ~/.cache/modelkube/images/debian-*.tar for updates)."""
    key = hashlib.sha256(repr((SUITE, sorted(spec.debian), DPKG_EXCLUDES)).encode())
    cached = cache_dir() / f"debian-{SUITE}-{key.hexdigest()[:12]}.tar"
    if not cached.exists():
        command = ["mmdebstrap", "--mode=root", "--variant=essential", "--format=tar"]
        command += ["--quiet", f"--include={','.join(spec.debian)}"]
        command += [f"--dpkgopt=path-exclude={pattern}" for pattern in DPKG_EXCLUDES]
        partial = cached.with_suffix(".partial")
        _run([*command, SUITE, str(partial)])
        partial.rename(cached)
    rootfs.mkdir()
    _run(["tar", "--numeric-owner", "--xattrs", "-xpf", str(cached), "-C", str(rootfs)])


def _native_wheel(uv: Path, out: Path) -> Path:
    """The Rust core as a wheel (maturin, --locked), built on this Debian for the image's.

    Cached by its own inputs: a change to the Python sources rebuilds the image but not the
    wheel. Under `uv run` (no CARGO_TARGET_DIR) the build starts cold in native/target, with
    llama.cpp: 819 s at load average 20-30 on 2 cores, then 232 s again for the same sources
    (uv's isolated build environment); a cached wheel takes no time."""
    cached = cache_dir() / f"native-wheel-{native_wheel_key()}"
    if not cached.is_dir():
        staging = cached.with_name(cached.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        env = {**os.environ, "MATURIN_PEP517_ARGS": WHEEL_MATURIN_ARGS}
        command = [str(uv), *WHEEL_BUILD, "-o", str(staging)]
        _run(command, cwd=REPO, env=env)
        staging.rename(cached)
    shutil.copytree(cached, out)
    return out


def sync_command(spec: ImageSpec) -> str:
    """Exactly uv.lock's packages for the image's member, installed (not linked) into /app;
    the Rust core comes as the wheel built beside it."""
    sync = f"uv sync --frozen --no-dev --no-editable --package {spec.package}"
    return f"{sync} --no-install-package modelkube-native"


def _python_environment(spec: ImageSpec, rootfs: Path, uv: Path, wheels: Path | None) -> None:
    """`uv sync --frozen` run by the image's own python3 in a chroot, into /app/.venv."""
    app = rootfs / "app"
    app.mkdir()
    shutil.copy2(REPO / "pyproject.toml", app)
    shutil.copy2(REPO / "uv.lock", app)
    for member in ("operator", "serving", "native"):
        (app / member).mkdir()
        shutil.copy2(REPO / member / "pyproject.toml", app / member)
    for member in spec.sources:
        shutil.copytree(REPO / member / "src", app / member / "src")
    shutil.copy2(uv, rootfs / "usr/local/bin/uv")
    shutil.copy2("/etc/resolv.conf", rootfs / "etc/resolv.conf")
    (rootfs / "var/uv-cache").mkdir()
    # The machine's CA bundle (a TLS-inspecting proxy's CA, say) for uv's downloads.
    shutil.copy2(
        os.environ.get("SSL_CERT_FILE") or "/etc/ssl/certs/ca-certificates.crt", rootfs / BUILD_CA
    )
    steps = [f"cd /app && {sync_command(spec)}"]
    if wheels is not None:
        shutil.copytree(wheels, rootfs / "var/wheels")
        steps.append(f"uv pip install --python {VENV}/bin/python --no-deps /var/wheels/*.whl")
    # Debian's own standard library bytecode, timestamp-checked, is recompiled hash-checked.
    steps.append("python3 -m compileall -q -f --invalidation-mode checked-hash /usr/lib/python3*")
    env = {
        "PATH": PATH,
        "HOME": "/root",
        "UV_CACHE_DIR": "/var/uv-cache",
        "UV_LINK_MODE": "copy",
        "UV_COMPILE_BYTECODE": "1",
        "UV_PYTHON_DOWNLOADS": "never",
        "UV_PYTHON": "/usr/bin/python3",
        "UV_PROJECT_ENVIRONMENT": VENV,
        "SOURCE_DATE_EPOCH": EPOCH,
        "SSL_CERT_FILE": f"/{BUILD_CA}",
    }
    host_cache = Path(os.environ.get("UV_CACHE_DIR") or Path.home() / ".cache" / "uv")
    host_cache.mkdir(parents=True, exist_ok=True)
    # A private mount namespace: the bind mounts vanish with it, whatever happens.
    inner = (
        f"mount --bind {host_cache} {rootfs}/var/uv-cache"
        f" && mount -t proc proc {rootfs}/proc"
        f" && exec chroot {rootfs} /usr/bin/env -i "
        + " ".join(f"{k}={v}" for k, v in env.items())
        + " /bin/sh -euc '"
        + " && ".join(steps)
        + "'"
    )
    _run(["unshare", "--mount", "--propagation=private", "sh", "-euc", inner])


def _finish(spec: ImageSpec, rootfs: Path) -> None:
    for leftover in BUILD_LEFTOVERS:
        path = rootfs / leftover
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    for directory in ("var/log", "var/cache/apt", "var/lib/apt/lists"):
        (rootfs / directory).mkdir(parents=True, exist_ok=True)
    with (rootfs / "etc/passwd").open("a") as passwd:
        passwd.write(f"modelkube:x:{UID}:{UID}::/var/cache/modelkube:/usr/sbin/nologin\n")
    with (rootfs / "etc/group").open("a") as group:
        group.write(f"modelkube:x:{UID}:\n")
    cache = rootfs / "var/cache/modelkube"
    cache.mkdir(parents=True, exist_ok=True)
    os.chown(cache, UID, UID)
    if spec.wrapper is not None:
        wrapper = rootfs / "usr/local/bin/modelkube"
        wrapper.write_text(spec.wrapper)
        wrapper.chmod(0o755)


def _archive(spec: ImageSpec, rootfs: Path, work: Path, target: Path) -> None:
    """One reproducible gzipped layer (sorted, numeric owners, time 0), then the layout."""
    layer = work / "layer.tar"
    excludes = [f"--exclude=./{d}/*" for d in ("dev", "proc", "sys", "run", "tmp")]
    tar = ["tar", "--sort=name", "--mtime=@0", "--numeric-owner", "--xattrs", *excludes]
    _run([*tar, "-C", str(rootfs), "-cf", str(layer), "."])
    diff_id = _sha256_file(layer)
    compressed = work / "layer.tar.gz"
    with compressed.open("wb") as out:
        subprocess.run(["gzip", "-n", "-6", "-c", str(layer)], stdout=out, check=True)
    layer.unlink()
    digest = _sha256_file(compressed)
    layers = [(diff_id, digest, compressed.stat().st_size)]
    assert LAYER_GZIP  # the layer's media type is write_layout's
    write_layout(reference(spec), image_config(spec), layers, {digest: compressed}, target)


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return f"sha256:{digest.hexdigest()}"


def _run(command: list[str], **kwargs: object) -> None:
    result = subprocess.run(command, capture_output=True, text=True, **kwargs)  # type: ignore[call-overload]
    if result.returncode != 0:
        tail = (result.stdout + result.stderr)[-3000:]
        raise SystemExit(f"make images: {command[0]} failed ({result.returncode}):\n{tail}")


class Log:
    def __init__(self) -> None:
        self.started = time.monotonic()

    def __call__(self, message: str) -> None:
        print(f"[{time.monotonic() - self.started:6.1f}s] {message}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help=f"of {', '.join(IMAGES)} (default: all)")
    args = parser.parse_args(argv)
    unknown = set(args.names) - set(IMAGES)
    if unknown:
        parser.error(f"no such image: {', '.join(sorted(unknown))}")
    uv, log = find_uv(), Log()
    for name in args.names or list(IMAGES):
        path = build(name, uv, log)
        print(f"  docker load -i {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
