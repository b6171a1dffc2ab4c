"""The Python-free bundle (SPEC section 11): what scripts/build-bundle makes.

The bundle-only tests need a built bundle named by STRONGHOLD_INIT_BIN (.ci/run
builds one and runs this file, plus a black-box selection, against it):

    python scripts/build-bundle
    STRONGHOLD_INIT_BIN=dist/stronghold-init/stronghold-init python -m pytest tests/test_bundle.py

The tarball tests build small trees of their own and always run.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from conftest import BUNDLE_BIN, base_env

ROOT = Path(__file__).resolve().parent.parent
SUBCOMMANDS = ["sidecar", "fetch", "check", "dev-proxy", "webhook", "install"] + (
    ["audit"] if (ROOT / "injector" / "audit").is_dir() else []
)
INSTALLED = shutil.which("stronghold-init", path=str(Path(sys.executable).parent))

needs_bundle = pytest.mark.skipif(not BUNDLE_BIN, reason="no bundle under test: set STRONGHOLD_INIT_BIN")


def build_script():
    """scripts/build-bundle as a module (it has no .py suffix: it is a command)."""
    loader = importlib.machinery.SourceFileLoader("build_bundle", str(ROOT / "scripts" / "build-bundle"))
    spec = importlib.util.spec_from_loader("build_bundle", loader)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    loader.exec_module(module)
    return module


def make_tree(root: Path) -> Path:
    tree = root / "stronghold-init"
    (tree / "lib").mkdir(parents=True)
    (tree / "stronghold-init").write_bytes(b"\x7fELF not really")
    (tree / "stronghold-init").chmod(0o755)
    (tree / "lib" / "libx.so.1").write_bytes(b"library")
    (tree / "lib" / "data.txt").write_text("data")
    return tree


def test_tarball_bytes_depend_only_on_the_files(tmp_path: Path) -> None:
    """Two builds at different times, umasks and owners give the same checksum."""
    build = build_script()
    first, second = make_tree(tmp_path / "a"), make_tree(tmp_path / "b")
    os.utime(second / "lib" / "data.txt", (12345, 12345))
    (second / "lib" / "data.txt").chmod(0o600)
    os.chown(second / "lib" / "libx.so.1", 1234, 1234) if os.geteuid() == 0 else None
    sums = []
    for tree in (first, second):
        build.normalise(tree, 1700000000)
        target = tree.parent / "out.tar.gz"
        build.write_tarball(tree, target, 1700000000)
        sums.append(hashlib.sha256(target.read_bytes()).hexdigest())
    assert sums[0] == sums[1]


def test_tarball_holds_one_directory_owned_by_root_at_source_date_epoch(tmp_path: Path) -> None:
    build = build_script()
    tree = make_tree(tmp_path)
    build.normalise(tree, 1700000000)
    target = tmp_path / "out.tar.gz"
    build.write_tarball(tree, target, 1700000000)
    with tarfile.open(target) as archive:
        members = archive.getmembers()
    names = [member.name for member in members]
    assert names == sorted(names) and names[0] == "stronghold-init"
    assert all(name == "stronghold-init" or name.startswith("stronghold-init/") for name in names)
    assert {(m.uid, m.gid, m.uname, m.gname, m.mtime) for m in members} == {(0, 0, "", "", 1700000000)}
    modes = {m.name: m.mode for m in members}
    assert modes["stronghold-init/stronghold-init"] == 0o755
    assert modes["stronghold-init/lib/data.txt"] == 0o644


@needs_bundle
@pytest.mark.parametrize("subcommand", [None, *SUBCOMMANDS])
def test_every_subcommand_is_in_the_bundle_and_says_the_same(subcommand: str | None) -> None:
    """`--help` of the bundle is byte for byte the pip-installed command's (a missing module would fail here)."""
    argv = [subcommand, "--help"] if subcommand else ["--help"]
    env = {**base_env(), "COLUMNS": "100"}
    bundle = subprocess.run([BUNDLE_BIN, *argv], capture_output=True, text=True, env=env, timeout=60)
    assert bundle.returncode == 0, bundle.stderr
    assert "Traceback" not in bundle.stderr
    if INSTALLED:
        installed = subprocess.run([INSTALLED, *argv], capture_output=True, text=True, env=env, timeout=60)
        assert bundle.stdout == installed.stdout


# The size goals (issue 13; docs/bundle.md, "What is in it, and what is left out").
DISK_GOAL = 25_000_000
GZIP_GOAL = 10_000_000


@needs_bundle
def test_the_bundle_is_under_25_mb_on_disk_and_10_mb_gzipped(tmp_path: Path) -> None:
    """What scripts/build-bundle leaves out keeps it there: a library or stdlib tree let back in fails here."""
    build = build_script()
    bundle_dir = Path(BUNDLE_BIN).resolve().parent
    files = [path for path in bundle_dir.rglob("*") if path.is_file() and not path.is_symlink()]
    on_disk = sum(path.stat().st_size for path in files)
    tarball = tmp_path / "bundle.tar.gz"
    build.write_tarball(bundle_dir, tarball, 1700000000)  # the release tarball's format, from these files
    largest = sorted(files, key=lambda path: path.stat().st_size)[-5:]
    assert on_disk < DISK_GOAL, f"{on_disk} bytes on disk; largest: {[(p.name, p.stat().st_size) for p in largest]}"
    assert tarball.stat().st_size < GZIP_GOAL, f"{tarball.stat().st_size} bytes gzipped"


@needs_bundle
def test_the_bundle_needs_no_python_library_outside_itself() -> None:
    """Every shared library it loads is its own or the C library's, never a libpython from the system."""
    bundle_dir = Path(BUNDLE_BIN).resolve().parent
    libraries = [bundle_dir / "stronghold-init", *bundle_dir.rglob("*.so*")]
    done = subprocess.run(["ldd", *map(str, libraries)], capture_output=True, text=True, timeout=60)
    for line in done.stdout.splitlines():
        if "=>" not in line:
            continue
        target = line.strip().partition(" => ")[2]
        assert "not found" not in target, line
        assert "python" not in target or target.startswith(str(bundle_dir)), line


@needs_bundle
@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="chroot needs root")
def test_runs_in_a_root_with_only_the_bundle_and_the_c_library(tmp_path: Path, proxy) -> None:
    """No Python anywhere in sight: a chroot holding the bundle, the dynamic loader and libc's libraries."""
    bundle_dir = Path(BUNDLE_BIN).resolve().parent
    root = tmp_path / "root"
    shutil.copytree(bundle_dir, root / "opt" / "stronghold", symlinks=True)
    ldd = subprocess.run(
        ["ldd", str(bundle_dir / "stronghold-init"), *map(str, bundle_dir.rglob("*.so*"))],
        capture_output=True,
        text=True,
    )
    for line in ldd.stdout.splitlines():
        words = line.split()
        path = next((word for word in words if word.startswith("/") and not word.startswith(str(bundle_dir))), None)
        if path and Path(path).exists():
            target = root / path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
    # What every container has and a glibc base image ships: /proc (the bundle finds itself through
    # /proc/self/exe) and glibc's C.UTF-8 locale (Debian's libc-bin; distroless/base has it too).
    (root / "proc").mkdir()
    shutil.copytree("/usr/lib/locale/C.utf8", root / "usr" / "lib" / "locale" / "C.utf8")
    assert not [p for p in root.rglob("python*") if p.is_file()], "the test root must hold no interpreter"
    env = base_env(proxy, DB_FILE="stronghold://postgres/app")
    env["PATH"] = "/opt/stronghold"
    (root / "tokens").mkdir(mode=0o700)
    chroot = shutil.which("chroot") or "/usr/sbin/chroot"
    unshare = [shutil.which("unshare") or "/usr/bin/unshare", "--mount", "--pid", "--fork", f"--mount-proc={root}/proc"]
    argv = [*unshare, chroot, str(root), "/opt/stronghold/stronghold-init", "fetch", "--dir", "/tokens", "--allow-disk"]
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert (root / "tokens" / "DB").read_text() in proxy.issued_values
    assert (root / "tokens" / ".ready").exists()
    assert not any(value in done.stdout + done.stderr for value in proxy.secrets_seen())
