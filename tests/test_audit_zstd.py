"""zstd-compressed layers (OCI `tar+zstd`): real images from skopeo, corrupt data, a zstd bomb.

`podman push --compression-format zstd` and `skopeo copy --dest-compress-format
zstd` (or `zstd:chunked`, many frames plus skippable metadata frames) write
them; the audit must find exactly what it finds in the uncompressed image.
The registry path is in tests/test_audit_registry.py.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from test_audit import DB_PASSWORD, DIRTY, DIRTY_FINDINGS, assert_no_value, audit, findings_of, fp

from testkit.audit_builder import TestImage, all_forms, oci_files, sha, tree_snapshot, write_dir

needs_skopeo = pytest.mark.skipif(not shutil.which("skopeo"), reason="needs skopeo (.ci/run installs it)")


@needs_skopeo
@pytest.mark.parametrize("compression", ["zstd", "zstd:chunked"])
def test_a_skopeo_zstd_image_is_audited_exactly(tmp_path: Path, compression: str) -> None:
    source = all_forms(DIRTY, tmp_path / "src")["oci-archive"]
    subprocess.run(
        ["skopeo", "copy", "--quiet", "--dest-compress-format", compression, source, f"oci:{tmp_path / 'z'}:1"],
        check=True, capture_output=True, timeout=900,
    )  # fmt: skip
    manifest_digest = json.loads((tmp_path / "z/index.json").read_text())["manifests"][0]["digest"]
    manifest = json.loads((tmp_path / "z/blobs/sha256" / manifest_digest.removeprefix("sha256:")).read_text())
    assert {layer["mediaType"] for layer in manifest["layers"]} == {"application/vnd.oci.image.layer.v1.tar+zstd"}
    result = audit("--format", "json", f"oci:{tmp_path / 'z'}:1")
    assert result.returncode == 1, result.stderr
    assert findings_of(result) == DIRTY_FINDINGS
    assert_no_value(result)


def test_zstd_layers_written_by_the_zstandard_library(tmp_path: Path) -> None:
    image = TestImage(layers=[{"x.env": f"DB_PASSWORD={DB_PASSWORD}\n"}], compress="zstd")
    result = audit("--format", "json", all_forms(image, tmp_path)["oci-archive"])
    assert result.returncode == 1, result.stderr
    assert findings_of(result) == {("file", 0, "/x.env", "DB_PASSWORD", fp(DB_PASSWORD))}


def _layout_with_blob(root: Path, blob: bytes) -> Path:
    """An OCI layout whose one zstd layer is `blob` (digest and size right, content as given)."""
    files = oci_files(TestImage(layers=[{}]))
    manifest_name, manifest = next(
        (k, json.loads(v)) for k, v in files.items() if k.startswith("blobs/") and b'"schemaVersion"' in v
    )
    del files[manifest_name]
    manifest["layers"] = [
        {"mediaType": "application/vnd.oci.image.layer.v1.tar+zstd", "digest": sha(blob), "size": len(blob)}
    ]
    new_manifest = json.dumps(manifest).encode()
    files["blobs/sha256/" + sha(new_manifest).removeprefix("sha256:")] = new_manifest
    files["blobs/sha256/" + sha(blob).removeprefix("sha256:")] = blob
    index = {"schemaVersion": 2, "manifests": [{"mediaType": manifest["mediaType"], "digest": sha(new_manifest),
                                                "size": len(new_manifest)}]}  # fmt: skip
    files["index.json"] = json.dumps(index).encode()
    return write_dir(root, files)


def _bad(tmp_path: Path, target: str, fragment: str) -> None:
    before = tree_snapshot(tmp_path)
    result = audit(target, cwd=tmp_path)
    assert result.returncode == 65, (result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0] and "Traceback" not in result.stderr, result.stderr
    assert result.stdout == "" and tree_snapshot(tmp_path) == before


def test_corrupt_zstd_and_a_zstd_bomb_exit_65(tmp_path: Path) -> None:
    zstandard = pytest.importorskip("zstandard")
    good = zstandard.ZstdCompressor().compress(b"x" * 100_000)
    corrupt = good[:8] + bytes(b ^ 0x5A for b in good[8:])
    _bad(tmp_path, f"oci:{_layout_with_blob(tmp_path / 'corrupt', corrupt)}", "corrupt compressed data")
    # 1 GiB of zeros in one tar member: ~40 KiB of zstd, refused long before it is all inflated
    chunks = zstandard.ZstdCompressor(level=3).compressobj()
    import tarfile

    header = tarfile.TarInfo("zeros")
    header.size = 1024**3
    parts = [chunks.compress(header.tobuf(format=tarfile.PAX_FORMAT))]
    block = b"\0" * (1024 * 1024)
    parts += [chunks.compress(block) for _ in range(1024)]
    parts.append(chunks.compress(b"\0" * 1024) + chunks.flush())
    _bad(tmp_path, f"oci:{_layout_with_blob(tmp_path / 'bomb', b''.join(parts))}", "decompression bomb")
