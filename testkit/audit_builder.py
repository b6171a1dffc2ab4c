"""Build image archives in Python for the audit tests: docker-archive, OCI archive, OCI layout.

The same image (config + layers described as {path: content}) is written in
each form byte for byte as podman/skopeo lay it out, so the readers are tested
without a container engine; tests/test_audit_containers.py does the same with
real podman builds.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

Entry = bytes | str | None  # file content; None: a directory; str starting "->": a symlink


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def layer_tar(files: dict[str, Entry], tar_format: int = tarfile.PAX_FORMAT) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tar_format) as tar:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.mtime = 0
            if content is None:
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                tar.addfile(info)
            elif isinstance(content, str) and content.startswith("->"):
                info.type = tarfile.SYMTYPE
                info.linkname = content[2:]
                tar.addfile(info)
            else:
                data = content.encode() if isinstance(content, str) else content
                info.size = len(data)
                info.mode = 0o644
                tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@dataclass
class TestImage:
    __test__ = False  # a builder, not a test class

    layers: list[dict[str, Entry] | bytes]  # bytes: a layer tar as is (hostile forms, testkit/hostile_tar.py)
    env: list[str] = field(default_factory=lambda: ["PATH=/usr/bin:/bin"])
    labels: dict[str, str] = field(default_factory=dict)
    cmd: list[str] = field(default_factory=lambda: ["/bin/sh"])
    history: list[dict] | None = None  # default: one "RUN step N" line per layer
    compress: bool | str = False  # True: gzip the layers (as a registry stores them); "zstd": zstd
    tar_format: int = tarfile.PAX_FORMAT  # how the layer tars are written (GNU and ustar too: images differ)

    def layer_blobs(self) -> list[tuple[bytes, bytes]]:
        """-> [(uncompressed tar, stored blob)]"""
        out = []
        for files in self.layers:
            tar = files if isinstance(files, bytes) else layer_tar(files, self.tar_format)
            if self.compress == "zstd":
                import zstandard

                out.append((tar, zstandard.ZstdCompressor().compress(tar)))
            else:
                out.append((tar, gzip.compress(tar, mtime=0) if self.compress else tar))
        return out

    def config_bytes(self, blobs: list[tuple[bytes, bytes]]) -> bytes:
        history = self.history
        if history is None:
            history = [{"created_by": f"/bin/sh -c step {i}"} for i in range(len(self.layers))]
        config = {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Env": self.env, "Labels": self.labels, "Cmd": self.cmd},
            "rootfs": {"type": "layers", "diff_ids": [sha(tar) for tar, _ in blobs]},
            "history": history,
        }
        return json.dumps(config, sort_keys=True).encode()


def _oci_blobs(image: TestImage) -> tuple[dict[str, bytes], dict]:
    blobs = image.layer_blobs()
    config = image.config_bytes(blobs)
    suffix = {False: "", True: "+gzip", "zstd": "+zstd"}[image.compress]
    media = "application/vnd.oci.image.layer.v1.tar" + suffix
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha(config), "size": len(config)},
        "layers": [{"mediaType": media, "digest": sha(blob), "size": len(blob)} for _, blob in blobs],
    }
    manifest_bytes = json.dumps(manifest).encode()
    files = {sha(config): config, sha(manifest_bytes): manifest_bytes}
    files.update({sha(blob): blob for _, blob in blobs})
    descriptor = {
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": sha(manifest_bytes),
        "size": len(manifest_bytes),
        "annotations": {"org.opencontainers.image.ref.name": "latest"},
    }
    return files, descriptor


def oci_files(image: TestImage) -> dict[str, bytes]:
    """Every file of an OCI layout, by relative path."""
    blobs, descriptor = _oci_blobs(image)
    out = {"oci-layout": b'{"imageLayoutVersion": "1.0.0"}'}
    out["index.json"] = json.dumps({"schemaVersion": 2, "manifests": [descriptor]}).encode()
    for digest, data in blobs.items():
        out["blobs/sha256/" + digest.removeprefix("sha256:")] = data
    return out


def docker_files(image: TestImage) -> dict[str, bytes]:
    """Every file of a `podman save --format docker-archive`, by name."""
    blobs = image.layer_blobs()
    config = image.config_bytes(blobs)
    out = {}
    names = []
    for tar, _ in blobs:
        name = sha(tar).removeprefix("sha256:") + ".tar"
        out[name] = tar
        names.append(name)
    config_name = sha(config).removeprefix("sha256:") + ".json"
    out[config_name] = config
    out["manifest.json"] = json.dumps(
        [{"Config": config_name, "RepoTags": ["localhost/test:latest"], "Layers": names}]
    ).encode()
    return out


def write_tar(path: Path, files: dict[str, bytes], gz: bool = False) -> Path:
    with tarfile.open(path, mode="w:gz" if gz else "w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def write_dir(path: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        target = path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return path


def all_forms(image: TestImage, base: Path) -> dict[str, str]:
    """The image as docker-archive, OCI archive and OCI layout targets."""
    base.mkdir(parents=True, exist_ok=True)
    return {
        "docker-archive": "docker-archive:" + str(write_tar(base / "image-docker.tar", docker_files(image))),
        "oci-archive": "oci-archive:" + str(write_tar(base / "image-oci.tar", oci_files(image))),
        "oci": "oci:" + str(write_dir(base / "layout", oci_files(image))) + ":latest",
    }


def tree_snapshot(root: Path) -> list[tuple[str, int]]:
    """Every path under root with its mtime, to prove a run wrote nothing."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            out.append((full, os.lstat(full).st_mtime_ns))
    return sorted(out)


def oci_index_files(images: dict[str, TestImage]) -> dict[str, bytes]:
    """An OCI layout whose `latest` is a multi-platform index: {"linux/amd64": image, ...}."""
    out = {"oci-layout": b'{"imageLayoutVersion": "1.0.0"}'}
    entries = []
    for platform, image in images.items():
        blobs, descriptor = _oci_blobs(image)
        for digest, data in blobs.items():
            out["blobs/sha256/" + digest.removeprefix("sha256:")] = data
        os_name, _, arch = platform.partition("/")
        descriptor = {k: v for k, v in descriptor.items() if k != "annotations"}
        entries.append({**descriptor, "platform": {"os": os_name, "architecture": arch}})
    index = json.dumps(
        {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": entries}
    ).encode()
    out["blobs/sha256/" + sha(index).removeprefix("sha256:")] = index
    top = {
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "digest": sha(index),
        "size": len(index),
        "annotations": {"org.opencontainers.image.ref.name": "latest"},
    }
    out["index.json"] = json.dumps({"schemaVersion": 2, "manifests": [top]}).encode()
    return out
