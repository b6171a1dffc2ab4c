"""Issue #20: a "clean" verdict must be one an attacker cannot forge, and an image must not decide how long
the audit runs.  Each test replays one attack from the issue against the real binary (or the one function
it names) and fails without its fix.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
from test_audit import assert_no_value, audit, findings_of, fp

from conftest import STRONGHOLD
from testkit.audit_builder import TestImage, all_forms, docker_files, oci_files, sha, write_dir, write_tar
from testkit.hostile_tar import END, gnu_long, header, member, pax

TOKEN = "ghp_" + "Zq8vLm3Nx7Rt2Wp5Ks9Hd4Fj6Gb1Cy0Ea3Ui"  # a GitHub token shape, made up
ENV_FILE = f"GITHUB_TOKEN={TOKEN}\n".encode()


def _one_line_error(result: subprocess.CompletedProcess[str], code: int, fragment: str = "") -> str:
    assert result.returncode == code, (result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert fragment in lines[0], lines[0]
    return lines[0]


def _image_with_layer(tmp_path: Path, layer: bytes, form: str = "oci-archive") -> str:
    return all_forms(TestImage(layers=[layer]), tmp_path / "img")[form]


# -- 1. the verdict reads what the engines extract ------------------------------------------------


@pytest.mark.parametrize(
    "layer",
    [
        pax([(b"GNU.sparse.hide", b"1")], kind=b"g") + member(b"app/.env", ENV_FILE) + END,
        pax([(b"path", b"usr/share/locale/x.mo")], kind=b"g") + member(b"app/.env", ENV_FILE) + END,
        gnu_long(b"L", b"app/.env") + pax([(b"path", b"usr/share/locale/x.mo")]) + member(b"x", ENV_FILE) + END,
        member(b".env", ENV_FILE, magic=b"ustar\0\0\0", prefix=b"app") + END,
    ],
    ids=["global-sparse-key", "global-path", "long-name-then-pax-path", "ustar-without-version"],
)
def test_a_header_cannot_hide_a_file_the_engines_extract(tmp_path: Path, layer: bytes) -> None:
    result = audit("--format", "json", _image_with_layer(tmp_path, layer))
    assert result.returncode == 1, result.stderr
    assert ("file", 0, "/app/.env", "GITHUB_TOKEN", fp(TOKEN)) in findings_of(result)
    assert_no_value(result, TOKEN)


def test_a_credential_file_in_a_skipped_directory_is_still_read(tmp_path: Path) -> None:
    layer = member(b"usr/share/locale/.env", ENV_FILE) + member(b"var/app.db.env", ENV_FILE) + END
    result = audit("--format", "json", _image_with_layer(tmp_path, layer))
    assert {f[2] for f in findings_of(result)} == {"/usr/share/locale/.env", "/var/app.db.env"}, result.stderr


def test_a_real_sparse_file_is_read(tmp_path: Path) -> None:
    source = tmp_path / "src"
    (source / "app").mkdir(parents=True)
    with open(source / "app" / ".env", "wb") as handle:  # a known credential file: read whatever follows
        handle.write(ENV_FILE)
        handle.seek(512 * 1024)
        handle.write(b"OTHER=1\n")
    with open(source / "app" / "settings.txt", "wb") as handle:  # text, then a hole
        handle.write(b"# settings\n" * 1000 + ENV_FILE)
        handle.seek(1024 * 1024)
        handle.write(b"OTHER=1\n")
    for version in ("0.1", "1.0"):
        out = tmp_path / f"sparse-{version}.tar"
        subprocess.run(
            [
                "tar",
                "--sparse",
                f"--sparse-version={version}",
                "--format=posix",
                "-cf",
                str(out),
                "-C",
                str(source),
                "app",
            ],
            check=True,
            timeout=60,
        )
        result = audit("--format", "json", _image_with_layer(tmp_path / version, out.read_bytes()))
        found = findings_of(result)
        assert ("file", 0, "/app/.env", "GITHUB_TOKEN", fp(TOKEN)) in found, (version, result.stderr)
        assert ("file", 0, "/app/settings.txt", "GITHUB_TOKEN", fp(TOKEN)) in found, (version, result.stderr)


# -- 2. a negative size is refused, never read backwards ----------------------------------------------


@pytest.mark.parametrize(
    "layer",
    [
        header(b"a", size=b"-1000\0") + bytes(1024),
        header(b"a", size=b"\xff" * 11 + b"\xfa") + bytes(1024),
        pax([(b"size", b"-1536")]) + header(b"a") + bytes(1024),
    ],
    ids=["octal", "base256", "pax"],
)
def test_a_negative_size_is_refused_at_once(tmp_path: Path, layer: bytes) -> None:
    target = _image_with_layer(tmp_path, layer)
    started = time.monotonic()
    result = subprocess.run([STRONGHOLD, "audit", target], capture_output=True, text=True, timeout=120)
    _one_line_error(result, 65, "corrupt tar")
    assert time.monotonic() - started < 120  # the bug looped forever at 100% CPU: the timeout above is the check


# -- 3. one manifest.json, or none -----------------------------------------------------------------


def _tar_bytes(entries: list[tuple[str, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in entries:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_two_manifests_in_one_archive_are_refused(tmp_path: Path) -> None:
    dirty = docker_files(TestImage(layers=[{"app/.env": ENV_FILE}]))
    clean = docker_files(TestImage(layers=[{"app/readme": "hello"}]))
    entries = list(dirty.items()) + [(k, v) for k, v in clean.items() if k != "manifest.json"]
    entries.append(("./manifest.json", clean["manifest.json"]))  # the same name, spelt differently
    (tmp_path / "two.tar").write_bytes(_tar_bytes(entries))
    _one_line_error(audit(f"docker-archive:{tmp_path / 'two.tar'}"), 65, "more than once")


def test_a_duplicated_layer_member_is_refused(tmp_path: Path) -> None:
    files = docker_files(TestImage(layers=[{"app/.env": ENV_FILE}]))
    layer = next(k for k in files if k.endswith(".tar"))
    entries = [*files.items(), (layer, files[layer])]
    (tmp_path / "dup.tar").write_bytes(_tar_bytes(entries))
    _one_line_error(audit(f"docker-archive:{tmp_path / 'dup.tar'}"), 65, "more than once")


# -- 7. memory does not grow with the input -----------------------------------------------------------


def _peak_rss_mib(*args: str) -> tuple[subprocess.CompletedProcess[str], int]:
    """Run the audit under a parent of its own, so the peak is the audit's alone."""
    code = (
        "import json, resource, subprocess, sys\n"
        "r = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
        "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
        "print(json.dumps([r.returncode, r.stdout, r.stderr, peak]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, STRONGHOLD, "audit", *args], capture_output=True, text=True, timeout=900
    )
    returncode, stdout, stderr, peak = json.loads(out.stdout)
    return subprocess.CompletedProcess(args, returncode, stdout, stderr), peak // 1024


def test_a_huge_pax_record_in_the_outer_archive_is_refused_in_little_memory(tmp_path: Path) -> None:
    body = pax([(b"comment", b"a" * (200 * 1024 * 1024))]) + member(b"manifest.json", b"[]") + END
    (tmp_path / "pax.tar.gz").write_bytes(gzip.compress(body, compresslevel=9))
    result, peak = _peak_rss_mib(str(tmp_path / "pax.tar.gz"))
    _one_line_error(result, 65, "extended header")
    assert peak < 100, peak


def test_many_long_names_in_the_outer_archive_stay_bounded(tmp_path: Path) -> None:
    with gzip.open(tmp_path / "names.tar.gz", "wb", compresslevel=9) as out:
        for index in range(40):
            out.write(gnu_long(b"L", b"%03d/" % index + b"n" * (1024 * 1024 - 8)))
            out.write(member(b"x", b""))
        out.write(END)
    result, peak = _peak_rss_mib(str(tmp_path / "names.tar.gz"))
    _one_line_error(result, 65, "member names")
    assert peak < 100, peak


def test_a_big_ordinary_image_stays_under_100_mib(tmp_path: Path) -> None:
    big = {f"data/{i}.txt": (b"line of text %d\n" % i) * 40000 for i in range(8)}
    target = all_forms(TestImage(layers=[big, {"app/.env": ENV_FILE}]), tmp_path / "img")["docker-archive"]
    result, peak = _peak_rss_mib("--format", "json", target)
    assert result.returncode == 1, result.stderr
    assert peak < 100, peak


# -- 8. nothing blocks ---------------------------------------------------------------------------------


def test_a_fifo_in_a_layout_or_as_the_target_does_not_block(tmp_path: Path) -> None:
    layout = write_dir(tmp_path / "layout", oci_files(TestImage(layers=[{"a": "b"}])))
    os.unlink(layout / "index.json")
    os.mkfifo(layout / "index.json")
    _one_line_error(audit(f"oci:{layout}"), 65, "not a regular file")
    os.mkfifo(tmp_path / "fifo.tar")
    _one_line_error(audit(f"docker-archive:{tmp_path / 'fifo.tar'}"), 66, "not a regular file")


# -- 13. hostile archives give one line, and the other targets are still audited ------------------------


def test_an_outer_hardlink_to_a_missing_member_is_one_line(tmp_path: Path) -> None:
    files = docker_files(TestImage(layers=[{"a": "b"}]))
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in files.items():
            if name == "manifest.json":
                info = tarfile.TarInfo(name)
                info.type = tarfile.LNKTYPE
                info.linkname = "nowhere.json"
                tar.addfile(info)
                continue
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    (tmp_path / "link.tar").write_bytes(buffer.getvalue())
    clean = all_forms(TestImage(layers=[{"a": "b"}]), tmp_path / "clean")["oci"]
    result = audit("--format", "json", f"docker-archive:{tmp_path / 'link.tar'}", clean)
    line = _one_line_error(result, 65, "does not hold")
    assert "nowhere.json" in line
    targets = json.loads(result.stdout)["targets"]
    assert [t["clean"] for t in targets] == [False, True]


# -- 5. an image does not decide how long the audit runs --------------------------------------------


def _docker_archive_with_layers(path: Path, layer: bytes, count: int) -> Path:
    """A docker archive whose manifest lists one layer `count` times (the config's diff_ids agree)."""
    diff = sha(layer)
    config = json.dumps(
        {"architecture": "amd64", "os": "linux", "config": {}, "rootfs": {"type": "layers", "diff_ids": [diff] * count}}
    ).encode()
    files = {
        "layer.tar": layer,
        "config.json": config,
        "manifest.json": json.dumps([{"Config": "config.json", "Layers": ["layer.tar"] * count}]).encode(),
    }
    return write_tar(path, files, gz=True)


def test_a_layer_listed_100000_times_is_refused_at_once(tmp_path: Path) -> None:
    layer = tarfile_bytes({"a.txt": b"x" * 1024})
    archive = _docker_archive_with_layers(tmp_path / "many.tar.gz", layer, 100_000)
    assert archive.stat().st_size < 200_000
    _one_line_error(audit(f"docker-archive:{archive}"), 65, "layers")


def test_a_layer_listed_again_and_again_is_read_once(tmp_path: Path) -> None:
    """200 references to one 4 MiB layer that compresses to a few KiB: 800 MiB of reading from ~10 KiB, if
    each reference were read.  The layer pool scans each distinct digest once (issue #23), so the verdict
    comes; were it read per reference, the target's read budget would refuse it (65, "distinct input")."""
    layer = tarfile_bytes({"zeros.txt": b"z\n" * (2 * 1024 * 1024)})
    archive = _docker_archive_with_layers(tmp_path / "again.tar.gz", layer, 200)
    result = audit(f"docker-archive:{archive}")
    assert result.returncode == 0 and "distinct input" not in result.stderr, result.stderr


def tarfile_bytes(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


# -- 12. strings from the image are shown, never obeyed ------------------------------------------------

HOSTILE = "\x1b]0;pwned\x07\x1b[2J\x9b2J\u2028\x7fclean"  # title, clear screen, C1 CSI, a line break, DEL


def test_control_characters_from_the_image_are_escaped_in_every_format(tmp_path: Path) -> None:
    image = TestImage(
        layers=[{f"app/{HOSTILE}.env": ENV_FILE}],
        history=[{"created_by": f"/bin/sh -c echo {HOSTILE} GITHUB_TOKEN={TOKEN}"}],
    )
    files = docker_files(image)
    manifest = json.loads(files["manifest.json"])
    manifest[0]["RepoTags"] = [f"evil:{HOSTILE}"]
    files["manifest.json"] = json.dumps(manifest).encode()
    target = f"docker-archive:{write_tar(tmp_path / 'evil.tar', files)}"
    for fmt in ("text", "json", "sarif"):
        result = audit("--format", fmt, target)
        assert result.returncode == 1, result.stderr
        for raw in ("\x1b", "\x07", "\x9b", "\u2028", "\x7f"):
            assert raw not in result.stdout and raw not in result.stderr, (fmt, raw)
        assert_no_value(result, TOKEN)
        if fmt == "text":
            assert "\\x1b]0;pwned\\x07" in result.stdout  # shown, escaped
            assert not any(line.endswith("clean") for line in result.stdout.splitlines())
        else:
            json.loads(result.stdout)  # still valid JSON
    paths = {f[2] for f in findings_of(audit("--format", "json", target))}
    assert f"/app/{HOSTILE}.env" in paths  # JSON escapes decode to the very name


def test_the_progress_line_escapes_paths(capsys: pytest.CaptureFixture[str]) -> None:
    from injector.audit.progress import Progress

    Progress(True).update(f"layer 1/1 /app/{HOSTILE}")
    err = capsys.readouterr().err
    assert "\x1b]0" not in err and "\x9b" not in err and "\\x1b]0;pwned" in err
