"""`audit --all docker://HOST[/PREFIX]` (SPEC 10.1) against Debian's real docker-registry on loopback.

The registry lists its catalog two repositories a page (`catalog: maxentries: 2`) and holds the
project's test images under many repositories and tags: one image under three tags in two
repositories, an old dirty tag beside a newer one sharing its base layer, a multi-platform index,
a repository whose image config is broken and one whose layer blob is corrupted on disk.  The
registry's own access log counts every blob it served: each layer at most once per run, none
on a second run with --cache.
"""

from __future__ import annotations

import http.server
import json
import os
import stat
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_audit import CLEAN, DIRTY, DIRTY_FINDINGS, GITHUB, NPM, audit, fp

from testkit.audit_builder import TestImage, all_forms, oci_index_files, sha, write_dir
from testkit.audit_images import ALL_SECRETS
from testkit.registry import Registry, available

pytestmark = pytest.mark.skipif(not available(), reason="needs docker-registry and skopeo")

SHOP_V2 = TestImage(layers=[DIRTY.layers[0], {"app/main.py": "print('v2')\n"}])  # the same base as DIRTY
ARM = TestImage(layers=[{"srv": None, "srv/deploy.env": f"GITHUB_TOKEN={GITHUB}\n"}])
LAYER_BROKEN = TestImage(layers=[{"opt": None, "opt/broken.txt": "a layer whose blob the registry corrupts\n"}])
SHOP_V2_FINDINGS = {("file", 0, "/app/.npmrc", "_authToken", fp(NPM))}
ARM_FINDINGS = {("file", 0, "/srv/deploy.env", "GITHUB_TOKEN", fp(GITHUB))}
PLANTED = [*ALL_SECRETS]


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    root = tmp_path_factory.mktemp("walk")
    registry = Registry(root, "walk", maxentries=2)
    dirty = all_forms(DIRTY, root / "dirty")["docker-archive"]
    for dest in ("app/dirty:1", "app/dirty:2", "app/shop:v1"):
        registry.push(dirty, dest)
    registry.push(all_forms(SHOP_V2, root / "shop2")["docker-archive"], "app/shop:v2")
    clean = all_forms(CLEAN, root / "clean")["docker-archive"]
    registry.push(clean, "app/clean:latest")
    registry.push(clean, "other/skip:1")
    index = write_dir(root / "multi", oci_index_files({"linux/amd64": CLEAN, "linux/arm64": ARM}))
    registry.push(f"oci:{index}:latest", "multi/app:1", "--all")
    # A manifest whose config is not JSON: pushed by hand (skopeo would refuse to read it).
    config = registry.upload_blob("broken/config", b"this is not an image config")
    layer = registry.upload_blob("broken/config", DIRTY.layer_blobs()[0][1])
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": 27},
        "layers": [
            {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer,
             "size": len(DIRTY.layer_blobs()[0][1])}
        ],
    }  # fmt: skip
    registry.put_manifest("broken/config", "1", json.dumps(manifest).encode(), manifest["mediaType"])
    # A layer blob flipped on disk after the push: the registry serves bytes that fail their digest.
    registry.push(all_forms(LAYER_BROKEN, root / "lb")["docker-archive"], "broken/layer:1")
    [broken_layer] = _manifest_layers(registry, "broken/layer", "1")
    data = bytearray(registry.blob_path(broken_layer).read_bytes())
    data[len(data) // 2] ^= 1
    registry.blob_path(broken_layer).write_bytes(bytes(data))
    layers: set[str] = set()
    for repo, tag in (("app/dirty", "1"), ("app/shop", "v2"), ("app/clean", "latest"), ("broken/layer", "1")):
        layers |= set(_manifest_layers(registry, repo, tag))
    for platform in _index(registry, "multi/app", "1"):
        layers |= set(_manifest_layers(registry, "multi/app", platform))
    yield {"registry": registry, "layers": layers, "broken_layer": broken_layer, "root": root}
    registry.stop()


def _get_json(registry: Registry, path: str, accept: str = "") -> dict:
    request = urllib.request.Request(f"http://{registry.address}{path}", headers={"Accept": accept} if accept else {})
    with urllib.request.urlopen(request, timeout=60) as answer:
        return json.loads(answer.read())


ACCEPT = "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json"


def _manifest_layers(registry: Registry, repo: str, reference: str) -> list[str]:
    manifest = _get_json(registry, f"/v2/{repo}/manifests/{reference}", ACCEPT)
    return [layer["digest"] for layer in manifest["layers"]]


def _index(registry: Registry, repo: str, tag: str) -> list[str]:
    index = _get_json(registry, f"/v2/{repo}/manifests/{tag}", "application/vnd.oci.image.index.v1+json")
    return [entry["digest"] for entry in index["manifests"]]


def _by_target(stdout: str) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for entry in json.loads(stdout)["targets"]:
        out.setdefault(entry["target"], []).append(entry)
    return out


def _findings(entry: dict) -> set[tuple]:
    return {(f["where"], f["layer"], f["path"], f["key"], f["fingerprint"]) for f in entry["findings"]}


def _env(tmp_path: Path) -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if k != "REGISTRY_AUTH_FILE"}, "HOME": str(tmp_path)}


def _assert_no_value(*texts: str) -> None:
    for text in texts:
        for value in PLANTED:
            assert value not in text and json.dumps(value)[1:-1] not in text and value[4:20] not in text


def _check_walk(stdout: str, host: str) -> None:
    """Every tag reported, each under its own target, with the findings its image holds."""
    targets = _by_target(stdout)
    base = f"docker://{host}/"
    dirty = [targets[base + name] for name in ("app/dirty:1", "app/dirty:2", "app/shop:v1")]
    for [entry] in dirty:
        assert _findings(entry) == DIRTY_FINDINGS and entry["clean"] is False
        assert entry["digest"] == dirty[0][0]["digest"] and entry["digest"].startswith("sha256:")
    [v2] = targets[base + "app/shop:v2"]
    assert _findings(v2) == SHOP_V2_FINDINGS and v2["digest"] != dirty[0][0]["digest"]
    [clean] = targets[base + "app/clean:latest"]
    assert clean["clean"] is True and clean["findings"] == []
    multi = {entry["platform"]: entry for entry in targets[base + "multi/app:1"]}
    assert set(multi) == {"linux/amd64", "linux/arm64"}
    assert multi["linux/amd64"]["clean"] is True and _findings(multi["linux/arm64"]) == ARM_FINDINGS
    [config] = targets[base + "broken/config:1"]
    assert config["clean"] is False and "config" in config["error"]
    [layer] = targets[base + "broken/layer:1"]
    assert layer["clean"] is False and layer["error"].startswith("layer 0 (sha256:")  # CRC or digest: never read


def test_whole_registry_each_layer_once_then_nothing_with_the_cache(registry: dict, tmp_path: Path) -> None:
    server: Registry = registry["registry"]  # type: ignore[assignment]
    layers: set[str] = registry["layers"]  # type: ignore[assignment]
    cache = tmp_path / "cache"
    start = len(server.served())
    first = audit("--all", "--format", "json", "--cache", str(cache), f"docker://{server.address}", env=_env(tmp_path))
    assert first.returncode == 65, first.stderr  # a broken image outranks findings (1)
    _check_walk(first.stdout, server.address)
    assert f"docker://{server.address}/other/skip:1" in _by_target(first.stdout)
    served = server.served()[start:]
    assert sum(path.startswith("/v2/_catalog") for _, path, _ in served) >= 4  # 7 repositories, 2 a page
    gets = server.blob_gets(start)
    assert {digest: gets.get(digest, 0) for digest in layers} == dict.fromkeys(layers, 1)  # each once, none missed
    assert "images under 9 tags in 7 repositories" in first.stderr and "\r" not in first.stderr
    _assert_no_value(first.stdout, first.stderr)

    # The cache: 0700 directory, 0600 files, identifiers only.
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700
    files = sorted(cache.iterdir())
    assert len(files) == len(layers) - 1  # every layer but the one that failed its digest
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
        _assert_no_value(path.read_bytes().decode("latin-1"))

    start = len(server.served())
    second = audit("--all", "--format", "json", "--cache", str(cache), f"docker://{server.address}", env=_env(tmp_path))
    assert second.returncode == 65, second.stderr
    assert _by_target(second.stdout) == _by_target(first.stdout)
    gets = server.blob_gets(start)
    assert {d: n for d, n in gets.items() if d in layers} == {registry["broken_layer"]: 1}  # only the uncacheable
    assert f"({len(layers) - 1} from the cache)" in second.stderr

    # A cache written by other rules is ignored, not trusted: every layer is read again.
    for path in files:
        entry = json.loads(path.read_text())
        entry["rules"], entry["findings"] = "0" * 32, []
        path.write_text(json.dumps(entry))
    start = len(server.served())
    third = audit("--all", "--format", "json", "--cache", str(cache), f"docker://{server.address}", env=_env(tmp_path))
    assert _by_target(third.stdout) == _by_target(first.stdout)
    gets = server.blob_gets(start)
    assert {digest: gets.get(digest, 0) for digest in layers} == dict.fromkeys(layers, 1)


def test_prefix_one_job_and_text_report(registry: dict, tmp_path: Path) -> None:
    server: Registry = registry["registry"]  # type: ignore[assignment]
    result = audit("--all", "--jobs", "1", f"docker://{server.address}/app/", env=_env(tmp_path))
    assert result.returncode == 1, result.stderr  # only app/*: findings, nothing broken
    lines = result.stdout.splitlines()
    titles = [line for line in lines if line.startswith("docker://")]
    assert len(titles) == 5 and all(f"docker://{server.address}/app/" in t for t in titles), titles
    assert any(t.endswith("app/clean:latest: image " + t.split(" image ")[-1]) for t in titles)
    _assert_no_value(result.stdout, result.stderr)


def test_a_cache_that_others_could_write_is_refused(registry: dict, tmp_path: Path) -> None:
    server: Registry = registry["registry"]  # type: ignore[assignment]
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)
    result = audit("--all", "--cache", str(shared), f"docker://{server.address}/app/", env=_env(tmp_path))
    assert result.returncode == 64 and "writable by no one else" in result.stderr, result.stderr
    (tmp_path / "link").symlink_to(tmp_path / "elsewhere")
    result = audit("--all", "--cache", str(tmp_path / "link"), f"docker://{server.address}/app/", env=_env(tmp_path))
    assert result.returncode == 64 and "symlink" in result.stderr, result.stderr


class PagingFront(http.server.ThreadingHTTPServer):
    """In front of the registry: tag lists one tag a page with `Link` headers (docker-registry 2.8
    returns them whole); `escape` makes the next link point off the registry."""

    def __init__(self, backend: str) -> None:
        self.backend = backend
        self.escape = False
        super().__init__(("127.0.0.1", 0), _PagingHandler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server_address[1]}"


class _PagingHandler(http.server.BaseHTTPRequestHandler):
    server: PagingFront

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        from urllib.parse import parse_qs, quote, urlsplit

        parts = urlsplit(self.path)
        headers = {}
        if parts.path.endswith("/tags/list"):
            with urllib.request.urlopen(f"http://{self.server.backend}{parts.path}", timeout=60) as answer:
                listing = json.loads(answer.read())
            tags = sorted(listing["tags"] or [])
            last = parse_qs(parts.query).get("last", [""])[0]
            rest = [t for t in tags if t > last]
            listing["tags"] = rest[:1]
            if len(rest) > 1:
                host = "elsewhere.example:1" if self.server.escape else ""
                target = (
                    f"//{host}{parts.path}?n=1&last={quote(rest[0])}"
                    if host
                    else f"{parts.path}?n=1&last={quote(rest[0])}"
                )
                headers["Link"] = f'<{target}>; rel="next"'
            body = json.dumps(listing).encode()
        else:
            request = urllib.request.Request(
                f"http://{self.server.backend}{self.path}", headers={"Accept": self.headers.get("Accept", "")}
            )
            try:
                with urllib.request.urlopen(request, timeout=300) as answer:
                    body = answer.read()
                    headers["Content-Type"] = answer.headers.get("Content-Type", "")
                    if answer.headers.get("Link"):
                        headers["Link"] = answer.headers["Link"]
            except urllib.error.HTTPError as error:
                body = error.read()
                self.send_response(error.code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
        self.send_response(200)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def test_paginated_tag_lists_and_a_link_off_the_registry(registry: dict, tmp_path: Path) -> None:
    server: Registry = registry["registry"]  # type: ignore[assignment]
    front = PagingFront(server.address)
    try:
        result = audit("--all", "--format", "json", f"docker://{front.address}", env=_env(tmp_path))
        assert result.returncode == 65, result.stderr
        _check_walk(result.stdout, front.address)
        front.escape = True
        escaped = audit("--all", "--format", "json", f"docker://{front.address}/app/", env=_env(tmp_path))
        targets = _by_target(escaped.stdout)
        [dirty] = targets[f"docker://{front.address}/app/dirty"]  # its tag list could not be followed
        assert "leaves the registry" in dirty["error"]
        [clean] = targets[f"docker://{front.address}/app/clean:latest"]  # one page: no link to follow
        assert clean["clean"] is True
        assert escaped.returncode == 65
    finally:
        front.shutdown()
        front.server_close()


def test_usage_errors_before_any_request(tmp_path: Path) -> None:
    for args in (["--all", "docker://127.0.0.1:1/Bad Prefix"], ["--all", "/some/path"], ["--jobs", "0", "x.tar"]):
        result = audit(*args, env=_env(tmp_path))
        assert result.returncode == 64 and len(result.stderr.strip().splitlines()) == 1, (args, result.stderr)


def test_the_builder_helpers_make_what_the_walk_reads() -> None:
    """oci_index_files writes an index of both platforms (the multi-platform fixture depends on it)."""
    files = oci_index_files({"linux/amd64": CLEAN, "linux/arm64": ARM})
    top = json.loads(files["index.json"])["manifests"][0]
    index = json.loads(files["blobs/sha256/" + top["digest"].removeprefix("sha256:")])
    assert sha(files["blobs/sha256/" + top["digest"].removeprefix("sha256:")]) == top["digest"]
    assert [m["platform"]["architecture"] for m in index["manifests"]] == ["amd64", "arm64"]


def test_a_cache_file_others_could_have_written_is_not_trusted(tmp_path: Path) -> None:
    """Single targets use the cache too; an entry emptied of its findings counts only if it is ours and 0600."""
    target = all_forms(DIRTY, tmp_path / "img")["docker-archive"]
    cache = tmp_path / "cache"
    first = audit("--format", "json", "--cache", str(cache), target, env=_env(tmp_path))
    assert first.returncode == 1 and len(list(cache.iterdir())) == 3
    for path in cache.iterdir():  # as a stranger would forge them: the right names, no findings
        entry = json.loads(path.read_text())
        entry["findings"] = []
        path.write_text(json.dumps(entry))
        path.chmod(0o644)
    forged = audit("--format", "json", "--cache", str(cache), target, env=_env(tmp_path))
    assert _findings(json.loads(forged.stdout)["targets"][0]) == DIRTY_FINDINGS  # ignored: read again
    for path in cache.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600  # rewritten by this run, atomically
        _assert_no_value(path.read_text())


def test_progress_on_a_terminal_and_a_summary_line(registry: dict, tmp_path: Path) -> None:
    from test_audit import run_on_a_terminal

    from conftest import STRONGHOLD

    server: Registry = registry["registry"]  # type: ignore[assignment]
    code, stdout, shown = run_on_a_terminal(
        [STRONGHOLD, "audit", "--all", "--format", "json", f"docker://{server.address}/app/"], env=_env(tmp_path)
    )
    assert code == 1
    assert b"\r\x1b[2Kaudit: " in shown and b" images" in shown and b"MB read" in shown
    assert b"3 images under 5 tags in 3 repositories" in shown  # the summary, once at the end
    assert json.loads(stdout)["targets"]  # stdout stays a clean report
    _assert_no_value(shown.decode("utf-8", "replace"))
