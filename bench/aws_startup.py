"""AWS start-up: 3 aws-sm:// references against moto beside 3 stronghold:// references against the dev proxy.

    python bench/aws_startup.py [--runs 30]

Both `stronghold-init --no-refresh -- true`, in the same alternating runs, so
machine noise hits both alike.  moto checks SigV4 signatures and IAM
policies (testkit/moto.py), as AWS would.

What the server spends is taken out: the bench sends the very requests the
binary sends (a signed BatchGetSecretValue; login + credentials to the
proxy) from this warm process and times the round trips; the client's own
time is the binary's start -> exit minus that.  moto is far slower per
request than the dev proxy, so only this difference compares the clients.

And `-X importtime` of both runs: the modules the AWS path imports beyond
the proxy path's, their self time, and that none is boto3, botocore or requests.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT))

from harness import DevProxyProcess, stronghold_binary  # noqa: E402
from startup import three_references, time_once  # noqa: E402

from testkit.moto import Moto  # noqa: E402

SECRETS = {"bench/stripe": "sk_test_bench", "bench/postgres": "pg_bench", "bench/npm": "npm_bench"}


def seeded_moto(workdir: Path) -> tuple[Moto, tuple[str, str]]:
    moto = Moto(workdir)
    iam = moto.client("iam")
    iam.create_user(UserName="bench")
    key = iam.create_access_key(UserName="bench")["AccessKey"]
    statement = {
        "Effect": "Allow",
        "Action": ["secretsmanager:GetSecretValue", "secretsmanager:BatchGetSecretValue"],
        "Resource": "*",
    }
    iam.put_user_policy(
        UserName="bench",
        PolicyName="read",
        PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [statement]}),
    )
    sm = moto.client("secretsmanager")
    for name, value in SECRETS.items():
        sm.create_secret(Name=name, SecretString=value)
    moto.enforce_auth()
    return moto, (key["AccessKeyId"], key["SecretAccessKey"])


def aws_env(moto: Moto, keys: tuple[str, str]) -> dict[str, str]:
    env = {
        "PATH": os.environ["PATH"],
        "AWS_ACCESS_KEY_ID": keys[0],
        "AWS_SECRET_ACCESS_KEY": keys[1],
        "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": moto.url,
    }
    for variable, name in zip(("STRIPE_KEY", "DB_PASSWORD", "NPM_TOKEN"), SECRETS, strict=True):
        env[variable] = f"aws-sm://{name}"
    return env


def aws_round_trip(moto: Moto, keys: tuple[str, str]) -> float:
    """One signed BatchGetSecretValue, as the binary sends it (through the product's own client)."""
    from injector.sources.aws.client import AwsClient, Keys
    from injector.sources.transport import Transport

    transport = Transport(moto.url)
    client = AwsClient(lambda service, region: transport)
    started = time.perf_counter()
    client.json_call(
        "secretsmanager",
        "us-east-1",
        "BatchGetSecretValue",
        {"SecretIdList": list(SECRETS)},
        Keys(keys[0], keys[1], None, float("inf")),
        names="bench",
    )
    return time.perf_counter() - started


def proxy_round_trip(proxy: DevProxyProcess) -> float:
    """Login, then one credentials request for the three references, as the binary sends them."""
    host, port = proxy.url.removeprefix("http://").split(":")
    started = time.perf_counter()
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    connection.request("POST", "/v1/auth/login", json.dumps({"method": "bootstrap_token", "token": proxy.token}))
    session = json.loads(connection.getresponse().read())["session_token"]
    requests = [{"name": n, "secret": s, "scopes": []} for n, s in (("A", "stripe/live"), ("B", "postgres/app"))]
    requests.append({"name": "C", "secret": "npm/publish", "scopes": []})
    connection.request(
        "POST",
        "/v1/credentials",
        json.dumps({"requests": requests}),
        headers={"Authorization": f"Bearer {session}", "Content-Type": "application/json"},
    )
    connection.getresponse().read()
    connection.close()
    return time.perf_counter() - started


def imports(env: dict[str, str], runs: int = 7) -> dict[str, float]:
    """module -> median self import time (µs) over `runs` runs of `--no-refresh -- true`."""
    argv = [sys.executable, "-X", "importtime", "-c", "from injector.cli import main; main()", "--no-refresh", "--"]
    seen: dict[str, list[int]] = {}
    for _ in range(runs):
        done = subprocess.run([*argv, "true"], env=env, capture_output=True, text=True, check=True)
        for line in done.stderr.splitlines():
            if line.startswith("import time:") and "|" in line and "self [us]" not in line:
                self_us, _cumulative, name = line.removeprefix("import time:").split("|")
                seen.setdefault(name.strip(), []).append(int(self_us))
    return {name: statistics.median(values) for name, values in seen.items()}


def measure(runs: int) -> dict[str, object]:
    workdir = Path(tempfile.mkdtemp(prefix="aws-bench-"))
    moto, keys = seeded_moto(workdir)
    try:
        with DevProxyProcess() as proxy:
            envs = {"aws-sm:// x3, moto": aws_env(moto, keys), "stronghold:// x3, dev proxy": three_references(proxy)}
            argv = [stronghold_binary(), "--no-refresh", "--", "true"]
            samples: dict[str, list[float]] = {name: [] for name in envs}
            server: dict[str, list[float]] = {name: [] for name in envs}
            for env in envs.values():  # warm the page cache once
                time_once(argv, env)
            aws_round_trip(moto, keys)
            proxy_round_trip(proxy)
            for _ in range(runs):
                for name, env in envs.items():
                    samples[name].append(time_once(argv, env))
                server["aws-sm:// x3, moto"].append(aws_round_trip(moto, keys))
                server["stronghold:// x3, dev proxy"].append(proxy_round_trip(proxy))
            aws_imports = imports(envs["aws-sm:// x3, moto"])
            proxy_imports = imports(envs["stronghold:// x3, dev proxy"])
    finally:
        moto.stop()
    extra = {m: us for m, us in aws_imports.items() if m not in proxy_imports}
    banned = sorted(m for m in aws_imports if m.split(".")[0] in ("boto3", "botocore", "requests"))
    own = {name: statistics.median(samples[name]) - statistics.median(server[name]) for name in samples}
    return {
        "samples": samples,
        "server": server,
        "own": own,
        "extra_imports": extra,
        "banned_imports": banned,
        "aws_import_us": sum(aws_imports.values()),
        "proxy_import_us": sum(proxy_imports.values()),
    }


def report(figures: dict) -> list[str]:
    lines = ["| run | start -> exit, median ms | min | max | server round trips, median ms | client's own ms |"]
    lines.append("| --- | --- | --- | --- | --- | --- |")
    for name, values in figures["samples"].items():
        lines.append(
            f"| {name} | {statistics.median(values) * 1000:.1f} | {min(values) * 1000:.1f} | {max(values) * 1000:.1f}"
            f" | {statistics.median(figures['server'][name]) * 1000:.1f} | {figures['own'][name] * 1000:.1f} |"
        )
    aws, proxy = figures["own"].values()
    lines.append("")
    lines.append(f"AWS client's own time / proxy client's: **{aws / proxy:.2f}x**.")
    extra = ", ".join(
        f"`{m}` {us / 1000:.1f}" for m, us in sorted(figures["extra_imports"].items(), key=lambda i: -i[1])
    )
    lines.append("")
    lines.append(
        f"Imports (`-X importtime`, self time): {figures['aws_import_us'] / 1000:.1f} ms on the AWS path against"
        f" {figures['proxy_import_us'] / 1000:.1f} ms on the proxy path; modules only the AWS path imports (ms):"
        f" {extra or 'none'}. boto3/botocore/requests imported: {', '.join(figures['banned_imports']) or 'none'}."
    )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    print("\n".join(report(measure(args.runs))))


if __name__ == "__main__":
    main()
