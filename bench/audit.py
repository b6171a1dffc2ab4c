"""`stronghold-init audit`: throughput and peak RSS on a ~500 MB image, and recall beside detect-secrets.

Throughput: the same OCI layout is read by `tar -xOf <layer> > /dev/null` for
every layer (just reading the layers) and audited; runs alternate, medians.
Peak RSS comes from wait4() on the audit process itself, by a small parent of its own (_TRAMPOLINE).

Recall and false positives: the test images of testkit/audit_images.py (every way
in, and a clean one) are audited, and detect-secrets (all plugins, its
defaults) scans each image's final extracted filesystem, which is what a naive
scan of the running container sees.  A finding counts as found when its
secret is one we planted; anything else is a false positive.
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


def _before_argv(before: Path, layout: Path) -> tuple[list[str], dict[str, str]]:
    """An older checkout's `injector/` (e.g. `git archive <commit> injector | tar -x -C DIR`), same venv."""
    # -P: not the current directory first on sys.path (it may be this checkout); PYTHONPATH picks the old one
    argv = [sys.executable, "-P", "-c", "import sys; from injector.cli import main; sys.exit(main())"]
    return [*argv, "audit", "--format", "json", f"oci:{layout}"], {**os.environ, "PYTHONPATH": str(before)}


def measure_throughput(quick: bool, before: Path | None = None) -> dict[str, object]:
    size = 8 * 1024 * 1024 if quick else 500 * 1024 * 1024
    with tempfile.TemporaryDirectory(prefix="bench-audit-") as tmp:
        # Built in a child process: building the image takes hundreds of MB (see _TRAMPOLINE).
        layout = Path(tmp) / "big"
        subprocess.run([sys.executable, __file__, "--build", tmp, str(size)], check=True)
        layers = _layer_paths(layout)
        total = sum(p.stat().st_size for p in layers)
        reads, audits, rss, befores = [], [], [], []
        for _ in range(1 if quick else 3):
            start = time.perf_counter()
            for path in layers:
                subprocess.run(["tar", "-xOf", str(path)], stdout=subprocess.DEVNULL, check=True)
            reads.append(time.perf_counter() - start)
            seconds, peak = _timed([stronghold(), "audit", "--format", "json", f"oci:{layout}"])
            audits.append(seconds)
            rss.append(peak)
            if before is not None:
                befores.append(_timed(*_before_argv(before, layout)))
    if befores:
        before_figures = {
            "before_s": statistics.median(s for s, _ in befores),
            "before_rss_mib": max(r for _, r in befores),
        }
    else:
        before_figures = {}
    return {
        **before_figures,
        "bytes": total,
        "layers": len(layers),
        "tar_s": statistics.median(reads),
        "audit_s": statistics.median(audits),
        "audit_min": min(audits),
        "audit_max": max(audits),
        "peak_rss_mib": max(rss),
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


def measure_recall() -> list[dict[str, object]]:
    from testkit import audit_images as cases

    planted_by_image = {
        "every way in (testkit/audit_images.py DIRTY)": (
            cases.DIRTY,
            {cases.STRIPE, cases.GITHUB, cases.NPM, cases.PRIVATE_KEY, cases.DB_PASSWORD},
        ),
        "clean: references, placeholders, checksums (CLEAN)": (cases.CLEAN, set()),
    }
    rows = []
    for name, (image, planted) in planted_by_image.items():
        with tempfile.TemporaryDirectory(prefix="bench-recall-") as tmp:
            forms = audit_builder.all_forms(image, Path(tmp) / "img")
            done = subprocess.run(
                [stronghold(), "audit", "--format", "json", forms["oci"]], capture_output=True, text=True
            )
            found = {f["fingerprint"] for t in json.loads(done.stdout)["targets"] for f in t["findings"]}
            planted_fp = {"sha256:" + hashlib.sha256(v.encode()).hexdigest() for v in planted}
            root = Path(tmp) / "rootfs"
            root.mkdir()
            _final_filesystem(image, root)
            scan = subprocess.run(
                [str(Path(sys.executable).parent / "detect-secrets"), "scan", "--all-files", "."],
                capture_output=True, text=True, cwd=root,
            )  # fmt: skip
            results = json.loads(scan.stdout)["results"] if scan.returncode == 0 else {}
            ds_hashes = {r["hashed_secret"] for items in results.values() for r in items}
            planted_sha1 = {hashlib.sha1(v.encode()).hexdigest() for v in planted}
            private_key_found = any(r["type"] == "Private Key" for items in results.values() for r in items)
            ds_found = len(planted_sha1 & ds_hashes) + (1 if private_key_found and cases.PRIVATE_KEY in planted else 0)
            ds_false = len(ds_hashes - planted_sha1) - (1 if private_key_found else 0)
            rows.append(
                {
                    "image": name,
                    "planted": len(planted),
                    "audit_found": len(found & planted_fp),
                    "audit_false": len(found - planted_fp),
                    "ds_found": ds_found,
                    "ds_false": max(ds_false, 0),
                }
            )
    return rows


def report(quick: bool, before: Path | None = None, before_name: str = "") -> list[str]:
    lines = ["## Image audit: throughput, memory, recall", ""]
    t = measure_throughput(quick, before)
    ratio = t["tar_s"] / t["audit_s"]  # type: ignore[operator]
    lines.append(
        f"A {t['bytes'] / 1e6:.0f} MB uncompressed OCI layout in {t['layers']} layers "
        "(the Debian+Node+Python test base when cached, topped up with source-like text and random binaries)."
    )
    lines.append("")
    lines.append("| reader | median s | MB/s | peak RSS MiB |")
    lines.append("| --- | --- | --- | --- |")
    lines.append(f"| `tar -xOf` every layer > /dev/null | {t['tar_s']:.2f} | {t['bytes'] / 1e6 / t['tar_s']:.0f} | — |")
    lines.append(
        f"| `stronghold-init audit --format json` | {t['audit_s']:.2f} "
        f"(min {t['audit_min']:.2f}, max {t['audit_max']:.2f}) "
        f"| {t['bytes'] / 1e6 / t['audit_s']:.0f} | {t['peak_rss_mib']:.1f} |"
    )
    if "before_s" in t:
        lines.append(
            f"| the same audit before the throughput work ({before_name}) | {t['before_s']:.2f} "
            f"| {t['bytes'] / 1e6 / t['before_s']:.0f} | {t['before_rss_mib']:.1f} |"
        )
    lines.append("")
    if "before_s" in t:
        lines.append(
            f"Before: **{t['tar_s'] / t['before_s']:.2f}x** of `tar`; now {t['before_s'] / t['audit_s']:.1f} times "
            "faster (the runs alternate, medians of 3)."
        )
        lines.append("")
    lines.append(
        f"Audit speed as a fraction of just reading the layers (`tar -xOf`, same run): **{ratio:.2f}x**."
        f" Peak RSS **{t['peak_rss_mib']:.1f} MiB**."
    )
    lines.append("")
    lines.append("Recall beside detect-secrets over the image's final extracted filesystem:")
    lines.append("")
    lines.append(
        "| image | planted | audit found | audit false positives "
        "| detect-secrets found | detect-secrets false positives |"
    )
    lines.append("| --- | --- | --- | --- | --- | --- |")
    for row in measure_recall():
        lines.append(
            f"| {row['image']} | {row['planted']} | {row['audit_found']} | {row['audit_false']} | "
            f"{row['ds_found']} | {row['ds_false']} |"
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
