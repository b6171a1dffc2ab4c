"""`stronghold-init audit` with several targets, and layer tars in every format the reader parses.

One target that cannot be read must not hide the others: every target is
audited, each error is one line on stderr, the report lists the unreadable ones
as not audited, and the exit code is the most severe of all (an error over
findings over clean).  Through the real binary.
"""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest
from test_audit import (
    CLEAN,
    DB_PASSWORD,
    DIRTY,
    DIRTY_FINDINGS,
    NPM,
    PRIVATE_KEY,
    assert_no_value,
    audit,
    findings_of,
    fp,
)

from testkit.audit_builder import TestImage, all_forms, docker_files, write_tar


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    base = tmp_path_factory.mktemp("mixed")
    full = write_tar(base / "full.tar", docker_files(DIRTY)).read_bytes()
    (base / "cut.tar").write_bytes(full[: len(full) // 2])
    return {
        "dirty": all_forms(DIRTY, base / "dirty")["oci-archive"],
        "cut": f"docker-archive:{base / 'cut.tar'}",
        "missing": str(base / "nope.tar"),
        "clean": all_forms(CLEAN, base / "clean")["oci"],
    }


def test_every_target_is_reported_and_the_most_severe_code_wins(mixed: dict[str, str]) -> None:
    order = [mixed["dirty"], mixed["cut"], mixed["missing"], mixed["clean"]]
    result = audit("--format", "json", *order)
    assert result.returncode == 66, result.stderr  # 66 (missing) > 65 (corrupt) > 1 (findings)
    errors = result.stderr.strip().splitlines()
    assert len(errors) == 2 and "Traceback" not in result.stderr, result.stderr
    assert "cut.tar" in errors[0] and "nope.tar" in errors[1] and "no such file" in errors[1]
    targets = json.loads(result.stdout)["targets"]
    assert [t["target"] for t in targets] == order
    dirty, cut, missing, clean = targets
    assert dirty["clean"] is False and "error" not in dirty
    assert {
        (f["where"], f["layer"], f["path"], f["key"], f["fingerprint"]) for f in dirty["findings"]
    } == DIRTY_FINDINGS
    assert clean["clean"] is True and clean["findings"] == [] and "error" not in clean
    for failed, line in ((cut, errors[0]), (missing, errors[1])):
        assert failed["clean"] is False and failed["findings"] == [] and failed["image"] is None
        assert failed["error"] == line.split("error: ", 1)[-1] or failed["error"] in line
    assert_no_value(result)


def test_errors_after_findings_still_print_them_in_text_and_sarif(mixed: dict[str, str]) -> None:
    text = audit(mixed["cut"], mixed["dirty"])
    assert text.returncode == 65, text.stderr
    assert "6 findings" in text.stdout and "NOT AUDITED (exit 65)" in text.stdout
    assert_no_value(text)
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((Path(__file__).parent / "data" / "sarif-schema-2.1.0.json").read_text())
    sarif = audit("--format", "sarif", mixed["dirty"], mixed["missing"])
    assert sarif.returncode == 66
    log = json.loads(sarif.stdout)
    jsonschema.Draft4Validator(schema).validate(log)
    run = log["runs"][0]
    assert len(run["results"]) == len(DIRTY_FINDINGS)
    [invocation] = run["invocations"]
    assert invocation["executionSuccessful"] is False
    [note] = invocation["toolExecutionNotifications"]
    assert note["level"] == "error" and "nope.tar" in note["message"]["text"]


def test_findings_and_clean_targets_exit_1_and_a_lone_error_prints_no_report(mixed: dict[str, str]) -> None:
    both = audit("--format", "json", mixed["clean"], mixed["dirty"])
    assert both.returncode == 1 and both.stderr == ""
    assert [t["clean"] for t in json.loads(both.stdout)["targets"]] == [True, False]
    lone = audit(mixed["missing"], mixed["cut"])
    assert lone.returncode == 66 and lone.stdout == "" and len(lone.stderr.strip().splitlines()) == 2


@pytest.mark.parametrize("tar_format", [tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT, tarfile.PAX_FORMAT])
def test_layer_tars_in_gnu_ustar_and_pax_format(tmp_path: Path, tar_format: int) -> None:
    """Long names take a GNU 'L' record, a ustar prefix field or a pax path: the reader takes all three."""
    deep = "srv/" + "/".join(["a-rather-long-directory-name"] * 4)  # > 100 bytes: no room in the name field
    image = TestImage(
        layers=[
            {
                "srv": None,
                f"{deep}/.env": f"DB_PASSWORD={DB_PASSWORD}\n",
                "etc": None,
                "etc/.npmrc": f"_authToken={NPM}\n",
            },
            {"srv/key.pem": PRIVATE_KEY + "\n", "etc/.wh..npmrc": b""},
        ],
        tar_format=tar_format,
    )
    result = audit("--format", "json", all_forms(image, tmp_path)["oci"])
    assert result.returncode == 1, result.stderr
    assert findings_of(result) == {
        ("file", 0, f"/{deep}/.env", "DB_PASSWORD", fp(DB_PASSWORD)),
        ("deleted-file", 0, "/etc/.npmrc", "_authToken", fp(NPM)),
        ("file", 1, "/srv/key.pem", None, fp(PRIVATE_KEY)),
    }
