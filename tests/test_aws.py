"""AWS references (SPEC 12) against a real moto server that checks SigV4 signatures and IAM policies.

The binary runs as a subprocess against moto on a loopback port the OS
picked (testkit/moto.py).  moto is seeded while its calls are free, then
`enforce_auth()` makes it authenticate and authorise every call, so a wrong
signature or a refused action is refused as AWS would.  moto's request
recorder counts the calls made (batching, one AssumeRole per session).
Every secret value is planted with a marker the logs are searched for.
"""

from __future__ import annotations

import json
import signal
import uuid
from pathlib import Path

import pytest

from conftest import PYTHON, base_env, report_command, run, start, wait_for
from testkit.moto import Moto

ACCOUNT = "123456789012"  # moto's default account
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/app-role"
PLANT = "PLANTED" + uuid.uuid4().hex[:8]  # in every secret value: must never be in a log line
WAITING_CHILD = (
    "import signal, sys; print('ready', flush=True); "
    "signal.signal(signal.SIGTERM, lambda *_: sys.exit(0)); signal.pause()"
)


def policy(*statements: dict) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def allow(actions: list[str], resource: str = "*") -> dict:
    return {"Effect": "Allow", "Action": actions, "Resource": resource}


class World:
    """The seeded moto server and the identities in it."""

    def __init__(self, moto: Moto, app_keys: tuple[str, str], admin_keys: tuple[str, str], eu_arn: str) -> None:
        self.moto = moto
        self.app_keys = app_keys
        self.admin_keys = admin_keys
        self.eu_arn = eu_arn
        self.ssm_only_keys = ("", "")

    def admin(self, service: str, region: str = "us-east-1"):  # a boto3 client with every permission
        return self.moto.client(service, region, keys=self.admin_keys)

    def env(self, **extra: str) -> dict[str, str]:
        env = base_env(
            None,
            AWS_ACCESS_KEY_ID=self.app_keys[0],
            AWS_SECRET_ACCESS_KEY=self.app_keys[1],
            AWS_REGION="us-east-1",
            AWS_ENDPOINT_URL=self.moto.url,
            AWS_EC2_METADATA_DISABLED="true",
            HOME="/nonexistent",
            STRONGHOLD_LOG_LEVEL="debug",
        )
        env.update(extra)
        return env


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    moto = Moto(tmp_path_factory.mktemp("moto"))
    try:
        iam = moto.client("iam")
        keys = {}
        for user in ("admin", "app", "ssm-only"):
            iam.create_user(UserName=user)
            key = iam.create_access_key(UserName=user)["AccessKey"]
            keys[user] = (key["AccessKeyId"], key["SecretAccessKey"])
        iam.put_user_policy(UserName="admin", PolicyName="all", PolicyDocument=policy(allow(["*"])))
        iam.put_user_policy(
            UserName="app",
            PolicyName="read",
            PolicyDocument=policy(
                allow(["secretsmanager:GetSecretValue", "secretsmanager:BatchGetSecretValue"]),
                allow(["ssm:GetParameter", "ssm:GetParameters"]),
                allow(["sts:AssumeRole"], ROLE_ARN),
            ),
        )
        # moto authorises Secrets Manager calls against Resource "*" only: refusal is shown by a user
        # whose policy has no Secrets Manager action at all.
        iam.put_user_policy(UserName="ssm-only", PolicyName="ssm", PolicyDocument=policy(allow(["ssm:GetParameter"])))
        trust = policy(
            {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:user/app"}, "Action": "sts:AssumeRole"}
        )
        iam.create_role(RoleName="app-role", AssumeRolePolicyDocument=trust)
        iam.put_role_policy(
            RoleName="app-role",
            PolicyName="read-secrets",
            PolicyDocument=policy(allow(["secretsmanager:GetSecretValue", "sts:GetCallerIdentity"])),
        )
        iam.create_policy(PolicyName="secrets-read", PolicyDocument=policy(allow(["secretsmanager:GetSecretValue"])))
        sm = moto.client("secretsmanager")
        document = {"password": f"pw-{PLANT}", "port": 5432, "ssl": True, "opts": {"a": 1}, "none": None}
        sm.create_secret(Name="app/db", SecretString=json.dumps(document))
        sm.create_secret(Name="app/token", SecretString=f"old-token-{PLANT}")
        sm.put_secret_value(SecretId="app/token", SecretString=f"token-{PLANT}")  # the first is now AWSPREVIOUS
        sm.create_secret(Name="app/third", SecretString=f"third-{PLANT}")
        sm.create_secret(Name="app/plain", SecretString=f"plain text {PLANT}")
        sm.create_secret(Name="app/binary", SecretBinary=b"\xff\xfe" + PLANT.encode())
        eu_arn = moto.client("secretsmanager", "eu-west-1").create_secret(Name="app/eu", SecretString=f"eu-{PLANT}")[
            "ARN"
        ]
        ssm = moto.client("ssm")
        ssm.put_parameter(Name="/prod/db/password", Value=f"ssm-v1-{PLANT}", Type="SecureString")
        ssm.put_parameter(Name="/prod/db/password", Value=f"ssm-v2-{PLANT}", Type="SecureString", Overwrite=True)
        ssm.put_parameter(Name="plain", Value=f"plain-{PLANT}", Type="String")
        moto.enforce_auth()
        world = World(moto, keys["app"], keys["admin"], eu_arn)
        world.ssm_only_keys = keys["ssm-only"]
        yield world
    finally:
        moto.stop()


def assert_no_value(text: str) -> None:
    assert PLANT not in text, "a secret value reached the output"


def profile_file(tmp_path: Path, keys: tuple[str, str], *, mode: int = 0o600, crlf: bool = False) -> Path:
    path = tmp_path / "credentials"
    text = f"[app]\naws_access_key_id = {keys[0]}\naws_secret_access_key = {keys[1]}\n"
    path.write_text(text.replace("\n", "\r\n") if crlf else text)
    path.chmod(mode)
    return path


def test_every_kind_in_env_and_file_with_one_call_per_kind(world: World, shm_dir: Path, tmp_path: Path) -> None:
    # Our own identity from a profile, so AWS_ACCESS_KEY_ID & co. can be the child's STS references.
    credentials = profile_file(tmp_path, world.app_keys, crlf=True)
    sts = f"aws-sts://{ROLE_ARN}?ttl=15m&policy-arn=arn:aws:iam::{ACCOUNT}:policy/secrets-read"
    env = world.env(
        AWS_ACCESS_KEY_ID=f"{sts}#access-key-id",
        AWS_SECRET_ACCESS_KEY=f"{sts}#secret-access-key",
        AWS_SESSION_TOKEN=f"{sts}#session-token",
        SESSION_ENDS=f"{sts}#expiration",
        AWS_PROFILE="app",
        AWS_SHARED_CREDENTIALS_FILE=str(credentials),
        DB_PASSWORD="aws-sm://app/db#password",
        DB_PORT="aws-sm://app/db#port",
        DB_SSL="aws-sm://app/db#ssl",
        DB_OPTS="aws-sm://app/db#opts",
        TOKEN_FILE="aws-sm://app/token",
        THIRD="aws-sm://app/third",
        PREVIOUS="aws-sm://app/token?version-stage=AWSPREVIOUS",
        EU=f"aws-sm://{world.eu_arn}",  # the ARN's region wins over AWS_REGION
        PARAM_FILE="aws-ssm:///prod/db/password",
        PARAM_V1="aws-ssm:///prod/db/password?version=1",
        PLAIN="aws-ssm://plain",
    )
    world.moto.reset_calls()
    result = run(["--dir", str(shm_dir), "--", *report_command("TOKEN_FILE", "PARAM_FILE")], env)
    assert result.code == 0, result.stderr
    report = result.report()
    child = report["env"]
    assert child["DB_PASSWORD"] == f"pw-{PLANT}"
    assert (child["DB_PORT"], child["DB_SSL"], child["DB_OPTS"]) == ("5432", "true", '{"a":1}')
    assert report["files"]["TOKEN_FILE"]["data"] == f"token-{PLANT}"
    assert report["files"]["TOKEN_FILE"]["mode"] == "0o400"
    assert child["THIRD"] == f"third-{PLANT}"
    assert child["PREVIOUS"] == f"old-token-{PLANT}"
    assert child["EU"] == f"eu-{PLANT}"
    assert report["files"]["PARAM_FILE"]["data"] == f"ssm-v2-{PLANT}"
    assert child["PARAM_V1"] == f"ssm-v1-{PLANT}"
    assert child["PLAIN"] == f"plain-{PLANT}"
    assert child["AWS_ACCESS_KEY_ID"].startswith("ASIA")
    assert child["AWS_SESSION_TOKEN"] and child["SESSION_ENDS"]
    assert child["AWS_PROFILE"] == "app" and child["AWS_ENDPOINT_URL"] == world.moto.url  # these pass
    calls = world.moto.calls()
    # One batch for the three unversioned us-east-1 secrets; the versioned one and the other region's alone;
    # one GetParameters for both parameters; one AssumeRole for the four fields of the session.
    assert sorted(calls) == sorted(
        [
            "secretsmanager BatchGetSecretValue",
            "secretsmanager GetSecretValue",
            "secretsmanager GetSecretValue",
            "AmazonSSM GetParameters",
            "sts AssumeRole",
        ]
    ), calls
    assert_no_value(result.stderr)
    # The scoped identity the child got works against the server, as the role.
    caller = world.moto.client("sts", keys=(child["AWS_ACCESS_KEY_ID"], child["AWS_SECRET_ACCESS_KEY"]))
    caller._request_signer._credentials.token = child["AWS_SESSION_TOKEN"]  # (boto3 takes it as a kwarg too)
    sm = world.moto.client("secretsmanager", keys=(child["AWS_ACCESS_KEY_ID"], child["AWS_SECRET_ACCESS_KEY"]))
    sm._request_signer._credentials.token = child["AWS_SESSION_TOKEN"]
    assert "assumed-role/app-role" in caller.get_caller_identity()["Arn"]
    assert sm.get_secret_value(SecretId="app/third")["SecretString"] == f"third-{PLANT}"


def test_own_identity_never_reaches_the_child(world: World) -> None:
    env = world.env(
        THIRD="aws-sm://app/third",
        AWS_SESSION_TOKEN="",
        AWS_ROLE_ARN="arn:aws:iam::123456789012:role/not-for-the-child",
        AWS_CONTAINER_AUTHORIZATION_TOKEN="not-for-the-child",
        AWS_DEFAULT_REGION="us-east-1",
    )
    env.pop("AWS_SESSION_TOKEN")
    result = run(["--", *report_command()], env)
    assert result.code == 0, result.stderr
    child = result.report()["env"]
    leaked = sorted(name for name in child if name.startswith("AWS_"))
    assert leaked == ["AWS_DEFAULT_REGION", "AWS_EC2_METADATA_DISABLED", "AWS_ENDPOINT_URL", "AWS_REGION"]
    assert world.app_keys[1] not in result.stdout + result.stderr


def test_a_wrong_secret_key_is_refused_77(world: World) -> None:
    env = world.env(THIRD="aws-sm://app/third", AWS_SECRET_ACCESS_KEY="wrong" + world.app_keys[1][5:])
    result = run(["--", "true"], env)
    assert result.code == 77, result.stderr
    assert "THIRD" in result.stderr
    assert world.app_keys[1][5:] not in result.stderr


def test_a_refused_secret_is_77_naming_the_variable(world: World) -> None:
    keys = world.ssm_only_keys
    env = world.env(NOPE="aws-sm://app/third", AWS_ACCESS_KEY_ID=keys[0], AWS_SECRET_ACCESS_KEY=keys[1])
    result = run(["--", "true"], env)
    assert result.code == 77, result.stderr
    assert "NOPE" in result.stderr and "AccessDenied" in result.stderr
    assert_no_value(result.stderr)


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("aws-sm://app/missing", "ResourceNotFound"),
        ("aws-ssm:///prod/missing", "no SSM parameter"),
        ("aws-ssm:///prod/db/password?version=9", "no SSM parameter"),
        ("aws-sm://app/db#missing", "no key 'missing'"),
        ("aws-sm://app/plain#key", "not a JSON object"),
        ("aws-sm://app/binary", "binary"),
    ],
)
def test_unknown_secret_parameter_or_key_is_78_naming_the_variable(
    world: World, shm_dir: Path, value: str, fragment: str
) -> None:
    # Beside a good reference, in a batch: the bad one is named, and nothing is left in --dir.
    env = world.env(WANTED_FILE=value, GOOD_FILE="aws-sm://app/third", OTHER="aws-sm://app/token")
    result = run(["--dir", str(shm_dir), "--", "true"], env)
    assert result.code == 78, result.stderr
    assert "WANTED_FILE" in result.stderr and fragment in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr  # one line (debug level: no other noise?)
    assert not shm_dir.exists() or not any(shm_dir.iterdir())
    assert_no_value(result.stderr)


def test_no_region_is_78(world: World) -> None:
    env = world.env(THIRD="aws-sm://app/third")
    del env["AWS_REGION"]
    result = run(["--", "true"], env)
    assert result.code == 78, result.stderr
    assert "THIRD" in result.stderr and "region" in result.stderr


def test_bad_references_are_78_before_any_call(world: World) -> None:
    world.moto.reset_calls()
    for value in (
        "aws-sm://",
        "aws-sm://a?version=1",
        "aws-ssm://x?ttl=1m",
        "aws-sts://notarole#session-token",
        f"aws-sts://{ROLE_ARN}",
        f"aws-sts://{ROLE_ARN}?ttl=5m#session-token",
        "aws-sn://app/third",
    ):
        result = run(["--", "true"], world.env(BAD=value))
        assert result.code == 78, (value, result.stderr)
        assert "BAD" in result.stderr
    assert world.moto.calls() == []


def test_rotation_of_a_secret_reaches_the_file(world: World, shm_dir: Path, processes) -> None:
    name = f"app/rotating-{uuid.uuid4().hex[:6]}"
    world.admin("secretsmanager").create_secret(Name=name, SecretString=f"first-{PLANT}")
    env = world.env(KEY_FILE=f"aws-sm://{name}")
    process = start(["--dir", str(shm_dir), "--static-poll", "1s", "--", PYTHON, "-c", WAITING_CHILD], env)
    processes.append(process)
    path = shm_dir / "KEY"
    wait_for(lambda: path.exists() and path.read_text() == f"first-{PLANT}", 60, what="the first value")
    world.admin("secretsmanager").put_secret_value(SecretId=name, SecretString=f"second-{PLANT}")
    wait_for(lambda: path.exists() and path.read_text() == f"second-{PLANT}", 60, what="the rotated value")
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    assert_no_value(stderr)


def test_check_lists_aws_references_without_values(world: World) -> None:
    env = world.env(THIRD="aws-sm://app/third", PLAIN="aws-ssm://plain")
    result = run(["check"], env)
    assert result.code == 0, result.stderr
    assert "aws-sm://app/third" in result.stdout and "aws-ssm://plain" in result.stdout
    assert_no_value(result.stdout + result.stderr)


@pytest.mark.parametrize(
    ("problem", "fragment"),
    [("mode", "chmod 600"), ("profile", "AWS_PROFILE other")],
)
def test_bad_credentials_file_is_78_naming_it(world: World, tmp_path: Path, problem: str, fragment: str) -> None:
    credentials = profile_file(tmp_path, world.app_keys, mode=0o644 if problem == "mode" else 0o600)
    env = world.env(
        THIRD="aws-sm://app/third",
        AWS_SHARED_CREDENTIALS_FILE=str(credentials),
        AWS_PROFILE="other" if problem == "profile" else "app",
    )
    del env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]
    result = run(["--", "true"], env)
    assert result.code == 78, result.stderr
    assert fragment in result.stderr and str(credentials) in result.stderr
    assert world.app_keys[1] not in result.stderr


@pytest.fixture(scope="module")
def open_moto(tmp_path_factory) -> Moto:
    """A second moto, without authentication: it cannot check the unsigned AssumeRoleWithWebIdentity
    with auth on, and keys from our own metadata servers are not keys it knows."""
    moto = Moto(tmp_path_factory.mktemp("moto-open"), auth=False)
    moto.client("secretsmanager").create_secret(Name="open/one", SecretString=f"open-{PLANT}")
    moto.client("iam").create_role(RoleName="irsa", AssumeRolePolicyDocument=policy())
    yield moto
    moto.stop()


def test_web_identity_assumes_the_role_with_the_token(open_moto: Moto, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQifQ.c2ln")
    env = base_env(
        None,
        AWS_ROLE_ARN=f"arn:aws:iam::{ACCOUNT}:role/irsa",
        AWS_WEB_IDENTITY_TOKEN_FILE=str(token),
        AWS_REGION="us-east-1",
        AWS_ENDPOINT_URL=open_moto.url,
        AWS_EC2_METADATA_DISABLED="true",
        STRONGHOLD_LOG_LEVEL="debug",
        ONE="aws-sm://open/one",
    )
    open_moto.reset_calls()
    result = run(["--", *report_command()], env)
    assert result.code == 0, result.stderr
    child = result.report()["env"]
    assert child["ONE"] == f"open-{PLANT}"
    assert "AWS_ROLE_ARN" not in child and "AWS_WEB_IDENTITY_TOKEN_FILE" not in child
    assert open_moto.calls() == ["sts AssumeRoleWithWebIdentity", "secretsmanager GetSecretValue"]
    # The second call was signed with the keys the web identity got (moto's assumed-role keys start ASIA).
    entry = json.loads(open_moto.recording.read_text().splitlines()[-1])
    assert "Credential=ASIA" in {k.lower(): v for k, v in entry["headers"].items()}["authorization"]
    assert_no_value(result.stderr)


# -- our own loopback servers: IMDSv2, container credentials, and an AWS that answers badly ------------


class Scripted:
    """A loopback HTTP server in a thread; `handle(method, path, headers, body)` -> (status, body)."""

    def __init__(self, handle) -> None:
        import http.server
        import threading

        self.requests: list[tuple[str, str, dict[str, str]]] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k.lower(): v for k, v in self.headers.items()}
                outer.requests.append((self.command, self.path, headers))
                status, answer = handle(self.command, self.path, headers, body)
                self.send_response(status)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            do_GET = do_PUT = do_POST = _any  # noqa: N815 - http.server's names

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def expiration(seconds: int = 3600) -> str:
    import datetime

    return (datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def role_credentials(token_field: str = "Token") -> bytes:
    body = {
        "Code": "Success",
        "AccessKeyId": "ASIAIMDSEXAMPLE00001",
        "SecretAccessKey": "imds-secret-" + PLANT,
        token_field: "imds-session-" + PLANT,
        "Expiration": expiration(),
    }
    return json.dumps(body).encode()


def open_env(moto: Moto, **extra: str) -> dict[str, str]:
    env = base_env(
        None,
        AWS_REGION="us-east-1",
        AWS_ENDPOINT_URL=moto.url,
        HOME="/nonexistent",
        STRONGHOLD_LOG_LEVEL="debug",
        ONE="aws-sm://open/one",
    )
    env.update(extra)
    return env


def test_imds_v2_token_then_role_credentials(open_moto: Moto) -> None:
    # moto's own metadata mock is IMDSv1 only; this server refuses any GET without the session
    # token, as an instance with HttpTokens=required does, and is not ready for its first two PUTs.
    session = "imds-token-" + uuid.uuid4().hex
    puts = []

    def handle(method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
        if method == "PUT" and path == "/latest/api/token":
            puts.append(path)
            if len(puts) <= 2:
                return 503, b"not ready"  # a pod's first seconds
            if not headers.get("x-aws-ec2-metadata-token-ttl-seconds"):
                return 400, b""
            return 200, session.encode()
        if headers.get("x-aws-ec2-metadata-token") != session:
            return 401, b""
        if path == "/latest/meta-data/iam/security-credentials/":
            return 200, b"instance-role"
        if path == "/latest/meta-data/iam/security-credentials/instance-role":
            return 200, role_credentials()
        return 404, b""

    imds = Scripted(handle)
    try:
        open_moto.reset_calls()
        result = run(["--", *report_command()], open_env(open_moto, AWS_EC2_METADATA_SERVICE_ENDPOINT=imds.url))
        assert result.code == 0, result.stderr
        assert result.report()["env"]["ONE"] == f"open-{PLANT}"
        gets = [(m, p) for m, p, h in imds.requests if m == "GET"]
        assert gets and all(h.get("x-aws-ec2-metadata-token") == session for m, p, h in imds.requests if m == "GET")
        entry = json.loads(open_moto.recording.read_text().splitlines()[-1])
        headers = {k.lower(): v for k, v in entry["headers"].items()}
        assert "Credential=ASIAIMDSEXAMPLE00001/" in headers["authorization"]
        assert headers["x-amz-security-token"] == "imds-session-" + PLANT
        assert_no_value(result.stderr)
        assert session not in result.stderr
    finally:
        imds.stop()


@pytest.mark.parametrize("answer", [b"not json at all", b"{}", b"[1, 2]", b'{"Code": "Success", "Expiration": "x"}'])
def test_imds_garbage_is_69_after_the_startup_timeout(open_moto: Moto, answer: bytes) -> None:
    def handle(method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
        if method == "PUT":
            return 200, b"token"
        return (200, b"role") if path.endswith("/") else (200, answer)

    imds = Scripted(handle)
    try:
        env = open_env(open_moto, AWS_EC2_METADATA_SERVICE_ENDPOINT=imds.url)
        result = run(["--startup-timeout", "2", "--", "true"], env)
        assert result.code == 69, result.stderr
        assert "instance metadata" in result.stderr.splitlines()[-1]
    finally:
        imds.stop()


def test_container_credentials_with_the_authorization_token_file(open_moto: Moto, tmp_path: Path) -> None:
    token = "container-auth-" + uuid.uuid4().hex
    (tmp_path / "auth").write_text(token + "\n")

    def handle(method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
        if path != "/v1/credentials" or headers.get("authorization") != token:
            return 401, b""
        return 200, role_credentials()

    server = Scripted(handle)
    try:
        env = open_env(
            open_moto,
            AWS_CONTAINER_CREDENTIALS_FULL_URI=server.url + "/v1/credentials",
            AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE=str(tmp_path / "auth"),
        )
        result = run(["--", *report_command()], env)
        assert result.code == 0, result.stderr
        child = result.report()["env"]
        assert child["ONE"] == f"open-{PLANT}"
        assert not [name for name in child if name.startswith("AWS_CONTAINER")]
        assert token not in result.stderr
        # A wrong token is refused: 77.
        (tmp_path / "auth").write_text("wrong")
        refused = run(["--", "true"], env)
        assert refused.code == 77, refused.stderr
    finally:
        server.stop()


def test_container_credentials_over_plain_http_to_a_remote_host_is_78(open_moto: Moto) -> None:
    env = open_env(open_moto, AWS_CONTAINER_CREDENTIALS_FULL_URI="http://192.0.2.10/creds")
    result = run(["--", "true"], env)
    assert result.code == 78, result.stderr
    assert "AWS_CONTAINER_CREDENTIALS_FULL_URI" in result.stderr


def static_keys_env(url: str, **extra: str) -> dict[str, str]:
    return base_env(
        None,
        AWS_ACCESS_KEY_ID="AKIDSTATICEXAMPLE001",
        AWS_SECRET_ACCESS_KEY="static-secret-" + PLANT,
        AWS_REGION="us-east-1",
        AWS_ENDPOINT_URL=url,
        STRONGHOLD_LOG_LEVEL="debug",
        **extra,
    )


def secret_answer(value: object) -> bytes:
    return json.dumps({"Name": "x", "ARN": "arn", "SecretString": value}).encode()


@pytest.mark.parametrize(
    ("status", "body", "code", "fragment"),
    [
        (200, b"<html>not json</html>", 69, "not JSON"),
        (200, b"[]", 69, "not a JSON object"),
        (200, b"{}", 69, "neither SecretString"),
        (200, b"x" * (1024 * 1024 + 10), 69, "over 1 MiB"),
        (200, secret_answer(""), 78, "not a non-empty string"),
        (200, secret_answer("a\u0000b" + PLANT), 78, "NUL"),
        (400, b'{"__type": "ThrottlingException", "message": "Rate exceeded"}', 69, "ThrottlingException"),
        (500, b"oops", 69, "status 500"),
        (400, b'{"__type": "UnrecognizedClientException", "message": "bad key"}', 77, "UnrecognizedClient"),
        (400, b'{"__type": "ResourceNotFoundException"}', 78, "ResourceNotFound"),
        (302, b"", 69, "redirect"),
    ],
)
def test_bad_answers_from_secrets_manager(status: int, body: bytes, code: int, fragment: str, shm_dir: Path) -> None:
    server = Scripted(lambda *_: (status, body))
    try:
        env = static_keys_env(server.url, KEY_FILE="aws-sm://app/one")
        result = run(["--dir", str(shm_dir), "--startup-timeout", "1.5", "--", "true"], env)
        assert result.code == code, result.stderr
        last = result.stderr.strip().splitlines()[-1]
        assert "KEY_FILE" in last and fragment in last, last
        assert not shm_dir.exists() or not any(shm_dir.iterdir())
        assert_no_value(result.stderr)
    finally:
        server.stop()


def test_a_megabyte_secret_is_delivered_whole(shm_dir: Path) -> None:
    big = "b" * (900 * 1024) + PLANT  # under the 1 MiB answer limit with its JSON around it
    server = Scripted(lambda *_: (200, secret_answer(big)))
    try:
        result = run(
            ["--dir", str(shm_dir), "--", "sh", "-c", 'wc -c < "$KEY_FILE"'],
            static_keys_env(server.url, KEY_FILE="aws-sm://app/one"),
        )
        assert result.code == 0, result.stderr
        assert result.stdout.strip() == str(len(big))
        assert_no_value(result.stderr)
    finally:
        server.stop()


def test_throttling_is_retried_until_it_passes() -> None:
    answers = [(400, b'{"__type": "ThrottlingException"}'), (503, b""), (200, secret_answer("fine-" + PLANT))]

    server = Scripted(lambda *_: answers.pop(0) if len(answers) > 1 else answers[0])
    try:
        result = run(["--", *report_command()], static_keys_env(server.url, KEY="aws-sm://app/one"))
        assert result.code == 0, result.stderr
        assert result.report()["env"]["KEY"] == "fine-" + PLANT
        assert len(server.requests) == 3
    finally:
        server.stop()


def test_an_xml_error_from_sts_names_the_variable_and_its_code() -> None:
    body = (
        b'<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type>'
        b"<Code>AccessDenied</Code><Message>not authorized to perform: sts:AssumeRole</Message></Error>"
        b"</ErrorResponse>"
    )
    server = Scripted(lambda *_: (403, body))
    try:
        env = static_keys_env(server.url, TOKEN=f"aws-sts://{ROLE_ARN}#session-token")
        result = run(["--", "true"], env)
        assert result.code == 77, result.stderr
        assert "TOKEN" in result.stderr and "AccessDenied" in result.stderr
    finally:
        server.stop()


def test_a_server_without_the_batch_action_gets_single_calls() -> None:
    def handle(method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
        if headers.get("x-amz-target", "").endswith("BatchGetSecretValue"):
            return 400, b'{"__type": "UnknownOperationException"}'
        secret_id = json.loads(body)["SecretId"]
        return 200, secret_answer(f"{secret_id}-{PLANT}")

    server = Scripted(handle)
    try:
        env = static_keys_env(server.url, ONE="aws-sm://one", TWO="aws-sm://two", THREE="aws-sm://three")
        result = run(["--", *report_command()], env)
        assert result.code == 0, result.stderr
        child = result.report()["env"]
        assert (child["ONE"], child["TWO"], child["THREE"]) == (f"one-{PLANT}", f"two-{PLANT}", f"three-{PLANT}")
        targets = [h.get("x-amz-target") for _, _, h in server.requests]
        assert targets == ["secretsmanager.BatchGetSecretValue"] + ["secretsmanager.GetSecretValue"] * 3
    finally:
        server.stop()


def sts_answer(serial: int) -> bytes:
    return (
        '<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><AssumeRoleResult><Credentials>'
        f"<AccessKeyId>ASIASESSION{serial:09d}</AccessKeyId><SecretAccessKey>secret-{serial}-{PLANT}</SecretAccessKey>"
        f"<SessionToken>token-{serial}-{PLANT}</SessionToken><Expiration>{expiration(900)}</Expiration>"
        "</Credentials></AssumeRoleResult></AssumeRoleResponse>"
    ).encode()


def test_an_sts_session_is_issued_again_at_60_to_75_percent_all_fields_in_one_call(tmp_path: Path) -> None:
    # The real refresher and the real source, over HTTP to a loopback STS, on an injected clock.
    from injector.refresh.ledger import Ledger
    from injector.refresh.refresher import Refresher
    from injector.settings.references import collect_references
    from injector.settings.settings import Settings
    from injector.sources.aws.wiring import open_aws_source
    from injector.sources.transport import TLSOptions

    served: list[int] = []

    def handle(method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
        served.append(len(served) + 1)
        return 200, sts_answer(len(served))

    server = Scripted(handle)
    try:
        sts = f"aws-sts://{ROLE_ARN}?ttl=15m"
        references = collect_references(
            {
                "AWS_ACCESS_KEY_ID": f"{sts}#access-key-id",
                "AWS_SECRET_ACCESS_KEY": f"{sts}#secret-access-key",
                "AWS_SESSION_TOKEN": f"{sts}#session-token",
            }
        )
        settings = Settings()
        settings.aws_env = {
            "AWS_ACCESS_KEY_ID": references[0].uri,  # a reference: not our identity
            "AWS_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": server.url,
            "AWS_SHARED_CREDENTIALS_FILE": str(profile_file(tmp_path, ("AKIDTEST", "test-secret"))),
            "AWS_PROFILE": "app",
            "AWS_CONFIG_FILE": "/nonexistent",
        }
        source = open_aws_source(settings, references, TLSOptions())
        now = [0.0]
        source._clock = lambda: now[0]  # issued_at on the refresher's clock
        first = source.issue(references)
        assert len(served) == 1 and {c.ttl for c in first} == {900.0}
        delivered: dict[str, str] = {}
        refresher = Refresher(
            references,
            source,
            Ledger(first),
            deliver=lambda reference, credential: delivered.__setitem__(reference.name, credential.value),
            on_rotated=lambda names: None,
            on_expired=lambda names: None,
            clock=lambda: now[0],
        )
        wake = refresher.next_wake()
        assert 0.60 * 900 <= wake <= 0.75 * 900
        now[0] = wake
        refresher.tick(now[0])
        assert len(served) == 2, "one AssumeRole for the three fields"
        assert delivered["AWS_ACCESS_KEY_ID"] == "ASIASESSION000000002"
        assert delivered["AWS_SECRET_ACCESS_KEY"] == f"secret-2-{PLANT}"
        assert delivered["AWS_SESSION_TOKEN"] == f"token-2-{PLANT}"
    finally:
        server.stop()


def test_a_slow_metadata_server_is_69_within_the_startup_timeout(open_moto: Moto) -> None:
    import threading
    import time

    release = threading.Event()

    def handle(method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
        release.wait(30)  # answers only when the test ends: slower than any request may take
        return 200, b"token"

    imds = Scripted(handle)
    try:
        started = time.monotonic()
        result = run(
            ["--startup-timeout", "3", "--", "true"], open_env(open_moto, AWS_EC2_METADATA_SERVICE_ENDPOINT=imds.url)
        )
        elapsed = time.monotonic() - started
        assert result.code == 69, result.stderr
        assert "instance metadata" in result.stderr and "hop limit" in result.stderr
        assert elapsed < 25, elapsed  # bounded by --startup-timeout, not by the server
    finally:
        release.set()
        imds.stop()


def test_no_identity_at_all_is_78() -> None:
    env = base_env(None, AWS_REGION="us-east-1", AWS_EC2_METADATA_DISABLED="true", HOME="/nonexistent", X="aws-sm://a")
    result = run(["--", "true"], env)
    assert result.code == 78, result.stderr
    assert "no AWS identity" in result.stderr


def test_a_real_environment_key_never_goes_to_an_env_file_endpoint(world: World, tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text(f"AWS_ENDPOINT_URL={world.moto.url}\nTHIRD=aws-sm://app/third\n")
    env = world.env()
    del env["AWS_ENDPOINT_URL"]
    world.moto.reset_calls()
    result = run(["--env-file", str(dotenv), "--", "true"], env)
    assert result.code == 78, result.stderr
    assert "AWS_ACCESS_KEY_ID" in result.stderr and "AWS_ENDPOINT_URL" in result.stderr and str(dotenv) in result.stderr
    assert world.moto.calls() == []


def test_region_from_the_profile_and_keys_from_the_config_file(world: World, tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.write_text(
        f"[profile app]\nregion = us-east-1\naws_access_key_id = {world.app_keys[0]}\n"
        f"aws_secret_access_key = {world.app_keys[1]}\n"
    )
    config.chmod(0o600)
    env = world.env(THIRD="aws-sm://app/third", AWS_PROFILE="app", AWS_CONFIG_FILE=str(config))
    for name in ("AWS_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        del env[name]
    env["AWS_SHARED_CREDENTIALS_FILE"] = str(tmp_path / "missing")
    result = run(["--", *report_command()], env)
    assert result.code == 0, result.stderr
    assert result.report()["env"]["THIRD"] == f"third-{PLANT}"


def test_expired_identity_keys_are_fetched_again_once(tmp_path: Path) -> None:
    # Container credentials that AWS calls expired on first use: fetched again, the call made again.
    fetches: list[int] = []

    def credentials(method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
        fetches.append(1)
        return 200, role_credentials()

    answers = [(400, b'{"__type": "ExpiredTokenException", "message": "expired"}'), (200, secret_answer("ok-" + PLANT))]
    aws = Scripted(lambda *_: answers.pop(0) if len(answers) > 1 else answers[0])
    container = Scripted(credentials)
    try:
        env = base_env(
            None,
            AWS_REGION="us-east-1",
            AWS_ENDPOINT_URL=aws.url,
            AWS_CONTAINER_CREDENTIALS_FULL_URI=container.url + "/v1/credentials",
            HOME="/nonexistent",
            KEY="aws-sm://app/one",
        )
        result = run(["--", *report_command()], env)
        assert result.code == 0, result.stderr
        assert result.report()["env"]["KEY"] == "ok-" + PLANT
        assert len(fetches) == 2 and len(aws.requests) == 2
        assert_no_value(result.stderr)
    finally:
        aws.stop()
        container.stop()


def test_aws_and_proxy_references_in_one_run(world: World, proxy) -> None:
    env = world.env(THIRD="aws-sm://app/third", STRIPE_KEY="stronghold://stripe/live")
    env.update(STRONGHOLD_PROXY_URL=proxy.url, STRONGHOLD_BOOTSTRAP_TOKEN=proxy.token)
    result = run(["--", *report_command()], env)
    assert result.code == 0, result.stderr
    child = result.report()["env"]
    assert child["THIRD"] == f"third-{PLANT}" and child["STRIPE_KEY"].startswith("sk_live_TESTSECRET")
