"""`stronghold-init audit` (SPEC section 10) on archives built in Python, run as the real binary.

Each test builds one image in docker-archive, OCI archive and OCI layout form
(testkit/audit_builder.py) and asserts the exact findings: where, layer, path,
key and the fingerprint of the exact value, and that no output holds a value.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from conftest import STRONGHOLD
from testkit.audit_builder import (
    TestImage,
    all_forms,
    docker_files,
    layer_tar,
    oci_files,
    sha,
    tree_snapshot,
    write_dir,
    write_tar,
)
from testkit.audit_images import ALL_SECRETS, CLEAN, DB_PASSWORD, DIRTY, GITHUB, NPM, PRIVATE_KEY, STRIPE


def fp(value: str) -> str:
    return "sha256:" + hashlib.sha256(value.encode()).hexdigest()


def audit(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [STRONGHOLD, "audit", *args],
        capture_output=True,
        text=True,
        timeout=900,  # a deadline for a hung run, not a speed check: loaded 2-core CI machines are slow
        env=env or {**os.environ, "HOME": str(cwd or Path.cwd())},
        cwd=cwd,
    )


def findings_of(result: subprocess.CompletedProcess[str]) -> set[tuple]:
    report = json.loads(result.stdout)
    return {
        (f["where"], f["layer"], f["path"], f["key"], f["fingerprint"])
        for target in report["targets"]
        for f in target["findings"]
    }


def assert_no_value(result: subprocess.CompletedProcess[str], *values: str) -> None:
    for value in values or ALL_SECRETS:
        escaped = json.dumps(value)[1:-1]
        for stream in (result.stdout, result.stderr):
            assert value not in stream and escaped not in stream
            assert value[4:20] not in stream


DIRTY_FINDINGS = {
    ("env", None, None, "STRIPE_SECRET_KEY", fp(STRIPE)),
    ("history", None, None, "STRIPE_SECRET_KEY", fp(STRIPE)),
    ("history", 1, None, "GITHUB_TOKEN", fp(GITHUB)),
    ("deleted-file", 0, "/app/.npmrc", "_authToken", fp(NPM)),
    ("file", 1, "/root/.ssh/id_ed25519", None, fp(PRIVATE_KEY)),
    ("file", 2, "/app/.env", "DB_PASSWORD", fp(DB_PASSWORD)),
}


@pytest.fixture(scope="module")
def dirty(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return all_forms(DIRTY, tmp_path_factory.mktemp("dirty"))


@pytest.mark.parametrize("form", ["docker-archive", "oci-archive", "oci"])
def test_every_way_in_is_found_exactly_in_every_form(dirty: dict[str, str], form: str) -> None:
    result = audit("--format", "json", dirty[form])
    assert result.returncode == 1, result.stderr
    assert findings_of(result) == DIRTY_FINDINGS
    report = json.loads(result.stdout)["targets"][0]
    assert report["target"] == dirty[form] and report["clean"] is False
    assert report["image"].startswith("sha256:") and len(report["image"]) == 71
    for finding in report["findings"]:
        assert finding["fix"] and "\n" not in finding["fix"]
        assert finding["redacted"].endswith(")") and len(finding["redacted"].split("…")[0]) <= 4
    assert_no_value(result)


def test_a_bare_path_is_sniffed_as_docker_or_oci_archive(dirty: dict[str, str]) -> None:
    for form in ("docker-archive", "oci-archive"):
        result = audit("--format", "json", dirty[form].split(":", 1)[1])
        assert result.returncode == 1 and findings_of(result) == DIRTY_FINDINGS


def test_deleted_file_names_both_layers(dirty: dict[str, str]) -> None:
    report = json.loads(audit("--format", "json", dirty["oci"]).stdout)
    [deleted] = [f for f in report["targets"][0]["findings"] if f["where"] == "deleted-file"]
    assert deleted["layer"] == 0 and "layer 2 deletes or replaces it" in deleted["fix"]
    assert deleted["redacted"] == "npm_…(" + str(len(NPM)) + ")"


def test_text_report_groups_by_layer_with_safe_history_lines(dirty: dict[str, str]) -> None:
    result = audit(dirty["docker-archive"])
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert "6 findings" in lines[0]
    assert any(line.startswith("  layer 1: |1 GITHUB_TOKEN=ghp_…(") for line in lines)
    assert any("deleted-file /app/.npmrc _authToken: npm_…" in line and "fix:" in line for line in lines)
    assert_no_value(result)


def test_sarif_is_valid_sarif_2_1_0(dirty: dict[str, str]) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((Path(__file__).parent / "data" / "sarif-schema-2.1.0.json").read_text())
    result = audit("--format", "sarif", dirty["oci-archive"])
    assert result.returncode == 1
    sarif = json.loads(result.stdout)
    jsonschema.Draft4Validator(schema).validate(sarif)
    results = sarif["runs"][0]["results"]
    assert len(results) == len(DIRTY_FINDINGS)
    assert {r["partialFingerprints"]["secretSha256/v1"] for r in results} == {
        f[4].removeprefix("sha256:") for f in DIRTY_FINDINGS
    }
    assert_no_value(result)


def test_sarif_schema_rejects_a_broken_log() -> None:
    """The schema check above can fail: a log without `runs` is invalid."""
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((Path(__file__).parent / "data" / "sarif-schema-2.1.0.json").read_text())
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft4Validator(schema).validate({"version": "2.1.0"})


def test_references_placeholders_checksums_and_secret_mounts_are_clean(tmp_path: Path) -> None:
    forms = all_forms(CLEAN, tmp_path)
    for target in forms.values():
        result = audit("--format", "json", target)
        assert result.returncode == 0, result.stdout
        assert json.loads(result.stdout)["targets"][0]["clean"] is True
    text = audit(forms["oci"])
    assert text.returncode == 0 and text.stdout.strip().endswith("clean")


def test_strict_reports_placeholders(tmp_path: Path) -> None:
    result = audit("--strict", "--format", "json", all_forms(CLEAN, tmp_path)["oci"])
    assert result.returncode == 1
    keys = {f[3] for f in findings_of(result)}
    assert {"API_KEY", "DB_PASSWORD", "STRIPE_KEY"} <= keys
    assert not {"STRIPE_SECRET_KEY", "VAULT_TOKEN", "APP_SECRET", "GPG_KEY", "PYTHON_SHA256"} & keys


def test_whiteouts_opaque_dirs_and_replacements(tmp_path: Path) -> None:
    image = TestImage(
        layers=[
            {"a": None, "a/.env": f"DB_PASSWORD={DB_PASSWORD}\n", "b": None, "b/.npmrc": f"_authToken={NPM}\n"},
            {"c": None, "c/key.pem": PRIVATE_KEY + "\n"},
            {"a": None, "a/.wh..wh..opq": b"", "b/.npmrc": "registry=https://r/\n", ".wh.c": b""},
        ]
    )
    result = audit("--format", "json", all_forms(image, tmp_path)["docker-archive"])
    assert findings_of(result) == {
        ("deleted-file", 0, "/a/.env", "DB_PASSWORD", fp(DB_PASSWORD)),
        ("deleted-file", 0, "/b/.npmrc", "_authToken", fp(NPM)),
        ("deleted-file", 1, "/c/key.pem", None, fp(PRIVATE_KEY)),
    }


def test_gzip_layers_and_a_multi_platform_index(tmp_path: Path) -> None:
    amd = TestImage(layers=[{"x.env": f"DB_PASSWORD={DB_PASSWORD}\n"}], compress=True)
    arm = TestImage(layers=[{"y.env": f"DB_PASSWORD={DB_PASSWORD}\n"}], compress=True)
    files: dict[str, bytes] = {"oci-layout": b'{"imageLayoutVersion": "1.0.0"}'}
    descriptors = []
    for image, arch in ((amd, "amd64"), (arm, "arm64")):
        layout = oci_files(image)
        files.update({k: v for k, v in layout.items() if k.startswith("blobs/")})
        descriptor = json.loads(layout["index.json"])["manifests"][0]
        descriptor.pop("annotations")
        descriptor["platform"] = {"os": "linux", "architecture": arch}
        descriptors.append(descriptor)
    index = json.dumps(
        {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": descriptors}
    ).encode()
    files["blobs/sha256/" + sha(index).removeprefix("sha256:")] = index
    files["index.json"] = json.dumps(
        {
            "schemaVersion": 2,
            "manifests": [
                {"mediaType": "application/vnd.oci.image.index.v1+json", "digest": sha(index), "size": len(index)}
            ],
        }
    ).encode()
    layout = write_dir(tmp_path / "multi", files)
    for arch, path in (("amd64", "/x.env"), ("arm64", "/y.env")):
        result = audit("--format", "json", "--platform", f"linux/{arch}", f"oci:{layout}")
        assert result.returncode == 1, result.stderr
        assert findings_of(result) == {("file", 0, path, "DB_PASSWORD", fp(DB_PASSWORD))}
    missing = audit("--platform", "linux/s390x", f"oci:{layout}")
    assert missing.returncode == 65 and "linux/s390x" in missing.stderr


# -- bad input: exit 65 (or 66/64) with one line, no traceback, nothing written -------------------------


def _bad(tmp_path: Path, *args: str, code: int = 65, fragment: str = "") -> str:
    before = tree_snapshot(tmp_path)
    result = audit(*args, cwd=tmp_path)
    assert result.returncode == code, (result.returncode, result.stderr)
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert fragment in lines[0], lines[0]
    assert tree_snapshot(tmp_path) == before
    assert_no_value(result)
    return lines[0]


def test_truncated_archive(tmp_path: Path) -> None:
    data = (tmp_path / "ok.tar").write_bytes(b"") or None
    full = write_tar(tmp_path / "full.tar", docker_files(DIRTY)).read_bytes()
    (tmp_path / "cut.tar").write_bytes(full[: len(full) // 2])
    del data
    _bad(tmp_path, f"docker-archive:{tmp_path / 'cut.tar'}")


def test_not_an_archive_and_empty_file(tmp_path: Path) -> None:
    (tmp_path / "junk.tar").write_bytes(os.urandom(4096))
    _bad(tmp_path, str(tmp_path / "junk.tar"))
    (tmp_path / "empty.tar").write_bytes(b"")
    _bad(tmp_path, str(tmp_path / "empty.tar"))


def test_layer_digest_mismatch(tmp_path: Path) -> None:
    files = oci_files(TestImage(layers=[{"a.txt": "hello"}]))
    layer_name = next(k for k, v in files.items() if k.startswith("blobs/") and v.startswith(b"a.txt"))
    files[layer_name] = layer_tar({"a.txt": "HELLO"})  # same size, other bytes
    _bad(tmp_path, f"oci-archive:{write_tar(tmp_path / 'x.tar', files)}", fragment="does not match its digest")
    docker = docker_files(TestImage(layers=[{"a.txt": "hello"}]))
    name = next(k for k in docker if k.endswith(".tar"))
    docker[name] = layer_tar({"a.txt": "HELLO"})
    _bad(tmp_path, f"docker-archive:{write_tar(tmp_path / 'd.tar', docker)}", fragment="diff_id")


def test_dotdot_paths_in_a_layer(tmp_path: Path) -> None:
    image = TestImage(layers=[{"../../etc/evil": "x"}])
    _bad(tmp_path, all_forms(image, tmp_path / "img")["oci-archive"], fragment="'..'")


def test_absolute_symlink_and_escaping_names_in_the_archive(tmp_path: Path) -> None:
    files = docker_files(TestImage(layers=[{"a": "b"}]))
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("evil.tar")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc/shadow"
        tar.addfile(link)
    (tmp_path / "sym.tar").write_bytes(buffer.getvalue())
    _bad(tmp_path, f"docker-archive:{tmp_path / 'sym.tar'}", fragment="absolute symlink")


def test_manifest_pointing_outside_the_archive(tmp_path: Path) -> None:
    files = docker_files(TestImage(layers=[{"a": "b"}]))
    manifest = json.loads(files["manifest.json"])
    manifest[0]["Layers"] = ["../../../etc/passwd"]
    files["manifest.json"] = json.dumps(manifest).encode()
    _bad(tmp_path, f"docker-archive:{write_tar(tmp_path / 'out.tar', files)}", fragment="outside the archive")
    layout = oci_files(TestImage(layers=[{"a": "b"}]))
    write_dir(tmp_path / "layout", layout)
    blob = next(p for p in (tmp_path / "layout/blobs/sha256").iterdir() if p.read_bytes().startswith(b"a"))
    blob.unlink()
    blob.symlink_to("/etc/passwd")
    _bad(tmp_path, f"oci:{tmp_path / 'layout'}", fragment="symlink")


def test_gzip_bomb_is_refused_early(tmp_path: Path) -> None:
    """~1 GiB of zeros in one member compresses to ~1 MiB: refused before it is all inflated."""
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", compresslevel=9, mtime=0) as gz:
        header = tarfile.TarInfo("zeros")
        header.size = 1024**3
        gz.write(header.tobuf(format=tarfile.PAX_FORMAT))
        block = b"\0" * (1024 * 1024)
        for _ in range(1024):
            gz.write(block)
        gz.write(b"\0" * 1024)
    blob = buffer.getvalue()
    image = TestImage(layers=[{}])
    files = oci_files(image)
    manifest_name, manifest = next(
        (k, json.loads(v)) for k, v in files.items() if k.startswith("blobs/") and b'"schemaVersion"' in v
    )
    manifest["layers"] = [
        {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": sha(blob), "size": len(blob)}
    ]
    config_name = "blobs/sha256/" + manifest["config"]["digest"].removeprefix("sha256:")
    config = json.loads(files[config_name])
    config["rootfs"]["diff_ids"] = [sha(b"unused")]
    new_config = json.dumps(config).encode()
    del files[config_name]
    files["blobs/sha256/" + sha(new_config).removeprefix("sha256:")] = new_config
    manifest["config"] = {
        "mediaType": "application/vnd.oci.image.config.v1+json",
        "digest": sha(new_config),
        "size": len(new_config),
    }
    new_manifest = json.dumps(manifest).encode()
    del files[manifest_name]
    files["blobs/sha256/" + sha(new_manifest).removeprefix("sha256:")] = new_manifest
    files["blobs/sha256/" + sha(blob).removeprefix("sha256:")] = blob
    files["index.json"] = json.dumps(
        {
            "schemaVersion": 2,
            "manifests": [{"mediaType": manifest["mediaType"], "digest": sha(new_manifest), "size": len(new_manifest)}],
        }
    ).encode()
    _bad(tmp_path, f"oci:{write_dir(tmp_path / 'bomb', files)}", fragment="decompression bomb")


def test_missing_target_and_usage_errors(tmp_path: Path) -> None:
    _bad(tmp_path, str(tmp_path / "nope.tar"), code=66, fragment="no such file")
    _bad(tmp_path, f"oci:{tmp_path / 'nodir'}", code=66)
    _bad(tmp_path, "--format", "xml", str(tmp_path), code=64)
    _bad(tmp_path, "docker://127.0.0.1:1/UPPER/case", code=64)
    result = audit(cwd=tmp_path)
    assert result.returncode == 64


# -- the Dockerfile check -----------------------------------------------------------------------------

DOCKERFILE = f"""\
FROM debian:bookworm
ARG NPM_TOKEN
ARG VERSION=1.0
ENV STRIPE_SECRET_KEY={STRIPE}
ENV DB_PASSWORD_FILE=stronghold://postgres/app
ENV API_KEY=changeme
COPY .npmrc /root/.npmrc
COPY .env ./
COPY id_rsa /root/.ssh/id_rsa
RUN npm ci --registry https://r/ && echo "//r/:_authToken=$NPM_TOKEN" > .npmrc
RUN curl -H "Authorization: Bearer {GITHUB}" https://api.github.com/
RUN --mount=type=secret,id=npm,target=/root/.npmrc npm ci
"""


def test_dockerfile_findings_and_fixes(tmp_path: Path) -> None:
    path = tmp_path / "Dockerfile"
    path.write_text(DOCKERFILE)
    result = audit("--format", "json", str(path))
    assert result.returncode == 1, result.stderr
    findings = json.loads(result.stdout)["targets"][0]["findings"]
    got = {(f["rule"], f["key"]) for f in findings}
    assert got == {
        ("secret-named-build-arg", "NPM_TOKEN"),
        ("detect-secrets/StripeDetector", "STRIPE_SECRET_KEY"),
        ("credential-file-copied", ".npmrc"),
        ("credential-file-copied", ".env"),
        ("credential-file-copied", "id_rsa"),
        ("secret-build-arg-used", "NPM_TOKEN"),
        ("authorization-header", "Authorization"),
    }
    assert all(f["where"] == "dockerfile" and f["path"] == str(path) for f in findings)
    fixes = {f["key"]: f["fix"] for f in findings}
    assert "stronghold://" in fixes["STRIPE_SECRET_KEY"] and "--mount=type=secret" in fixes["NPM_TOKEN"]
    assert_no_value(result, STRIPE, GITHUB)
    clean = tmp_path / "clean.Dockerfile"
    clean.write_text("FROM x\nENV TOKEN=stronghold://t\nRUN --mount=type=secret,id=npm npm ci\n")
    assert audit(f"dockerfile:{clean}").returncode == 0


def test_entrypoint_start_up_imports_nothing_of_the_audit(tmp_path: Path) -> None:
    """A normal run (here: one that stops at configuration) never loads requests or detect-secrets."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STRONGHOLD_", "VAULT_", "BAO_"))}
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "injector", "--", "true"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr  # no references: it just runs the command
    imported = {line.split("|")[-1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")}
    assert "injector.cli" in imported  # the probe sees the entrypoint's imports at all
    for heavy in ("requests", "detect_secrets", "dockerfile_parse", "injector.audit", "urllib3", "zstandard"):
        assert not any(name == heavy or name.startswith(heavy + ".") for name in imported), heavy


def run_on_a_terminal(argv: list[str], env: dict[str, str] | None = None) -> tuple[int, str, bytes]:
    """Run `argv` with its stderr on a pseudo-terminal: (exit code, stdout, everything the terminal showed)."""
    import pty

    controller, terminal = pty.openpty()
    try:
        done = subprocess.run(argv, stdout=subprocess.PIPE, stderr=terminal, timeout=900, env=env, text=True)
        os.close(terminal)
        terminal = -1
        shown = b""
        while True:
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # EIO: the terminal side is closed and drained
                break
            if not chunk:
                break
            shown += chunk
    finally:
        if terminal >= 0:
            os.close(terminal)
        os.close(controller)
    return done.returncode, done.stdout, shown


def test_progress_line_only_when_stderr_is_a_terminal(dirty: dict[str, str]) -> None:
    code, stdout, shown = run_on_a_terminal([STRONGHOLD, "audit", "--format", "json", dirty["oci"]])
    assert code == 1
    assert re.search(rb"audit: layer [123]/3 ", shown) and b"\r" in shown  # layers are read in parallel: any first
    assert json.loads(stdout)["targets"][0]["findings"]  # stdout stays a clean report
    for value in ALL_SECRETS:
        assert value.encode()[4:20] not in shown
    piped = audit("--format", "json", dirty["oci"])
    assert piped.stderr == ""


def test_audit_package_stays_apart_and_reports_never_see_values() -> None:
    """Only cli.py (lazily) and the webhook's image reader (the audit's registry client, SPEC 14) import
    injector.audit; the report writers import nothing that holds a value."""
    from test_architecture import PACKAGE, imported_modules

    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE)
        if relative.parts[0] == "audit" or path.name == "cli.py" or relative.as_posix() == "modes/webhook_images.py":
            continue
        assert not any(m == "audit" or m.startswith("audit.") for m in imported_modules(path)), path
    report = imported_modules(PACKAGE / "audit" / "report.py")
    assert not {m for m in report if m.startswith(("audit.detect", "audit.scan", "audit.layers", "audit.registry"))}
    assert "audit.findings" in report  # the walker sees the report's imports at all
    for module in ("findings", "report", "image", "layers", "archive", "targets", "errors"):
        text = (PACKAGE / "audit" / f"{module}.py").read_text()
        assert "import requests" not in text and "detect_secrets" not in text, module
