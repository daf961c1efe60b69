"""A free-threaded CPython (3.14t), built from Debian's source package and cached by version.

No registry ships a free-threaded interpreter here (no Debian package, nothing on PyPI, and
`uv python install` needs a download site we cannot reach), so `python -m
tests.freethreaded.interpreter` builds one from Debian's orig tarball with `--disable-gil`:
no PGO or LTO, no test modules, no pip, no modules the native tests never import. A warm
cache makes it a no-op. It lives in ~/.cache/modelkube/python-<version>t/.
"""

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

# 3.14, not 3.13: PyO3 0.30 refuses free-threaded CPython below 3.14 ("PyO3 does not support
# the free-threaded build of CPython versions below 3.14").
VERSION = "3.14.7"
# python3.14 3.14.7-1 from Debian's pool (the newest this mirror serves); the hash is the one
# its .dsc lists for the orig tarball. Bump VERSION, the URL and the hash together.
TARBALL_URL = "http://deb.debian.org/debian/pool/main/p/python3.14/python3.14_3.14.7.orig.tar.xz"
TARBALL_SHA256 = "3b48dac8fb59f62eaa67ac83c1eb12bda1b7a08406dd286e252c11a66be27f81"
# What the tests never import: each skipped module is C the cold build does not compile.
SKIPPED_MODULES = (
    "_tkinter",
    "_curses",
    "_curses_panel",
    "_dbm",
    "_gdbm",
    "readline",
    "_testcapi",
    "_testinternalcapi",
    "_testbuffer",
    "_testimportmultiple",
    "_testmultiphase",
    "_testsinglephase",
    "_testexternalinspection",
    "_testclinic",
    "_testclinic_limited",
    "_testlimitedcapi",
    "_ctypes_test",
    "xxlimited",
    "xxlimited_35",
    "xxsubtype",
)
CONFIGURE_FLAGS = (
    "--disable-gil",
    "--without-ensurepip",
    "--disable-test-modules",
)
MARKER = ".modelkube-complete"


def cache_root() -> Path:
    base = os.environ.get("MODELKUBE_CACHE_DIR") or str(Path.home() / ".cache" / "modelkube")
    return Path(base)


def prefix() -> Path:
    return cache_root() / f"python-{VERSION}t"


def executable() -> Path:
    return prefix() / "bin" / f"python{VERSION.rsplit('.', 1)[0]}t"


def ensure_interpreter() -> Path:
    """The interpreter's path, building it first when the cache lacks it."""
    if not (prefix() / MARKER).exists():
        _build()
    return executable()


def _build() -> None:
    target = prefix()
    # The prefix is compiled into the interpreter, so it installs in place; the marker says done.
    shutil.rmtree(target, ignore_errors=True)
    started = time.monotonic()
    cores = os.cpu_count() or 1
    print(
        f"building free-threaded CPython {VERSION} from Debian's source package "
        f"(first run only: ~5 CPU-minutes, 29 minutes on 2 cores under load 10-15) -> {target}",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="cpython-ft-") as scratch:
        source = _unpack(Path(scratch))
        env = {**os.environ, **{f"py_cv_module_{name}": "n/a" for name in SKIPPED_MODULES}}
        nice = ["nice", "-n", "10"]
        configure = [*nice, "./configure", f"--prefix={target}", *CONFIGURE_FLAGS]
        _run(configure, source, env)
        _run([*nice, "make", f"-j{cores}"], source, env)
        # One bytecode level instead of three: the tests never run with -O.
        _run([*nice, "make", "install", "COMPILEALL_OPTS=-j0 -o 0"], source, env)
    _check(executable())
    (target / MARKER).write_text(f"{VERSION}\n")
    print(f"built CPython {VERSION}t in {time.monotonic() - started:.0f}s", flush=True)


def _unpack(scratch: Path) -> Path:
    tarball = scratch / "python.tar.xz"
    with urllib.request.urlopen(TARBALL_URL, timeout=120) as response:
        tarball.write_bytes(response.read())
    digest = hashlib.sha256(tarball.read_bytes()).hexdigest()
    if digest != TARBALL_SHA256:
        raise RuntimeError(f"{TARBALL_URL}: sha256 {digest}, expected {TARBALL_SHA256}")
    subprocess.run(["tar", "xf", str(tarball), "-C", str(scratch)], check=True)
    return scratch / f"Python-{VERSION}"


def _run(command: list[str], cwd: Path, env: dict[str, str]) -> None:
    log = cwd / "modelkube-build.log"
    with log.open("a") as sink:
        done = subprocess.run(command, cwd=cwd, env=env, stdout=sink, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        tail = log.read_text(errors="replace").splitlines()[-40:]
        raise RuntimeError(f"{' '.join(command)} failed:\n" + "\n".join(tail))


def _check(python: Path) -> None:
    probe = "import sys, ssl, ctypes, sqlite3, zlib; assert not sys._is_gil_enabled()"
    subprocess.run([str(python), "-c", probe], check=True)


if __name__ == "__main__":
    print(ensure_interpreter())
    sys.exit(0)
