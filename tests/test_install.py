"""`stronghold-init install DIR` (the webhook's init container) and `install --ready DIR` (the sidecar's probe).

The pip-installed command refuses to install (it needs its Python); the copy
itself is tested on a bundle-shaped directory in-process, and for real from
the bundle in tests/test_webhook_kube_play.py (the app runs the copy).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from conftest import BUNDLE_BIN, run
from injector.errors import ConfigError
from injector.modes.install import install


def test_install_from_the_pip_installed_command_is_78_and_one_line(tmp_path: Path) -> None:
    if BUNDLE_BIN:
        pytest.skip("the bundle installs itself (tests/test_webhook_kube_play.py)")
    result = run(["install", str(tmp_path / "bin")], dict(os.environ))
    assert result.code == 78 and result.stderr.count("\n") == 1 and "bundle" in result.stderr
    assert not (tmp_path / "bin").exists() or not any((tmp_path / "bin").iterdir())


def test_ready_probe_answers_by_the_file(tmp_path: Path) -> None:
    assert run(["install", "--ready", str(tmp_path)], dict(os.environ)).code == 1
    (tmp_path / ".ready").touch()
    assert run(["install", "--ready", str(tmp_path)], dict(os.environ)).code == 0


def _bundle(root: Path) -> Path:
    source = root / "bundle"
    (source / "lib").mkdir(parents=True)
    (source / "stronghold-init").write_bytes(b"\x7fELF pretend")
    (source / "stronghold-init").chmod(0o755)
    (source / "lib" / "libx.so.1").write_bytes(b"library")
    (source / "lib" / "libx.so").symlink_to("libx.so.1")
    return source


def test_the_copy_keeps_modes_and_links_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    source = _bundle(tmp_path)
    target = tmp_path / "stronghold" / "bin"
    assert install(str(target), source=str(source)) == 0
    assert (target / "stronghold-init").read_bytes() == b"\x7fELF pretend"
    assert stat.S_IMODE((target / "stronghold-init").stat().st_mode) == 0o755
    assert os.readlink(target / "lib" / "libx.so") == "libx.so.1"
    assert (target / "lib" / "libx.so.1").read_bytes() == b"library"
    assert sorted(p.name for p in target.rglob(".*")) == []
    assert install(str(target), source=str(source)) == 0  # again (a restarted init container): replaced in place


def test_a_symlinked_target_is_refused(tmp_path: Path) -> None:
    source = _bundle(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "link").symlink_to(elsewhere)
    with pytest.raises(ConfigError):
        install(str(tmp_path / "link"), source=str(source))
    assert list(elsewhere.iterdir()) == []


@pytest.mark.parametrize(
    "case", ["temporary is a symlink", "lib is a symlink", "a directory for a file", "a file for lib"]
)
def test_whatever_is_in_the_way_in_dir_is_one_clear_error_and_nothing_outside_is_touched(
    tmp_path: Path, case: str
) -> None:
    """DIR is a shared volume: what another container left there is refused as configuration (78),
    naming the entry, never followed (it was an OSError, reported as an internal error, 70)."""
    source = _bundle(tmp_path)
    target, victim = tmp_path / "target", tmp_path / "victim"
    target.mkdir()
    victim.mkdir()
    if case == "temporary is a symlink":
        (target / ".stronghold-init.tmp").symlink_to(victim / "owned")
    elif case == "lib is a symlink":
        (target / "lib").symlink_to(victim)
    elif case == "a directory for a file":
        (target / "stronghold-init").mkdir()
    else:
        (target / "lib").write_text("in the way")
    with pytest.raises(ConfigError) as raised:
        install(str(target), source=str(source))
    assert str(target) in raised.value.message and raised.value.message.count("\n") == 0
    assert list(victim.iterdir()) == []
