"""The audit's test images: one with every way a secret gets in, one clean.

Shared by tests/test_audit*.py (which assert the exact findings) and
bench/audit.py (recall and false positives beside detect-secrets).  The
values are built from pieces so that no scanner flags this file itself.
"""

from __future__ import annotations

import json

from testkit.audit_builder import TestImage

STRIPE = "sk_live_" + "a1B2c3D4e5F6g7H8i9J0k1L2"
NPM = "npm_" + "Zx8Qw2Lk9Vb4Np7Rt6Yh3Jm5Gd1Sa0Cf4Ke7"
DB_PASSWORD = "pg-" + "Tq7vL9xW2nR4kZ8s"
GITHUB = "ghp_" + "R4nd0mT0k3nV4lu3F0rT3st1ngXyZ123456a"
PRIVATE_KEY = (
    "-----BEGIN OPENSSH PRIVATE KEY-----\n"
    + "\n".join(["b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW"] * 5)
    + "\n-----END OPENSSH PRIVATE KEY-----"
)
ALL_SECRETS = [STRIPE, NPM, DB_PASSWORD, GITHUB, PRIVATE_KEY]

DIRTY = TestImage(
    layers=[
        {
            "app": None,
            "app/.npmrc": f"registry=https://registry.npmjs.org/\n//registry.npmjs.org/:_authToken={NPM}\n",
            "app/main.py": "print('hello')\n",
        },
        {"root": None, "root/.ssh": None, "root/.ssh/id_ed25519": PRIVATE_KEY + "\n"},
        {"app/.wh..npmrc": b"", "app/.env": f"DB_PASSWORD={DB_PASSWORD}\nLOG_LEVEL=info\n"},
    ],
    env=["PATH=/usr/bin:/bin", f"STRIPE_SECRET_KEY={STRIPE}", "NPM_TOKEN=stronghold://npm/publish"],
    labels={"maintainer": "team@example.com"},
    history=[
        {"created_by": "/bin/sh -c #(nop) COPY file:abc in /app/.npmrc"},
        {"created_by": f"|1 GITHUB_TOKEN={GITHUB} /bin/sh -c git clone https://x/y.git"},
        {"created_by": f"ENV STRIPE_SECRET_KEY={STRIPE}", "empty_layer": True},
        {"created_by": "/bin/sh -c rm /app/.npmrc"},
    ],
)

CLEAN = TestImage(
    layers=[
        {
            "app": None,
            "app/package-lock.json": json.dumps(
                {"integrity": "sha512-" + "A" * 86 + "==", "resolved": "https://registry.npmjs.org/x/-/x-1.0.0.tgz"}
            ),
            "app/SHA256SUMS": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855  app.tar\n",
            "app/ids.py": "REQUEST_ID = '550e8400-e29b-41d4-a716-446655440000'\n"
            "sha = 'da39a3ee5e6b4b0d3255bfef95601890afd80709'\n",
            "app/.env.example": "DB_PASSWORD=changeme\nAPI_TOKEN=${API_TOKEN}\n"
            "STRIPE_KEY=xxxxxxxx\nNPM_TOKEN=<your-token>\n",
            "app/settings.py": "password = os.environ['DB_PASSWORD']\nsecret_file = '/run/secrets/db'\n",
            "etc/app.conf": "token_file=/run/stronghold/TOKEN\n",
        }
    ],
    env=[
        "PATH=/usr/bin:/bin",
        "STRIPE_SECRET_KEY=stronghold://stripe/live?ttl=15m",
        "DB_PASSWORD_FILE=stronghold://postgres/app",
        "VAULT_TOKEN=vault-token://?policies=app",
        "APP_SECRET=vault://secret/data/app#key",
        "GPG_KEY=A035C8C19219BA821ECEA86B64E628F8D684696D",
        "PYTHON_SHA256=e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "API_KEY=changeme",
    ],
    history=[{"created_by": "RUN --mount=type=secret,id=npm,target=/root/.npmrc npm ci # buildkit"}],
)


# Files named for the one value they hold (issue 23's recall), beside names, checksums, ids and
# lock files that are not credentials.  tests/test_audit_recall.py asserts the exact findings.
AWS = "wJalrXUtnFEMI" + "K7MDENGbPxRfiCYz4Xk2Lq9s"
API = "tk_9f8a7b6c" + "5d4e3f2a1b0c9d8e7f6a5b4c"
MASTER = "3f9a8b7c6d5e" + "4f3a2b1c0d9e8f7a"
KEY_BODY = ["b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW",
            "QyNTUxOQAAACDx7q9Zr2kLmN3pQ8sT1vW4yX6zA0bC5dE7fG9hJ2kL4mN"]  # fmt: skip
UUID_VALUE = "550e8400-e29b-41d4-a716-446655440000"
SHA_VALUE = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

NAMED = TestImage(
    layers=[
        {
            "run": None,
            "run/aws_secret": AWS + "\n",
            "app": None,
            "app/api-token": API + "\n",
            "app/config": None,
            "app/config/master.key": MASTER,
            "root": None,
            "root/.ssh": None,
            "root/.ssh/id_rsa.bak": "\n".join(KEY_BODY) + "\n",
            # not credentials: about a secret, checksums, ids, lock files, placeholders, references, prose
            "app/token.sha256": SHA_VALUE + "\n",
            "app/secret-uuid": UUID_VALUE + "\n",
            "app/session_key_id": AWS + "\n",
            "root/.ssh/id_rsa.pub": "AAAAB3NzaC1yc2EAAAADAQABAAABAQC7" + "x9Q2" * 8 + "\n",
            "app/secret.lock": AWS + "\n",
            "app/api_token": "changeme\n",
            "app/db_password": "${DB_PASSWORD}\n",
            "app/token": "stronghold://api/token\n",
            "app/secret_name": "production-database-main\n",
            "app/yarn.lock": f"# yarn lockfile v1\nleft-pad@1.3.0:\n  integrity sha512-{'Q' * 86}==\n",
        }
    ]
)
NAMED_SECRETS = [AWS, API, MASTER, "".join(KEY_BODY)]
