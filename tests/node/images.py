"""Tiny OCI images built here with no registry: the pause image and a busybox image.

Each is an OCI image layout in a tar archive (one gzipped layer), with the name containerd
imports it under (`ctr images import`). Layers are deterministic (mtime 0, root-owned), so the
same inputs give the same digests.
"""

import gzip
import hashlib
import io
import json
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

PAUSE_IMAGE = "modelkube.local/pause:3.10"
BUSYBOX_IMAGE = "modelkube.local/busybox:1"
DEBIAN_IMAGE = "modelkube.local/debian-python:bookworm"
# Applets linked into the busybox image: a shell, and an HTTP server to reach from the host.
BUSYBOX_APPLETS = ("sh", "echo", "cat", "ls", "mkdir", "sleep", "hostname", "httpd", "wget")


@dataclass(frozen=True)
class Entry:
    path: str  # inside the image, without a leading slash
    data: bytes | None = None  # a regular file, or a directory when None and no link
    mode: int = 0o755
    link: str | None = None  # a symbolic link's target


def layer(entries: list[Entry]) -> bytes:
    """An uncompressed, reproducible tar of `entries`."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for entry in entries:
            info = tarfile.TarInfo(entry.path)
            info.mode = entry.mode
            if entry.link is not None:
                info.type, info.linkname = tarfile.SYMTYPE, entry.link
                tar.addfile(info)
            elif entry.data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(entry.data)
                tar.addfile(info, io.BytesIO(entry.data))
    return out.getvalue()


def oci_archive(name: str, raw: bytes, entrypoint: list[str], target: Path) -> Path:
    """Write an OCI image layout tar holding one image named `name` (`repo:tag`), whose one
    layer is the uncompressed tar `raw`."""
    compressed = gzip.compress(raw, compresslevel=6, mtime=0)
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Entrypoint": entrypoint, "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": [_digest(raw)]},
    }
    config_blob = _json(config)
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": _descriptor("application/vnd.oci.image.config.v1+json", config_blob),
        "layers": [_descriptor("application/vnd.oci.image.layer.v1.tar+gzip", compressed)],
    }
    manifest_blob = _json(manifest)
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                **_descriptor("application/vnd.oci.image.manifest.v1+json", manifest_blob),
                "platform": {"architecture": "amd64", "os": "linux"},
                "annotations": {
                    "io.containerd.image.name": name,
                    "org.opencontainers.image.ref.name": name.rsplit(":", 1)[1],
                },
            }
        ],
    }
    files = {
        "oci-layout": _json({"imageLayoutVersion": "1.0.0"}),
        "index.json": _json(index),
        **{
            f"blobs/sha256/{_digest(blob).removeprefix('sha256:')}": blob
            for blob in (compressed, config_blob, manifest_blob)
        },
    }
    dirs = [Entry("blobs"), Entry("blobs/sha256")]
    target.write_bytes(layer(dirs + [Entry(p, d, 0o644) for p, d in files.items()]))
    return target


def pause_archive(source: Path, workdir: Path) -> Path:
    """The pause image, from the kubernetes module's build/pause/linux/pause.c."""
    binary = workdir / "pause"
    command = ["gcc", "-Os", "-static", "-DVERSION=3.10", "-o", str(binary), str(source)]
    subprocess.run(command, check=True, capture_output=True)
    subprocess.run(["strip", str(binary)], check=True)
    entries = [Entry("pause", binary.read_bytes())]
    return oci_archive(PAUSE_IMAGE, layer(entries), ["/pause"], workdir / "pause.oci.tar")


def busybox_archive(busybox: Path, workdir: Path) -> Path:
    """A busybox image from Debian's busybox-static: /bin/busybox and a few applet links."""
    entries = [Entry("bin"), Entry("tmp", mode=0o1777), Entry("bin/busybox", busybox.read_bytes())]
    entries += [Entry(f"bin/{applet}", link="busybox") for applet in BUSYBOX_APPLETS]
    return oci_archive(BUSYBOX_IMAGE, layer(entries), ["/bin/sh"], workdir / "busybox.oci.tar")


def debian_archive(packages: list[str], cache: Path) -> Path:
    """A Debian bookworm root filesystem (mmdebstrap's essential variant plus `packages`)
    as an image: needs mmdebstrap and the Debian mirror, about a minute; cached in `cache` by
    the package list (not by the mirror's state: delete the file for fresh packages)."""
    key = hashlib.sha256(" ".join(sorted(packages)).encode()).hexdigest()[:12]
    target = cache / f"debian-{key}.oci.tar"
    if target.exists():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    rootfs = cache / f"debian-{key}.rootfs.tar"
    command = ["mmdebstrap", "--mode=root", "--variant=essential", "--format=tar", "--quiet"]
    command += [f"--include={','.join(packages)}", "bookworm", str(rootfs)]
    subprocess.run(command, check=True, capture_output=True)
    raw = rootfs.read_bytes()
    rootfs.unlink()
    partial = oci_archive(DEBIAN_IMAGE, raw, ["/bin/sh"], target.with_suffix(".partial"))
    return partial.rename(target)


def _json(value: object) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def _digest(blob: bytes) -> str:
    return f"sha256:{hashlib.sha256(blob).hexdigest()}"


def _descriptor(media_type: str, blob: bytes) -> dict[str, object]:
    return {"mediaType": media_type, "digest": _digest(blob), "size": len(blob)}
