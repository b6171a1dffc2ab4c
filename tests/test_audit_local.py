"""`audit NAME`, `containers-storage:NAME`, `docker-daemon:NAME`: images in the local engine's store.

Real podman (testkit/containers.py's storage): the test image is loaded into it, and the audit
reads it from `podman save` as it streams, with no copy of the image written anywhere.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_audit import DIRTY, DIRTY_FINDINGS, assert_no_value, audit, findings_of

from testkit.audit_builder import all_forms, tree_snapshot

pytestmark = pytest.mark.container


@pytest.fixture(scope="module")
def loaded(container_env, tmp_path_factory: pytest.TempPathFactory) -> str:
    archive = all_forms(DIRTY, tmp_path_factory.mktemp("local"))["docker-archive"].split(":", 1)[1]
    container_env.podman("load", "-i", archive)
    container_env.podman("tag", "localhost/test:latest", "localhost/shop-api:latest")
    return "localhost/shop-api:latest"


def _env(container_env, home: Path) -> dict[str, str]:
    return {**container_env.environment, "HOME": str(home)}


@pytest.mark.parametrize("form", ["{}", "containers-storage:{}"])
def test_a_local_image_by_name_is_streamed_from_podman_save(
    container_env, loaded: str, tmp_path: Path, form: str
) -> None:
    before = tree_snapshot(tmp_path)
    scratch = Path(container_env.environment["TMPDIR"])
    scratch_before = tree_snapshot(scratch)
    result = audit("--format", "json", form.format(loaded), env=_env(container_env, tmp_path), cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert findings_of(result) == DIRTY_FINDINGS
    report = json.loads(result.stdout)["targets"][0]
    assert report["target"] == form.format(loaded) and report["image"].startswith("sha256:")
    assert_no_value(result)
    assert tree_snapshot(tmp_path) == before  # no temporary copy of the image, here or in TMPDIR
    assert tree_snapshot(scratch) == scratch_before


def test_a_local_image_through_the_cache(container_env, loaded: str, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    env = _env(container_env, tmp_path)
    first = audit("--format", "json", "--cache", str(cache), loaded, env=env)
    second = audit("--format", "json", "--cache", str(cache), loaded, env=env)
    assert first.returncode == second.returncode == 1, second.stderr
    assert findings_of(first) == findings_of(second) == DIRTY_FINDINGS
    assert len(list(cache.iterdir())) == 3


def test_an_image_no_engine_has_says_what_was_tried(container_env, tmp_path: Path) -> None:
    env = _env(container_env, tmp_path)
    result = audit("localhost/no-such-image:1", env=env)
    assert result.returncode == 66 and result.stdout == "", result.stderr
    [line] = result.stderr.strip().splitlines()
    assert "no such file or directory" in line and "podman has no image localhost/no-such-image:1" in line
    assert "docker" in line and "podman save" not in line  # what was tried, not a chore to do first
    explicit = audit("containers-storage:localhost/no-such-image:1", env=env)
    assert explicit.returncode == 66 and "podman has no image" in explicit.stderr
    daemon = audit("docker-daemon:localhost/shop-api:latest", env=env)  # no docker daemon runs here
    assert daemon.returncode == 66 and len(daemon.stderr.strip().splitlines()) == 1, daemon.stderr
    bad = audit("containers-storage:Not An Image", env=env)
    assert bad.returncode == 64
