"""`--template SRC:DEST` through the binary (SPEC section 13, docs/templates.md).

Every value comes from the dev proxy's code (the in-process TestProxy, or a
real `dev-proxy` process where the test edits its secrets file); every
rendered file is read back with the format's own parser.
"""

from __future__ import annotations

import base64
import json
import os
import shlex
import signal
import subprocess
import urllib.parse
from pathlib import Path

import pytest
import yaml

from conftest import PYTHON, STRONGHOLD, TestProxy, base_env, read_line, run, start, wait_for, wait_for_log

SIGNALS_CHILD = str(Path(__file__).resolve().parent / "children" / "signals.py")
# Everything a config format has to escape, and some it must not: quotes, backslashes, line
# breaks (YAML's and Unicode's too), a comment sign, a key separator, braces (a template's own
# {{ included: a value is never parsed again), spaces at both ends, shell and URL syntax,
# control characters and non-ASCII in and beyond the BMP.
AWKWARD = (
    " q\"uo'te \\back\\slash\nnew\r\nline\ttab # not a comment: key: {braces} {{ stronghold://stripe/live }} }} "
    "$HOME `id` $(id) %41 &x=1+2/3?y ~ ü 日本 🎉 \u2028 \x85 \x1b\x7f\u00a0\ufeff end "
)
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="--user needs root")


def awkward_proxy(make_proxy, **secrets: str) -> TestProxy:
    """Values verbatim (no rotation suffix), so the file must hold exactly the value."""
    proxy = make_proxy(rotate=False)
    proxy.secrets["awk/value"] = AWKWARD
    proxy.secrets.update(secrets)
    return proxy


def fetch(proxy: TestProxy, tmp_path: Path, shm_dir: Path, text: str, *extra: str, **env: str):
    src = tmp_path / "app.tmpl"
    src.write_bytes(text.encode())  # bytes: a \r\n must reach the binary as it is
    result = run(["fetch", "--dir", str(shm_dir), "--template", f"{src}:app.conf", *extra], base_env(proxy, **env))
    assert result.code == 0, result.stderr
    assert_no_value(result, AWKWARD, *proxy.secrets.values())
    assert src.read_bytes() == text.encode(), "SRC is never changed"
    rendered = shm_dir / "app.conf"
    assert oct(rendered.stat().st_mode & 0o777) == "0o400"
    return rendered.read_bytes().decode("utf-8")


def assert_no_value(result, *values: str) -> None:
    for value in values:
        for form in {value, json.dumps(value)[1:-1], repr(value)[1:-1], value.strip()[:12]}:
            assert form not in result.stdout + result.stderr


# -- the filters: each value through the format's own parser ------------------------------


def test_no_filter_writes_the_value_exactly(make_proxy, tmp_path, shm_dir) -> None:
    proxy = awkward_proxy(make_proxy)
    assert fetch(proxy, tmp_path, shm_dir, "{{ stronghold://awk/value }}") == AWKWARD


def test_json_filter_round_trips(make_proxy, tmp_path, shm_dir) -> None:
    proxy = awkward_proxy(make_proxy)
    text = fetch(proxy, tmp_path, shm_dir, '{"password": {{ stronghold://awk/value | json }}, "port": 5432}\n')
    assert json.loads(text) == {"password": AWKWARD, "port": 5432}


def test_yaml_filter_round_trips(make_proxy, tmp_path, shm_dir) -> None:
    proxy = awkward_proxy(make_proxy)
    template = (
        "db:\n  password: {{stronghold://awk/value|yaml}}  # the comment stays a comment\n"
        "  list: [{{ stronghold://awk/value | yaml }}]\n"
    )
    assert yaml.safe_load(fetch(proxy, tmp_path, shm_dir, template)) == {"db": {"password": AWKWARD, "list": [AWKWARD]}}


def test_shell_filter_round_trips(make_proxy, tmp_path, shm_dir) -> None:
    proxy = awkward_proxy(make_proxy)
    text = fetch(proxy, tmp_path, shm_dir, "PASSWORD={{ stronghold://awk/value | shell }}\nexport PASSWORD\n")
    assert shlex.split(text, comments=True) == ["PASSWORD=" + AWKWARD, "export", "PASSWORD"]
    # and a real shell agrees: the file sourced, the variable printed back
    done = subprocess.run(
        ["sh", "-c", '. "$0" && printf %s "$PASSWORD"', str(shm_dir / "app.conf")], capture_output=True, timeout=30
    )
    assert done.stdout.decode("utf-8") == AWKWARD


def test_url_filter_round_trips(make_proxy, tmp_path, shm_dir) -> None:
    proxy = awkward_proxy(make_proxy)
    text = fetch(
        proxy, tmp_path, shm_dir, "postgres://app:{{ stronghold://awk/value | url }}@db:5432/app?sslmode=require"
    )
    parts = urllib.parse.urlsplit(text)
    assert (parts.hostname, parts.port, parts.path, parts.query) == ("db", 5432, "/app", "sslmode=require")
    assert urllib.parse.unquote(parts.password) == AWKWARD
    encoded = parts.password.replace("%", "")
    assert all(c.isascii() and (c.isalnum() or c in "-._~") for c in encoded), "only unreserved characters kept"


def test_base64_filter_round_trips(make_proxy, tmp_path, shm_dir) -> None:
    proxy = awkward_proxy(make_proxy)
    text = fetch(proxy, tmp_path, shm_dir, "key: {{ stronghold://awk/value | base64 }}\n")
    encoded = text.removeprefix("key: ").removesuffix("\n")
    assert base64.b64decode(encoded, validate=True) == AWKWARD.encode("utf-8")


def test_literal_braces_and_plain_text_are_kept(make_proxy, tmp_path, shm_dir) -> None:
    proxy = awkward_proxy(make_proxy, **{"plain/value": "VALUE"})
    template = "helm: \\{{ .Values.x }} }} {single} \\ back\\slash\r\ncrlf {{ stronghold://plain/value }}\n"
    expected = "helm: {{ .Values.x }} }} {single} \\ back\\slash\r\ncrlf VALUE\n"
    assert fetch(proxy, tmp_path, shm_dir, template) == expected
    assert (shm_dir / ".ready").exists(), "fetch marks the directory ready after the templates"


# -- errors: 78, SRC and its line named, nothing rendered or left ---------------------------


BAD_TEMPLATES = {
    "unknown filter": ("a\nb {{ stronghold://stripe/live | jsn }}\n", "line 2", "unknown filter 'jsn'"),
    "two filters": ("{{ stronghold://stripe/live | json | yaml }}", "line 1", "one filter only"),
    "unclosed": ("ok\nok\nkey: {{ stronghold://stripe/live \n}}\n", "line 3", "unclosed"),
    "bad reference": ("x\n{{ stronghold://stripe/live?colour=red }}", "line 2", "unknown query key 'colour'"),
    "misspelt scheme": ("{{ stronghld://stripe/live }}", "line 1", "misspelt"),
    "not a reference": ("x\ny\nz: {{ .Values.password }}", "line 3", "holds no reference"),
    "empty": ("{{ }}", "line 1", "empty placeholder"),
    "triple braces": ('{"a": {{{ stronghold://stripe/live }}}}', "line 1", "{{{"),
}


@pytest.mark.parametrize("case", BAD_TEMPLATES, ids=str)
def test_template_errors_name_src_and_line_and_nothing_starts(proxy: TestProxy, tmp_path, shm_dir, case) -> None:
    text, line, reason = BAD_TEMPLATES[case]
    src = tmp_path / "bad.tmpl"
    src.write_text(text)
    marker = tmp_path / "started"
    env = base_env(proxy, KEY_FILE="stronghold://postgres/app")
    result = run(["--dir", str(shm_dir), "--template", f"{src}:app.conf", "--", "touch", str(marker)], env)
    assert result.code == 78, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and str(src) in lines[0] and line in lines[0] and reason in lines[0], result.stderr
    assert not marker.exists(), "the command never starts"
    assert proxy.requests == [], "a template error is found before the first request"
    assert not shm_dir.exists()
    assert src.read_text() == text


def test_unknown_secret_in_a_template_is_78_naming_src_and_line(proxy: TestProxy, tmp_path, shm_dir) -> None:
    src = tmp_path / "app.tmpl"
    src.write_text("first\nsecond: {{ stronghold://stripe/live }} {{ stronghold://no/such/secret }}\n")
    marker = tmp_path / "started"
    env = base_env(proxy, KEY_FILE="stronghold://postgres/app")
    result = run(["--dir", str(shm_dir), "--template", f"{src}:app.conf", "--", "touch", str(marker)], env)
    assert result.code == 78, result.stderr
    assert f"{src}:2:" in result.stderr and "no/such/secret" in result.stderr
    assert not marker.exists() and not shm_dir.exists(), "nothing rendered, nothing left"
    assert len(proxy.bodies("/v1/credentials")) == 1, "the templates' references went in the one request"
    assert_no_value(Result_(result), *proxy.issued_values)


class Result_:  # noqa: N801 - adapts a run() result for assert_no_value
    def __init__(self, result) -> None:
        self.stdout, self.stderr = result.stdout, result.stderr


# -- hostile templates and DESTs ------------------------------------------------------------


def run_template(proxy: TestProxy, src: Path, dest: str, shm_dir: Path, timeout: float = 60):
    return run(["fetch", "--dir", str(shm_dir), "--template", f"{src}:{dest}"], base_env(proxy), timeout=timeout)


def assert_clean_failure(result, shm_dir: Path, *fragments: str) -> None:
    assert result.code == 78, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and len(lines[0]) < 400, "one short line, never the template's text"
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert not shm_dir.exists()


def test_a_template_over_one_mebibyte_is_refused(proxy: TestProxy, tmp_path, shm_dir) -> None:
    src = tmp_path / "big.tmpl"
    src.write_bytes(b"x" * (1024 * 1024 + 1))  # one line
    assert_clean_failure(run_template(proxy, src, "big", shm_dir), shm_dir, str(src), "larger than 1 MiB")


def test_a_one_mebibyte_line_with_an_unclosed_placeholder_fails_fast(proxy: TestProxy, tmp_path, shm_dir) -> None:
    src = tmp_path / "line.tmpl"
    src.write_bytes(b"{{ stronghold://stripe/live " + b"y" * (1024 * 1024 - 40))
    assert_clean_failure(run_template(proxy, src, "line", shm_dir, timeout=30), shm_dir, "line 1", "unclosed")


def test_a_one_mebibyte_line_of_placeholders_renders(make_proxy, tmp_path, shm_dir) -> None:
    """The bound is the size, not the shape: 1 MiB on one line with 10,000 placeholders is fine (and fast)."""
    proxy = awkward_proxy(make_proxy)
    src = tmp_path / "wide.tmpl"
    piece = "{{stronghold://stripe/live|base64}}"
    text = piece * 10_000
    src.write_text(text + "z" * (1024 * 1024 - len(text)))
    result = run_template(proxy, src, "wide", shm_dir, timeout=60)
    assert result.code == 0, result.stderr
    encoded = base64.b64encode(b"sk_live_TESTSECRET").decode()
    assert (shm_dir / "wide").read_text() == encoded * 10_000 + "z" * (1024 * 1024 - len(text)), "(not shown)"


@pytest.mark.parametrize("count", [100_000, 20_000])
def test_too_many_placeholders_are_refused(proxy: TestProxy, tmp_path, shm_dir, count: int) -> None:
    """100,000 placeholders exceed 1 MiB; 20,000 fit in it but exceed the 10,000 a template may hold."""
    src = tmp_path / "many.tmpl"
    src.write_text("{{stronghold://stripe/live}}\n" * count)
    expected = "larger than 1 MiB" if count == 100_000 else "more than 10000 placeholders"
    assert_clean_failure(run_template(proxy, src, "many", shm_dir), shm_dir, str(src), expected)


def test_a_render_over_four_mebibytes_is_refused_and_nothing_is_left(make_proxy, tmp_path, shm_dir) -> None:
    proxy = awkward_proxy(make_proxy, **{"big/value": "v" * 1000})
    src = tmp_path / "amplify.tmpl"
    src.write_text("{{ stronghold://big/value }}" * 5_000)
    result = run_template(proxy, src, "amplified", shm_dir)
    assert result.code == 78, result.stderr
    assert "renders to more than 4 MiB" in result.stderr and str(src) in result.stderr
    assert not shm_dir.exists(), "the failed start removed what it had made"


def test_templates_rendering_over_16_mebibytes_together_are_refused_and_nothing_is_left(
    make_proxy, tmp_path, shm_dir
) -> None:
    """Each under its own 4 MiB, 17 templates of ~1 MB are still more than memory (tmpfs) should hold."""
    proxy = awkward_proxy(make_proxy)
    specs = []
    for number in range(17):
        src = tmp_path / f"part{number}.tmpl"
        src.write_text("x" * 999_000 + "{{ stronghold://stripe/live }}\n")
        specs += ["--template", f"{src}:part{number}.conf"]
    result = run(["fetch", "--dir", str(shm_dir), *specs], base_env(proxy))
    assert result.code == 78, result.stderr
    assert "more than 16 MiB together" in result.stderr
    assert not shm_dir.exists(), "the failed start removed what it had made"


@pytest.mark.parametrize(
    ("content", "what"),
    [(b"ok\nbad \xff\xfe byte\n", "line 2: not UTF-8"), (b"a\nb\nnul \x00 here", "line 3: holds a NUL")],
    ids=["invalid-utf8", "nul"],
)
def test_a_template_that_is_not_utf8_text_is_refused(proxy: TestProxy, tmp_path, shm_dir, content, what) -> None:
    src = tmp_path / "binary.tmpl"
    src.write_bytes(content)
    assert_clean_failure(run_template(proxy, src, "binary", shm_dir), shm_dir, str(src), what)


def test_a_fifo_or_a_directory_as_src_is_refused_without_hanging(proxy: TestProxy, tmp_path, shm_dir) -> None:
    fifo = tmp_path / "fifo.tmpl"
    os.mkfifo(fifo)
    assert_clean_failure(run_template(proxy, fifo, "x", shm_dir, timeout=30), shm_dir, "not a regular file")
    assert_clean_failure(run_template(proxy, tmp_path, "x", shm_dir), shm_dir, "not a regular file")
    assert_clean_failure(run_template(proxy, tmp_path / "absent", "x", shm_dir), shm_dir, "cannot open it")


@pytest.mark.parametrize("dest", ["../escaped", "/etc/escaped", "sub/dir", ".ready", ".hidden", "-flag", ""])
def test_a_dest_that_is_not_a_plain_name_is_refused(proxy: TestProxy, tmp_path, shm_dir, dest: str) -> None:
    src = tmp_path / "app.tmpl"
    src.write_text("{{ stronghold://stripe/live }}")
    result = run_template(proxy, src, dest, shm_dir)
    assert_clean_failure(result, shm_dir, "--template")
    assert not (tmp_path / "escaped").exists() and not Path("/etc/escaped").exists()
    assert proxy.requests == []


def test_a_symlink_in_the_way_is_refused_and_its_target_untouched(proxy: TestProxy, tmp_path, shm_dir) -> None:
    shm_dir.mkdir(mode=0o700)
    target = tmp_path / "precious"
    target.write_text("untouched")
    (shm_dir / "app.conf").symlink_to(target)
    src = tmp_path / "app.tmpl"
    src.write_text("{{ stronghold://stripe/live }}")
    result = run_template(proxy, src, "app.conf", shm_dir)
    assert result.code == 78, result.stderr
    assert "is a symlink" in result.stderr
    assert target.read_text() == "untouched"
    assert sorted(p.name for p in shm_dir.iterdir()) == ["app.conf"], "nothing of ours is left"
    assert (shm_dir / "app.conf").is_symlink()


def test_dest_clashing_with_a_file_or_another_template_is_refused(proxy: TestProxy, tmp_path, shm_dir) -> None:
    src = tmp_path / "app.tmpl"
    src.write_text("{{ stronghold://stripe/live }}")
    env = base_env(proxy, KEY_FILE="stronghold://postgres/app")
    clash = run(["fetch", "--dir", str(shm_dir), "--template", f"{src}:KEY"], env)
    assert clash.code == 78 and "KEY_FILE" in clash.stderr, clash.stderr
    twice = run(["fetch", "--dir", str(shm_dir), "--template", f"{src}:a", "--template", f"{src}:a"], env)
    assert twice.code == 78 and "also the DEST" in twice.stderr, twice.stderr
    assert not shm_dir.exists() and proxy.requests == []


def test_a_template_without_a_placeholder_is_refused(proxy: TestProxy, tmp_path, shm_dir) -> None:
    src = tmp_path / "static.tmpl"
    src.write_text("nothing to fill in \\{{ here }}\n")
    assert_clean_failure(run_template(proxy, src, "static", shm_dir), shm_dir, "holds no {{ REFERENCE }}")


# -- one resolution: shared references, the env twin, check ---------------------------------


def test_templates_join_the_one_request_and_share_equal_references(proxy: TestProxy, tmp_path, shm_dir) -> None:
    """A placeholder equal to a variable's reference gets that variable's very token; others one item each."""
    a, b = tmp_path / "a.tmpl", tmp_path / "b.tmpl"
    a.write_text("db={{ stronghold://postgres/app }} key={{ stronghold://stripe/live }}\n")
    b.write_text("key={{ stronghold://stripe/live | json }} npm={{ stronghold://npm/publish }}\n")
    env = base_env(proxy, DB_FILE="stronghold://postgres/app", STRONGHOLD_TEMPLATES=f"{a}:a.conf, {b}:b.conf")
    result = run(
        [
            "--dir",
            str(shm_dir),
            "--",
            "sh",
            "-c",
            'cat "$DB_FILE"; echo; cat "$0" "$1"',
            str(shm_dir / "a.conf"),
            str(shm_dir / "b.conf"),
        ],
        env,
    )
    assert result.code == 0, result.stderr
    db, a_text, b_text = result.stdout.split("\n")[:3]
    key = a_text.split("key=")[1]
    assert a_text == f"db={db} key={key}", "the template holds the DB_FILE variable's own token"
    assert b_text == f"key={json.dumps(key)} npm={b_text.split('npm=')[1]}", "one stripe/live token in both files"
    bodies = proxy.bodies("/v1/credentials")
    assert len(bodies) == 1, "everything in one request"
    secrets = sorted(item["secret"] for item in bodies[0]["requests"])
    assert secrets == ["npm/publish", "postgres/app", "stripe/live"]
    assert not shm_dir.exists(), "the rendered files go with the run"


def test_the_flag_wins_over_the_env_twin(proxy: TestProxy, tmp_path, shm_dir) -> None:
    src = tmp_path / "app.tmpl"
    src.write_text("{{ stronghold://stripe/live }}")
    env = base_env(proxy, STRONGHOLD_TEMPLATES=f"{tmp_path / 'absent'}:never")
    result = run(["fetch", "--dir", str(shm_dir), "--template", f"{src}:flagged"], env)
    assert result.code == 0, result.stderr
    assert sorted(p.name for p in shm_dir.iterdir()) == [".ready", "flagged"]


def test_check_lists_templates_and_their_references_never_a_value(proxy: TestProxy, tmp_path, shm_dir) -> None:
    src = tmp_path / "app.tmpl"
    src.write_text("a\nkey: {{ stronghold://stripe/live | yaml }}\nurl: x://{{ stronghold://postgres/app|url }}\n")
    env = base_env(proxy, KEY_FILE="stronghold://stripe/live")
    result = run(["check", "--dir", str(shm_dir), "--template", f"{src}:app.yaml"], env)
    assert result.code == 0, result.stderr
    out = result.stdout
    assert f"template {src}  file {shm_dir / 'app.yaml'}" in out
    assert "line 2    stronghold://stripe/live | yaml  (as KEY_FILE, ttl" in out
    assert "line 3    stronghold://postgres/app | url  (ttl" in out
    assert "ok: 2 reference(s) resolved and revoked" in out
    assert_no_value(result, *proxy.issued_values)
    assert not shm_dir.exists(), "check writes nothing"


@needs_root
def test_rendered_files_belong_to_the_childs_user(proxy: TestProxy, tmp_path, shm_dir) -> None:
    src = tmp_path / "app.tmpl"
    src.write_text("{{ stronghold://stripe/live }}")
    command = ["sh", "-c", 'stat -c "%u %a" "$0"; cat "$0"', str(shm_dir / "app.conf")]
    result = run(
        ["--user", "65534", "--dir", str(shm_dir), "--template", f"{src}:app.conf", "--", *command], base_env(proxy)
    )
    assert result.code == 0, result.stderr
    owner, value = result.stdout.split("\n", 1)
    assert owner == "65534 400" and value.startswith("sk_live_TESTSECRET")


def test_no_template_module_is_imported_without_a_template(proxy: TestProxy, shm_dir) -> None:
    probe = (
        "import sys; from injector import cli; code = cli.run_cli(['check', '--dir', sys.argv[1]]); "
        "print(code, [m for m in sys.modules if 'templates' in m])"
    )
    env = base_env(proxy, KEY_FILE="stronghold://stripe/live")
    done = subprocess.run([PYTHON, "-c", probe, str(shm_dir)], env=env, capture_output=True, text=True, timeout=60)
    assert done.stdout.strip().splitlines()[-1] == "0 []", done.stdout + done.stderr


# -- rotation, sidecar: a real dev-proxy process and its secrets file -----------------------


def dev_proxy(tmp_path: Path, processes, text: str) -> tuple[str, Path]:
    secrets = tmp_path / "secrets.env"
    secrets.write_text(text)
    process = start(
        ["dev-proxy", "--secrets", str(secrets), "--listen", "127.0.0.1:0", "--ttl", "1", "--token", "tok-TEMPLATE"],
        base_env(),
    )
    processes.append(process)
    return read_line(process).strip(), secrets


def edit(secrets: Path, text: str) -> None:
    """As an editor saves: a new file renamed over the old one."""
    new = secrets.with_suffix(".new")
    new.write_text(text)
    os.replace(new, secrets)


def template_env(url: str, **extra: str) -> dict[str, str]:
    return base_env(STRONGHOLD_PROXY_URL=url, STRONGHOLD_BOOTSTRAP_TOKEN="tok-TEMPLATE", **extra)


def test_rotation_renders_again_and_signals_once_per_rotation(tmp_path, processes, shm_dir) -> None:
    url, secrets = dev_proxy(tmp_path, processes, "app/key=key-ONE\napp/db=db-ONE\n")
    key_tmpl, db_tmpl = tmp_path / "key.tmpl", tmp_path / "db.tmpl"
    key_tmpl.write_text('{"key": {{ stronghold://app/key | json }}}\n')
    db_tmpl.write_text("password: {{ stronghold://app/db | yaml }}\n")
    key_file, db_file = shm_dir / "key.json", shm_dir / "db.yaml"
    args = ["--log-level", "debug", "--dir", str(shm_dir), "--on-rotate", "signal:SIGHUP"]
    args += ["--template", f"{key_tmpl}:key.json", "--template", f"{db_tmpl}:db.yaml"]
    app = start([*args, "--", PYTHON, SIGNALS_CHILD, "--pause", "--exit-on", "TERM"], template_env(url))
    processes.append(app)
    assert read_line(app).startswith("ready")
    assert json.loads(key_file.read_text()) == {"key": "key-ONE"}
    db_inode = db_file.stat().st_ino
    key_inode = key_file.stat().st_ino
    for _ in range(3):  # refreshes of unchanged values: nothing rewritten, nobody signalled
        wait_for_log(app, "credentials refreshed")
    assert (key_file.stat().st_ino, db_file.stat().st_ino) == (key_inode, db_inode)

    edit(secrets, "app/key=key-TWO\napp/db=db-ONE\n")  # one value rotates
    assert read_line(app, timeout=60).strip() == f"got {int(signal.SIGHUP)}"
    assert json.loads(key_file.read_text()) == {"key": "key-TWO"}, "rendered again before the signal"
    assert db_file.stat().st_ino == db_inode, "a template whose values did not change is not rewritten"

    edit(secrets, "app/key=key-THREE\napp/db=db-THREE\n")  # both rotate in one refresh: two files, one signal
    assert read_line(app, timeout=60).strip() == f"got {int(signal.SIGHUP)}"
    assert json.loads(key_file.read_text()) == {"key": "key-THREE"}
    assert yaml.safe_load(db_file.read_text()) == {"password": "db-THREE"}
    for _ in range(3):
        wait_for_log(app, "credentials refreshed")
    app.send_signal(signal.SIGTERM)
    out, err = app.communicate(timeout=30)
    assert out.splitlines() == [f"got {int(signal.SIGTERM)}"], "no signal beyond one per rotation"
    assert app.returncode == 0, err
    assert not shm_dir.exists(), "the rendered files go with the run"


def test_sidecar_renders_keeps_fresh_and_removes(tmp_path, processes, shm_dir) -> None:
    url, secrets = dev_proxy(tmp_path, processes, "app/key=key-ONE\n")
    src = tmp_path / "app.tmpl"
    src.write_text("export KEY={{ stronghold://app/key | shell }}\n")
    sidecar = start(["sidecar", "--dir", str(shm_dir), "--template", f"{src}:app.env"], template_env(url))
    processes.append(sidecar)
    wait_for_log(sidecar, "sidecar ready")
    rendered = shm_dir / "app.env"
    assert (shm_dir / ".ready").exists() and rendered.read_text() == "export KEY='key-ONE'\n"
    edit(secrets, "app/key=key 'TWO'\n")
    wait_for(lambda: rendered.read_text() == "export KEY='key '\\''TWO'\\'''\n", what="the template rendered again")
    sidecar.send_signal(signal.SIGTERM)
    assert sidecar.wait(timeout=30) == 0
    assert not shm_dir.exists()


def test_sidecar_and_fetch_still_refuse_environment_references(proxy: TestProxy, tmp_path, shm_dir) -> None:
    src = tmp_path / "app.tmpl"
    src.write_text("{{ stronghold://stripe/live }}")
    result = run(["fetch", "--dir", str(shm_dir), "--template", f"{src}:a"], base_env(proxy, KEY="stronghold://x"))
    assert result.code == 78 and "NAME_FILE" in result.stderr


def test_no_refresh_renders_before_the_exec(proxy: TestProxy, tmp_path, shm_dir) -> None:
    src = tmp_path / "app.tmpl"
    src.write_text("key={{ stronghold://stripe/live }}\n")
    command = ["sh", "-c", 'echo "$$"; cat "$0"', str(shm_dir / "app.conf")]
    args = ["--no-refresh", "--dir", str(shm_dir), "--template", f"{src}:app.conf", "--", *command]
    exec_as_us = "import os, sys; print(os.getpid(), flush=True); os.execv(sys.argv[1], sys.argv[1:])"
    process = subprocess.run(
        [PYTHON, "-c", exec_as_us, STRONGHOLD, *args],
        env=base_env(proxy),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert process.returncode == 0, process.stderr
    ours, child, content = process.stdout.split("\n", 2)
    assert ours == child, "exec'd: the command has stronghold-init's pid"
    assert content == f"key={proxy.issued_values[0]}\n"
    assert (shm_dir / "app.conf").exists(), "after an exec the file is the command's"


def test_vault_and_proxy_references_in_one_template_rotate_on_the_poll(
    proxy: TestProxy, bao, tmp_path, processes, shm_dir
) -> None:
    """Any reference of SPEC sections 2 and 9: a KV value re-read on --vault-poll re-renders the file."""
    path = f"tmpl-{os.urandom(4).hex()}"
    bao.ok("POST", f"secret/data/{path}", {"data": {"password": "kv-ONE"}})
    src = tmp_path / "app.tmpl"
    src.write_text(
        f"db: {{{{ vault://secret/data/{path}#password | yaml }}}}\nkey: {{{{ stronghold://stripe/live }}}}\n"
    )
    env = base_env(proxy, STRONGHOLD_VAULT_ADDR=bao.url, BAO_TOKEN=bao.root_token)
    args = ["sidecar", "--vault-poll", "1", "--dir", str(shm_dir), "--template", f"{src}:app.yaml"]
    sidecar = start(args, env)
    processes.append(sidecar)
    wait_for_log(sidecar, "sidecar ready")
    rendered = shm_dir / "app.yaml"
    first = yaml.safe_load(rendered.read_text())
    assert first["db"] == "kv-ONE" and first["key"].startswith("sk_live_TESTSECRET")
    bao.ok("POST", f"secret/data/{path}", {"data": {"password": "kv-TWO"}})
    wait_for(lambda: yaml.safe_load(rendered.read_text())["db"] == "kv-TWO", timeout=60, what="the KV change rendered")
    sidecar.send_signal(signal.SIGTERM)
    assert sidecar.wait(timeout=30) == 0
    assert not shm_dir.exists()


def test_the_template_benchmark_runs() -> None:
    """bench/templates.py (its figures are in docs/benchmarks.md) cannot rot unnoticed; no figure is checked."""
    bench = Path(__file__).resolve().parent.parent / "bench" / "templates.py"
    done = subprocess.run([PYTHON, str(bench), "--runs", "1"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "ratio (median, with / without)" in done.stdout


def test_check_says_shared_only_for_a_variables_credential(proxy: TestProxy, tmp_path, shm_dir) -> None:
    """A template's own reference is named SRC:LINE:COLUMN; a plain variable of that name shares nothing."""
    src = tmp_path / "app.tmpl"
    src.write_text("key: {{ stronghold://stripe/live }}\n")
    env = base_env(proxy, **{f"{src}:1:6": "not a reference"})
    result = run(["check", "--dir", str(shm_dir), "--template", f"{src}:app.conf"], env)
    assert result.code == 0, result.stderr
    assert "line 1    stronghold://stripe/live  (ttl" in result.stdout, result.stdout


def test_mask_output_masks_the_forms_a_template_writes(make_proxy, tmp_path, shm_dir) -> None:
    """An app that logs its DSN or config prints the value as the filter wrote it, not as issued."""
    from injector.delivery.templates import FILTER_FUNCTIONS

    proxy = awkward_proxy(make_proxy)
    src = tmp_path / "app.tmpl"
    filters = ["url", "base64", "json", "yaml", "shell"]
    src.write_text("".join(f"{name}={{{{ stronghold://awk/value | {name} }}}}\n" for name in filters))
    command = ["sh", "-c", 'cat "$0"', str(shm_dir / "app.conf")]
    result = run(
        ["--mask-output", "--dir", str(shm_dir), "--template", f"{src}:app.conf", "--", *command], base_env(proxy)
    )
    assert result.code == 0, result.stderr
    assert result.stdout.count("<redacted:") == len(filters), "one per filter (the output is not shown)"
    for name in filters:
        written = FILTER_FUNCTIONS[name](AWKWARD)
        assert written not in result.stdout and written[1:-1] not in result.stdout, f"{name} (not shown)"


def test_a_render_failing_at_rotation_keeps_its_file_and_the_others_are_written(tmp_path, processes, shm_dir) -> None:
    """A rotated value that makes one template too big: that file stays as it was, the error names it
    (never the value), and a template the value also fills is still rendered again."""
    url, secrets = dev_proxy(tmp_path, processes, "app/big=small-ONE\n")
    big, small = tmp_path / "big.tmpl", tmp_path / "small.tmpl"
    big.write_text("{{ stronghold://app/big }}\n" * 5_000)
    small.write_text("{{ stronghold://app/big | json }}\n")
    log = tmp_path / "sidecar.log"
    args = ["sidecar", "--log-level", "debug", "--dir", str(shm_dir)]
    args += ["--template", f"{big}:big.txt", "--template", f"{small}:small.json"]
    with log.open("w") as stderr:
        sidecar = subprocess.Popen(
            [STRONGHOLD, *args], env=template_env(url), stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True
        )
    processes.append(sidecar)
    wait_for(lambda: "sidecar ready" in log.read_text(), what="the sidecar ready")
    before = (shm_dir / "big.txt").read_bytes()
    huge = "v" * 1_000 + "-TWO"  # 5,000 times: over 4 MiB
    edit(secrets, f"app/big={huge}\n")
    wait_for(lambda: json.loads((shm_dir / "small.json").read_text()) == huge, what="small.json rendered again")
    wait_for(lambda: "templates rendered again" in log.read_text(), what="the rotation logged")
    assert (shm_dir / "big.txt").read_bytes() == before, "the previous file is kept"
    sidecar.send_signal(signal.SIGTERM)
    assert sidecar.wait(timeout=30) == 0
    text = log.read_text()
    errors = [line for line in text.splitlines() if "not rendered again" in line]
    assert len(errors) == 1 and str(big) in errors[0] and "renders to more than 4 MiB" in errors[0], text[-2000:]
    assert "small-ONE" not in text and "v" * 12 not in text and json.dumps(huge)[:12] not in text
    assert not shm_dir.exists()
