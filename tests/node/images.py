"""OCI image archives built here with no registry: the pause and busybox images, and the
layout writer the runtime and operator images use (build_images.py).

Each is an OCI image layout in a tar archive (one gzipped layer), with the name containerd
imports it under (`ctr images import`). Layers are deterministic (mtime 0, root-owned), so the
same inputs give the same digests.
"""

import gzip
import hashlib
import io
import json
import platform
import subprocess
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

PAUSE_IMAGE = "modelkube.local/pause:3.10"
BUSYBOX_IMAGE = "modelkube.local/busybox:1"
ARCH = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
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
    config = {"Entrypoint": entrypoint, "WorkingDir": "/"}
    blobs = {_digest(compressed): compressed}
    write_layout(
        name, config, [(_digest(raw), _digest(compressed), len(compressed))], blobs, target
    )
    return target


def write_layout(
    name: str,
    config: Mapping[str, object],
    layers: list[tuple[str, str, int]],
    blobs: Mapping[str, bytes | Path],
    target: Path,
) -> None:
    """An OCI image layout tar for image `name` with image `config` (the OCI config's
    `config` object) and `layers` (diff id, compressed digest, compressed size), bottom first;
    `blobs` holds each layer's compressed bytes (or a file of them) by digest."""
    image_config = {
        "architecture": ARCH,
        "os": "linux",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": [diff for diff, _, _ in layers]},
    }
    config_blob = _json(image_config)
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": _descriptor("application/vnd.oci.image.config.v1+json", config_blob),
        "layers": [
            {"mediaType": LAYER_GZIP, "digest": digest, "size": size} for _, digest, size in layers
        ],
    }
    manifest_blob = _json(manifest)
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                **_descriptor("application/vnd.oci.image.manifest.v1+json", manifest_blob),
                "platform": {"architecture": ARCH, "os": "linux"},
                "annotations": {
                    "io.containerd.image.name": name,
                    "org.opencontainers.image.ref.name": name.rsplit(":", 1)[1],
                },
            }
        ],
    }
    small = {_digest(b): b for b in (config_blob, manifest_blob)}
    with tarfile.open(target, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path, data in (
            ("oci-layout", _json({"imageLayoutVersion": "1.0.0"})),
            ("index.json", _json(index)),
        ):
            _add_bytes(tar, path, data)
        for directory in ("blobs", "blobs/sha256"):
            info = tarfile.TarInfo(directory)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        for digest, blob in sorted({**blobs, **small}.items()):
            path = f"blobs/sha256/{digest.removeprefix('sha256:')}"
            if isinstance(blob, Path):
                info = tarfile.TarInfo(path)
                info.size, info.mode = blob.stat().st_size, 0o644
                with blob.open("rb") as stream:
                    tar.addfile(info, stream)
            else:
                _add_bytes(tar, path, blob)


def _add_bytes(tar: tarfile.TarFile, path: str, data: bytes) -> None:
    info = tarfile.TarInfo(path)
    info.size, info.mode = len(data), 0o644
    tar.addfile(info, io.BytesIO(data))


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


def _json(value: object) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def _digest(blob: bytes) -> str:
    return f"sha256:{hashlib.sha256(blob).hexdigest()}"


def _descriptor(media_type: str, blob: bytes) -> dict[str, object]:
    return {"mediaType": media_type, "digest": _digest(blob), "size": len(blob)}
