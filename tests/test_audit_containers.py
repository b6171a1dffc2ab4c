"""The audit on images built for real with podman (per-step layers), one per way a secret gets in.

Each image is saved as docker-archive and OCI archive with `podman save`, and
as an OCI layout with `skopeo copy`; the findings must be exactly the same,
where, layer, path, key and fingerprint, in every form.  The clean images
(a BuildKit-style secret mount, references in ENV, an app with checksums and
UUIDs) must audit clean.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from test_audit import GITHUB, NPM, PRIVATE_KEY, STRIPE, assert_no_value, audit, findings_of, fp

pytestmark = pytest.mark.container

DB_URL_PASSWORD = "Pg" + "Xq93kLmv2Rz7Tw"
AWS_SECRET = "wJalrXUtnFEMI" + "K7MDENGbPxRfiCYz4Xk2Lq9s"
ENV_PASSWORD = "Ev" + "9hZq2Lw7Kx4Pm"
SECRETS = [STRIPE, NPM, PRIVATE_KEY, GITHUB, DB_URL_PASSWORD, AWS_SECRET, ENV_PASSWORD]

# name -> (Dockerfile body after FROM, context files, build args, {secret id: content}, expected findings)
CASES: dict[str, tuple[str, dict[str, str], dict[str, str], dict[str, str], set[tuple]]] = {
    "env": (
        f"ENV STRIPE_SECRET_KEY={STRIPE}\nRUN echo built > /built\n",
        {}, {}, {},
        {("env", None, None, "STRIPE_SECRET_KEY", fp(STRIPE)), ("history", None, None, "STRIPE_SECRET_KEY", fp(STRIPE))},  # noqa: E501
    ),
    "build-arg": (
        "ARG DATABASE_URL\nRUN echo migrating > /migrated\n",
        {}, {"DATABASE_URL": f"postgres://app:{DB_URL_PASSWORD}@db:5432/app"}, {},
        {("history", 1, None, "DATABASE_URL", fp(DB_URL_PASSWORD))},
    ),
    "deleted-later": (
        "COPY credentials /root/.aws/credentials\nRUN rm /root/.aws/credentials\n",
        {"credentials": f"[default]\naws_access_key_id = AKIA{'Q' * 16}\naws_secret_access_key = {AWS_SECRET}\n"}, {}, {},  # noqa: E501
        {("deleted-file", 1, "/root/.aws/credentials", "aws_secret_access_key", fp(AWS_SECRET)),
         ("deleted-file", 1, "/root/.aws/credentials", "aws_access_key_id", fp("AKIA" + "Q" * 16))},
    ),
    "npmrc": (
        "COPY .npmrc /app/.npmrc\n",
        {".npmrc": f"//registry.npmjs.org/:_authToken={NPM}\n"}, {}, {},
        {("file", 1, "/app/.npmrc", "_authToken", fp(NPM))},
    ),
    "private-key": (
        "COPY id_ed25519 /root/.ssh/id_ed25519\n",
        {"id_ed25519": PRIVATE_KEY + "\n"}, {}, {},
        {("file", 1, "/root/.ssh/id_ed25519", None, fp(PRIVATE_KEY))},
    ),
    "dotenv": (
        "COPY .env /app/.env\n",
        {".env": f"LOG_LEVEL=debug\nDB_PASSWORD={ENV_PASSWORD}\nAPI_TOKEN=stronghold://api/token\n"}, {}, {},
        {("file", 1, "/app/.env", "DB_PASSWORD", fp(ENV_PASSWORD))},
    ),
    "inline-run": (
        f'RUN wget --header "Authorization: Bearer {GITHUB}" -O /dev/null http://127.0.0.1:9/ || true\n',
        {}, {}, {},
        {("history", 1, None, "Authorization", fp(GITHUB))},
    ),
    "clean-secret-mount": (
        "RUN --mount=type=secret,id=npm,target=/root/.npmrc wc -c /root/.npmrc > /npm-size\n",
        {}, {}, {"npm": f"//registry.npmjs.org/:_authToken={NPM}\n"},
        set(),
    ),
    "clean-references": (
        "ENV STRIPE_SECRET_KEY=stronghold://stripe/live?ttl=15m DB_PASSWORD_FILE=stronghold://postgres/app\n"
        "ENV VAULT_ADDR=https://vault.internal:8200 APP_TOKEN=vault://secret/data/app#token\n"
        "ENTRYPOINT [\"stronghold-init\", \"--\"]\nCMD [\"/bin/sh\"]\n",
        {}, {}, {},
        set(),
    ),
    "clean-checksums": (
        "COPY app /app\n",
        {
            "app/SHA256SUMS": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855  app.tar.gz\n",
            "app/package-lock.json": json.dumps({"packages": {"node_modules/x": {"integrity": "sha512-" + "Qm9v" * 21 + "==",  # noqa: E501
                                                                             "resolved": "https://registry.npmjs.org/x/-/x-1.0.0.tgz"}}}),
            "app/ids.py": "SESSION_NAMESPACE = '6ba7b810-9dad-11d1-80b4-00c04fd430c8'\n"
            "EXPECTED_SHA1 = 'da39a3ee5e6b4b0d3255bfef95601890afd80709'\npassword = os.environ['DB_PASSWORD']\n",
            "app/.env.example": "DB_PASSWORD=changeme\nSTRIPE_SECRET_KEY=${STRIPE_SECRET_KEY}\nNPM_TOKEN=xxxxxxxx\n",
        },
        {}, {},
        set(),
    ),
}  # fmt: skip


@pytest.fixture(scope="module")
def built(container_env, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, str]]:
    """name -> {form: target}, every image saved in the three forms."""
    base = container_env.base("busybox")
    out: dict[str, dict[str, str]] = {}
    for name, (body, files, args, secrets, _) in CASES.items():
        root = tmp_path_factory.mktemp(f"img-{name}")
        context = root / "context"
        context.mkdir()
        for relative, content in files.items():
            (context / relative).parent.mkdir(parents=True, exist_ok=True)
            (context / relative).write_text(content)
        secret_paths = {}
        for secret_id, content in secrets.items():
            secret_paths[secret_id] = root / f"secret-{secret_id}"
            secret_paths[secret_id].write_text(content)
        (context / "Containerfile").write_text(f"FROM {base}\n{body}")
        tag = f"localhost/audit-{name}:1"
        container_env.build(context, tag, dockerfile=context / "Containerfile", build_args=args, secrets=secret_paths)
        docker = container_env.save(tag, root / "docker.tar")
        oci = container_env.save(tag, root / "oci.tar", fmt="oci-archive")
        subprocess.run(
            ["skopeo", "copy", "--quiet", f"containers-storage:{tag}", f"oci:{root / 'layout'}:1"],
            env=container_env.environment, check=True, capture_output=True, timeout=900,
        )  # fmt: skip
        out[name] = {
            "docker-archive": f"docker-archive:{docker}",
            "oci-archive": f"oci-archive:{oci}",
            "oci": f"oci:{root / 'layout'}:1",
        }
    return out


@pytest.mark.parametrize("name", list(CASES))
def test_real_image_findings_are_exact_in_every_form(built: dict[str, dict[str, str]], name: str) -> None:
    expected = CASES[name][4]
    for form, target in built[name].items():
        result = audit("--format", "json", target)
        assert result.returncode == (1 if expected else 0), (form, result.stderr, result.stdout[:2000])
        assert findings_of(result) == expected, (form, findings_of(result))
        assert_no_value(result, *SECRETS)


def test_text_and_sarif_of_a_real_image_hold_no_value(built: dict[str, dict[str, str]]) -> None:
    targets = [built[name]["oci-archive"] for name in ("env", "build-arg", "npmrc", "inline-run")]
    for fmt in ("text", "sarif"):
        result = audit("--format", fmt, *targets)
        assert result.returncode == 1
        assert_no_value(result, *SECRETS)


def test_real_busybox_base_is_clean(container_env, tmp_path: Path) -> None:
    archive = container_env.save(container_env.base("busybox"), tmp_path / "busybox.tar")
    result = audit(f"docker-archive:{archive}")
    assert result.returncode == 0, result.stdout
