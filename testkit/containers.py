"""Real containers for tests: podman on a scratch storage, base images made offline.

The harness installs nothing. It needs podman, buildah, skopeo and runc (and,
for the Debian bases, mmdebstrap and root); `.ci/run` installs them on a CI
machine, `ContainerEnv.missing()` names what is absent so the fixture can skip
with one clear reason.

API (for tests; the session fixture `container_env` in tests/conftest.py hands
out one `ContainerEnv`, torn down at session end):

    env.podman(*args, check=True, timeout=300, input=None) -> CompletedProcess[str]
        podman with this session's storage and configuration. The CONTAINERS_*
        variables are set for the subprocess only: os.environ is never touched.
    env.popen(*args, **kwargs) -> Popen[str]    podman in the background (e.g. an attached `run`)
    env.base(name) -> str                       an image tag in this storage, made on first use:
        "busybox"        FROM scratch + busybox-static (no libc, no Python)
        "debian-node-py" Debian bookworm minbase + python3, python3-venv, nodejs, user node (1000)
        "debian-nopy"    Debian bookworm minbase + user node (1000), python3 absent (asserted)
    env.build(context, tag, dockerfile=None, build_args={}, secrets={}) -> str   podman build
        (--network=none --force-rm --layers; `secrets` maps an id to a file path: real --secret)
    env.run(image, *command, options=[...], timeout=...) -> CompletedProcess[str]   podman run --rm
    env.save(image, path, fmt="docker-archive") -> Path
    env.rm(*containers)                         podman rm -f, ignoring absent ones
    env.exit_code(container) -> int             the exit code podman recorded
    env.wait(container, timeout) -> int         podman wait, bounded
    env.scratch                                 a per-session directory for files to mount
    env.environment                             the subprocess environment (for other tools)

Base images are cached OUTSIDE the repository, under
/var/cache/stronghold-init-tests/ (STRONGHOLD_TEST_CACHE overrides it), as root
filesystem tars named after their recipe's hash. One fcntl.flock per base
makes concurrent test runs build each base once; the others wait and reuse it.
Each session `podman import`s the tars into its own storage (a few seconds).

Teardown: `podman rm -af`, `podman system reset -f` (which unmounts the
overlays), then the scratch directory goes. Builds run with --network=none and
containers with --network=host or none, so no bridge or iptables chain is made.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import os
import re
import resource
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

CACHE_DIR = Path(os.environ.get("STRONGHOLD_TEST_CACHE", "/var/cache/stronghold-init-tests"))
TOOLS = ("podman", "buildah", "skopeo", "runc")
DEBIAN_TOOLS = ("mmdebstrap",)
SUITE = "bookworm"
# Reproducible tars (same bytes run to run for the same package versions).
SOURCE_DATE_EPOCH = "1700000000"
# The Node images' user, so USER node works on the local bases as on node:20-bookworm-slim.
ADD_NODE_USER = 'chroot "$1" useradd --uid 1000 --user-group --create-home --shell /bin/sh node'

# name -> (packages to include, extra mmdebstrap hooks); the recipe's hash names the cache file.
DEBIAN_RECIPES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "debian-node-py": (("python3", "python3-venv", "nodejs", "npm"), (f"--customize-hook={ADD_NODE_USER}",)),
    "debian-nopy": (
        (),
        (
            f"--customize-hook={ADD_NODE_USER}",
            '--customize-hook=! chroot "$1" sh -c "command -v python3 || ls /usr/bin/python3*"',
        ),
    ),
    # Node without Python, like node:20-bookworm-slim: Debian's nodejs package depends on python3
    # (for node-gyp), which node itself never runs, so the Python packages are purged again.
    "debian-node-nopy": (
        ("nodejs",),
        (
            f"--customize-hook={ADD_NODE_USER}",
            '--customize-hook=chroot "$1" sh -c "dpkg-query -W -f=\'\\${Package}\\n\''
            " | grep -E '^(lib)?python3' | xargs -r dpkg --purge --force-depends\"",
            '--customize-hook=! chroot "$1" sh -c "command -v python3 || ls /usr/bin/python3*"',
            '--customize-hook=chroot "$1" node -e 0',
        ),
    ),
}
INSTALL_HINT = (
    "apt-get install -y --no-install-recommends podman buildah skopeo runc mmdebstrap busybox-static docker-registry"
)


def missing(debian: bool = False) -> list[str]:
    """What this machine lacks for container tests (empty when they can run)."""
    absent = [tool for tool in TOOLS if not shutil.which(tool)]
    if debian:
        absent += [tool for tool in DEBIAN_TOOLS if not shutil.which(tool)]
    return absent


def debian_mirror() -> str:
    """The Debian mirror of this machine's apt sources (deb822 or one-line), never a hard-coded host."""
    candidates: list[Path] = [Path("/etc/apt/sources.list")]
    sources_d = Path("/etc/apt/sources.list.d")
    if sources_d.is_dir():
        candidates += sorted(sources_d.iterdir())
    for path in candidates:
        if not path.is_file() or not path.name.endswith((".list", ".sources")):
            continue
        text = path.read_text(errors="replace")
        if path.name.endswith(".sources"):
            for stanza in re.split(r"\n\s*\n", text):
                fields = dict(re.findall(r"^([A-Za-z-]+):\s*(.+)$", stanza, re.M))
                if "deb" in fields.get("Types", "").split() and SUITE in fields.get("Suites", "").split():
                    return fields["URIs"].split()[0]
        for line in text.splitlines():
            words = line.split()
            if len(words) >= 3 and words[0] == "deb" and SUITE in words:
                uri = next(word for word in words[1:] if not word.startswith("["))
                return uri
    raise RuntimeError(f"no Debian {SUITE} mirror in /etc/apt/sources.list or /etc/apt/sources.list.d/")


def _recipe_hash(*parts: object) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:16]


def _cached(name: str, recipe: tuple[object, ...], make: Callable[[Path], None], suffix: str = ".tar") -> Path:
    """The cached file (or directory) for `recipe`, made by make(path) once per machine, under an exclusive lock."""
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    target = CACHE_DIR / f"{name}-{_recipe_hash(name, *recipe)}{suffix}"
    with open(CACHE_DIR / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another run building the same thing: wait for it, then reuse it
        if not target.exists():
            partial = CACHE_DIR / f".{target.name}.partial-{os.getpid()}"
            try:
                make(partial)
                os.replace(partial, target)
            finally:
                if partial.is_dir():
                    shutil.rmtree(partial, ignore_errors=True)
                else:
                    partial.unlink(missing_ok=True)
    return target


def _make_busybox_tar(out: Path) -> None:
    """A root filesystem with busybox-static and its applet links (what `busybox --install -s /bin` does)."""
    busybox = shutil.which("busybox")
    assert busybox, "busybox-static is not installed"
    applets = subprocess.run([busybox, "--list"], capture_output=True, text=True, check=True).stdout.split()
    with tarfile.open(out, "w") as tar:
        for directory in ("bin", "tmp", "etc", "run"):
            info = tarfile.TarInfo(directory)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o1777 if directory == "tmp" else 0o755, 0
            tar.addfile(info)
        with open(busybox, "rb") as binary:
            info = tarfile.TarInfo("bin/busybox")
            info.size, info.mode, info.mtime = os.fstat(binary.fileno()).st_size, 0o755, 0
            tar.addfile(info, binary)
        for applet in applets:
            if applet == "busybox":
                continue
            info = tarfile.TarInfo(f"bin/{applet}")
            info.type, info.linkname, info.mode, info.mtime = tarfile.SYMTYPE, "busybox", 0o777, 0
            tar.addfile(info)
        passwd = b"root:x:0:0:root:/root:/bin/sh\nnode:x:1000:1000:node:/tmp:/bin/sh\n"
        group = b"root:x:0:\nnode:x:1000:\n"
        for name, data in (("etc/passwd", passwd), ("etc/group", group)):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))


def _make_debian_tar(packages: Sequence[str], hooks: Sequence[str], mirror: str, out: Path) -> None:
    command = ["mmdebstrap", "--variant=minbase", "--mode=root", "--format=tar", *hooks]
    if packages:
        command.append("--include=" + ",".join(packages))
    command += [SUITE, str(out), mirror]
    env = {**os.environ, "SOURCE_DATE_EPOCH": SOURCE_DATE_EPOCH}
    # Its own session: a Ctrl-C of the test run must not kill mmdebstrap half-way (it would leave
    # /proc, /sys and /dev mounts in its chroot); the lock holder then finishes the tar.
    done = subprocess.run(command, env=env, capture_output=True, text=True, start_new_session=True)
    if done.returncode != 0:
        raise RuntimeError(f"mmdebstrap failed ({done.returncode}): {done.stderr[-2000:]}")


def base_tar(name: str) -> Path:
    """The cached root filesystem tar of base `name`, made now if this machine has none yet."""
    if name == "busybox":
        busybox = shutil.which("busybox")
        assert busybox, "busybox-static is not installed"
        digest = hashlib.sha256(Path(busybox).read_bytes()).hexdigest()
        return _cached(name, (digest, "busybox-recipe-1"), _make_busybox_tar)
    packages, hooks = DEBIAN_RECIPES[name]
    mirror = debian_mirror()
    return _cached(
        name,
        (packages, hooks, mirror, SUITE, SOURCE_DATE_EPOCH),
        lambda out: _make_debian_tar(packages, hooks, mirror, out),
    )


def wheelhouse(repo: Path, dest: Path) -> Path:
    """Every wheel examples/Dockerfile installs, made on the host so the image builds with no network.

    stronghold-init's wheel is built from `repo`'s source (a copy: the build must not write into the
    worktree); its dependencies are the versions installed in this test environment, downloaded
    once per machine from the configured package index and cached next to the base images.
    """
    import importlib.metadata
    import sys

    dest.mkdir(parents=True, exist_ok=True)
    source = dest.parent / "wheel-source"
    shutil.rmtree(source, ignore_errors=True)
    source.mkdir()
    shutil.copy2(repo / "pyproject.toml", source)
    shutil.copy2(repo / "README.md", source)
    shutil.copytree(repo / "injector", source / "injector", ignore=shutil.ignore_patterns("__pycache__"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--wheel-dir", str(dest), str(source)], check=True, timeout=600)
    shutil.rmtree(source)
    requirements = importlib.metadata.requires("stronghold-init") or []
    pins = []
    for requirement in requirements:
        if ";" in requirement:
            continue  # extras (the test dependencies) are not in the image
        name = re.split(r"[<>=!~ \[]", requirement, maxsplit=1)[0]
        pins.append(f"{name}=={importlib.metadata.version(name)}")

    def download(out: Path) -> None:
        out.mkdir()
        subprocess.run(
            # With their own dependencies (the audit's pull in PyYAML, urllib3, ...): the image has no network.
            [*pip, "download", "--only-binary=:all:", "--dest", str(out), *pins],
            check=True,
            timeout=600,
        )

    deps = _cached("wheels", ("with-dependencies", *sorted(pins)), download, suffix="")
    for wheel in deps.iterdir():
        shutil.copy2(wheel, dest)
    return dest


@dataclass
class Layer:
    created_by: str  # the history line that made it
    size: int  # bytes of its uncompressed tar in the archive
    tar: bytes


def archive_layers(archive: Path) -> tuple[dict, list[Layer]]:
    """The image config and its layers, in order, from a `podman save --format docker-archive` file.

    manifest.json names the config and layer files (never assume file names); the config's
    history lines without `empty_layer` belong to the layers in the same order.
    """
    import gzip
    import json

    with tarfile.open(archive) as outer:
        manifest = json.load(outer.extractfile("manifest.json"))[0]  # type: ignore[arg-type]
        config = json.load(outer.extractfile(manifest["Config"]))  # type: ignore[arg-type]
        history = [entry.get("created_by", "") for entry in config.get("history", []) if not entry.get("empty_layer")]
        layers = []
        for index, name in enumerate(manifest["Layers"]):
            data = outer.extractfile(name).read()  # type: ignore[union-attr]
            if data[:2] == b"\x1f\x8b":
                data = gzip.decompress(data)
            created_by = history[index] if index < len(history) else ""
            layers.append(Layer(created_by, len(data), data))
    return config, layers


def layer_members(layer: Layer) -> list[tuple[str, bytes]]:
    """(path, content) of every member of a layer (content empty for directories and links)."""
    found = []
    with tarfile.open(fileobj=io.BytesIO(layer.tar)) as tar:
        for member in tar:
            data = tar.extractfile(member).read() if member.isfile() else b""  # type: ignore[union-attr]
            found.append((member.name, data))
    return found


@dataclass
class ExampleImage:
    """examples/Dockerfile built for real (see build_example_image)."""

    tag: str
    npm_token: str  # handed to the build through --secret, and only there
    base: str
    build_seconds: float


def build_context(env: ContainerEnv, repo: Path) -> Path:
    """A build context shaped like the repository root (what the example Dockerfiles expect) plus
    wheelhouse/ (every wheel, so builds need no network). Made once per session."""
    context = env.scratch / "build-context"
    if (context / "wheelhouse").is_dir():
        return context
    shutil.rmtree(context, ignore_errors=True)
    context.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(repo / name, context)
    shutil.copytree(repo / "injector", context / "injector", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(repo / "examples", context / "examples")
    wheelhouse(repo, context / "wheelhouse")
    return context


def build_example_image(env: ContainerEnv, repo: Path) -> ExampleImage:
    """Build examples/Dockerfile offline with a real npm --secret: runtime on Node without Python, the bundle in."""
    import secrets
    import time

    context = build_context(env, repo)
    npm_token = "npm_" + secrets.token_hex(18)
    token_file = env.scratch / "npm-token"
    token_file.write_text(npm_token)
    token_file.chmod(0o600)
    base = env.base("debian-node-nopy")  # the runtime image has no Python: stronghold-init is the bundle
    started = time.monotonic()
    tag = env.build(
        context,
        "localhost/shop-api:test",
        dockerfile=context / "examples" / "Dockerfile",
        build_args={
            "BASE": base,
            "DEPS_BASE": env.base("debian-node-py"),  # npm (and so python3, for node-gyp) only where deps install
            "STRONGHOLD_IMAGE": bundle_image(env, repo),
        },
        secrets={"npm_token": token_file},
    )
    return ExampleImage(tag, npm_token, base, time.monotonic() - started)


def bundle_directory(repo: Path) -> Path:
    """The Python-free bundle to test: STRONGHOLD_INIT_BIN's directory, else scripts/build-bundle's output.

    The build is cached on the machine keyed on a hash of its inputs, so it compiles only
    when the code changed (.ci/run builds it before the tests; a first build takes minutes).
    """
    import sys

    if os.environ.get("STRONGHOLD_INIT_BIN"):
        return Path(os.environ["STRONGHOLD_INIT_BIN"]).resolve().parent
    out = CACHE_DIR / "bundle-dist"
    with open(CACHE_DIR / "bundle.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        command = [sys.executable, str(repo / "scripts" / "build-bundle"), "--out", str(out), "--cache"]
        done = subprocess.run([*command, str(CACHE_DIR / "bundle")], capture_output=True, text=True, timeout=3600)
        if done.returncode != 0:
            raise RuntimeError(f"scripts/build-bundle failed: {done.stderr[-2000:]}")
    return out / "stronghold-init"


def bundle_image(env: ContainerEnv, repo: Path) -> str:
    """examples/stronghold-init.Dockerfile built for real: FROM scratch, the bundle at /opt/stronghold."""
    tag = "localhost/stronghold-init-bundle:test"
    if env.podman("image", "exists", tag, check=False).returncode == 0:
        return tag
    context = env.scratch / "bundle-context"
    shutil.rmtree(context, ignore_errors=True)
    (context / "examples").mkdir(parents=True)
    shutil.copy2(repo / "examples" / "stronghold-init.Dockerfile", context / "examples")
    shutil.copytree(bundle_directory(repo), context / "dist" / "stronghold-init", symlinks=True)
    return env.build(context, tag, dockerfile=context / "examples" / "stronghold-init.Dockerfile")


def build_sidecar_image(env: ContainerEnv, repo: Path) -> str:
    """Build examples/sidecar.Dockerfile offline: the bundle copied from its image onto Debian without Python."""
    context = build_context(env, repo)
    return env.build(
        context,
        "localhost/stronghold-init:test",
        dockerfile=context / "examples" / "sidecar.Dockerfile",
        build_args={"BASE": env.base("debian-nopy"), "STRONGHOLD_IMAGE": bundle_image(env, repo)},
    )


class ContainerEnv:
    """One podman storage and configuration in a scratch directory (see the module docstring)."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root or tempfile.mkdtemp(prefix="stronghold-podman-"))
        self.scratch = self.root / "scratch"
        for sub in ("graph", "run", "tmp", "libpod", "net", "scratch"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self.scratch.chmod(0o755)
        self.root.chmod(0o755)
        self._write_configuration()
        self.environment = {
            **os.environ,
            "CONTAINERS_STORAGE_CONF": str(self.root / "storage.conf"),
            "CONTAINERS_CONF": str(self.root / "containers.conf"),
            "CONTAINERS_REGISTRIES_CONF": str(self.root / "registries.conf"),
            "TMPDIR": str(self.root / "tmp"),
        }
        self._bases: dict[str, str] = {}

    def _write_configuration(self) -> None:
        root = self.root
        (root / "storage.conf").write_text(
            f'[storage]\ndriver = "overlay"\ngraphroot = "{root}/graph"\nrunroot = "{root}/run"\n'
        )
        # Podman's default ulimits (nofile 1048576) are refused on these machines: stay under the hard limit.
        hard = min(resource.getrlimit(resource.RLIMIT_NOFILE)[1], 4096)
        (root / "containers.conf").write_text(
            "[containers]\n"
            f'default_ulimits = ["nofile={hard}:{hard}", "nproc=4096:4096"]\n'
            'netns = "none"\n'
            "[engine]\n"
            'runtime = "runc"\n'  # crun fails here: "cgroups in hybrid mode not supported"
            'cgroup_manager = "cgroupfs"\n'
            'events_logger = "file"\n'
            f'events_logfile_path = "{root}/libpod/events.log"\n'
            f'tmp_dir = "{root}/libpod"\n'
            "[network]\n"
            f'network_config_dir = "{root}/net"\n'
        )
        (root / "registries.conf").write_text('unqualified-search-registries = []\nshort-name-mode = "disabled"\n')

    # --- podman --------------------------------------------------------------

    def podman(
        self, *args: str, check: bool = True, timeout: float = 300, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            ["podman", *args],
            env=self.environment,
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"podman {' '.join(args[:3])} ... exited {done.returncode}: {done.stderr[-3000:]}")
        return done

    def popen(self, *args: str, **kwargs: object) -> subprocess.Popen[str]:
        options: dict[str, object] = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
        options.update(kwargs)
        return subprocess.Popen(["podman", *args], env=self.environment, **options)  # type: ignore[call-overload]

    def base(self, name: str) -> str:
        """The tag of base image `name` in this storage (imported from the machine's cache on first use)."""
        if name not in self._bases:
            absent = missing(debian=name != "busybox")
            if absent:
                import pytest

                pytest.skip(f"container tools missing: {', '.join(absent)}; install them with: {INSTALL_HINT}")
            tag = f"localhost/stronghold-test-{name}:latest"
            tar = base_tar(name)
            self.podman("import", "--change", "CMD /bin/sh", str(tar), tag, timeout=600)
            self._bases[name] = tag
        return self._bases[name]

    def build(
        self,
        context: Path,
        tag: str,
        *,
        dockerfile: Path | None = None,
        build_args: Mapping[str, str] | None = None,
        secrets: Mapping[str, Path] | None = None,
        extra: Sequence[str] = (),
        timeout: float = 900,
    ) -> str:
        args = ["build", "--network=none", "--force-rm", "--layers", "--tag", tag]
        if dockerfile is not None:
            args += ["--file", str(dockerfile)]
        for name, value in (build_args or {}).items():
            args += ["--build-arg", f"{name}={value}"]
        for name, path in (secrets or {}).items():
            args += ["--secret", f"id={name},src={path}"]
        self.podman(*args, *extra, str(context), timeout=timeout)
        return tag

    def run(
        self, image: str, *command: str, options: Sequence[str] = (), timeout: float = 120, check: bool = False
    ) -> subprocess.CompletedProcess[str]:
        return self.podman("run", "--rm", *options, image, *command, timeout=timeout, check=check)

    def save(self, image: str, path: Path, fmt: str = "docker-archive") -> Path:
        self.podman("save", "--format", fmt, "--output", str(path), image, timeout=600)
        return path

    def rm(self, *containers: str) -> None:
        if containers:
            self.podman("rm", "--force", "--ignore", "--time", "0", *containers, check=False, timeout=120)

    def exit_code(self, container: str) -> int:
        return int(self.podman("inspect", "--format", "{{.State.ExitCode}}", container).stdout.strip())

    def wait(self, container: str, timeout: float = 120) -> int:
        return int(self.podman("wait", container, timeout=timeout).stdout.strip().splitlines()[-1])

    def teardown(self) -> None:
        """Remove every container, image and overlay mount of this storage, then the directory."""
        try:
            self.podman("pod", "rm", "--all", "--force", check=False, timeout=120)
            self.podman("rm", "--all", "--force", "--time", "0", check=False, timeout=120)
            self.podman("system", "reset", "--force", check=False, timeout=300)
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
