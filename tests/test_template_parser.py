"""The template parser and the filters as pure functions, with hypothesis (docs/templates.md).

The binary's behaviour is in test_templates.py; these properties cover the
inputs no list of examples would think of.
"""

from __future__ import annotations

import base64
import json
import shlex
import urllib.parse

import pytest
import yaml
from hypothesis import example, given, settings
from hypothesis import strategies as st

from injector.delivery.templates import FILTER_FUNCTIONS, as_base64, as_json, as_shell, as_url, as_yaml, render
from injector.errors import ConfigError
from injector.settings.references import parse_reference
from injector.settings.templates import (
    FILTERS,
    parse_template,
    resolve_references,
    split_spec,
)

# What an issued value can be (references.value_problem): any text without NUL or a lone surrogate.
VALUES = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"), min_size=1)
TEXT = st.text(st.characters(blacklist_categories=("Cs",)))
SECRETS = st.from_regex(r"[a-z0-9]([a-z0-9._-]{0,8}[a-z0-9])?(/[a-z0-9]{1,5}){0,2}", fullmatch=True)


def rendered(text: str, values: dict[str, str] | None = None) -> str:
    template = parse_template(text, "t.tmpl", "out")
    resolved, references = resolve_references([template], []) if template.placeholders else ([template], [])
    by_secret = {r.name: (values or {}).get(r.secret, "") for r in references}
    return render(resolved[0], by_secret).decode("utf-8")


@given(TEXT.filter(lambda t: "{{" not in t))
@example("")
@example("}} {single} \\ \\{ {\\{ \r\n\u2028 }}}")
@settings(deadline=None)  # a loaded 2-core machine is slow, not wrong
def test_text_without_double_braces_renders_to_itself(text: str) -> None:
    assert rendered(text) == text


@given(st.lists(TEXT.filter(lambda t: "{{" not in t), min_size=2))
@settings(deadline=None)  # a loaded 2-core machine is slow, not wrong
def test_backslash_braces_is_a_literal_pair_of_braces(segments: list[str]) -> None:
    assert rendered("\\{{".join(segments)) == "{{".join(segments)


LITERAL = TEXT.filter(lambda t: "{{" not in t and not t.endswith(("\\", "{")))


@given(
    st.lists(
        st.tuples(LITERAL, SECRETS, st.sampled_from([None, *FILTERS]), st.sampled_from(["", " ", "  "]), VALUES),
        min_size=1,
        max_size=6,
    ),
    LITERAL.filter(lambda t: not t.startswith("}")),
)
@settings(deadline=None)
def test_placeholders_are_found_where_they_are_and_filled_in(parts, tail: str) -> None:
    text, expected, values, offsets = "", "", {}, []
    for literal, secret, name, pad, value in parts:
        value = values.setdefault(secret, value)  # one value per secret, however often it is used
        literal = literal.lstrip("}")  # a } right after a placeholder's }} would close it one earlier
        text += literal
        offsets.append(len(text))
        through = f"{pad}|{pad}{name}" if name else ""
        text += f"{{{{{pad}stronghold://{secret}{through}{pad}}}}}"
        expected += literal + FILTER_FUNCTIONS[name](value)
    text += tail.lstrip("}")
    expected += tail.lstrip("}")
    template = parse_template(text, "t.tmpl", "out")
    for placeholder, offset, (_, secret, name, _, _) in zip(template.placeholders, offsets, parts, strict=True):
        assert placeholder.reference == f"stronghold://{secret}" and placeholder.filter == name
        assert placeholder.line == text.count("\n", 0, offset) + 1
        assert placeholder.column == offset - text.rfind("\n", 0, offset)
    assert rendered(text, values) == expected


@given(TEXT, TEXT.filter(lambda t: "}}" not in t))
@settings(deadline=None)  # a loaded 2-core machine is slow, not wrong
def test_an_unclosed_placeholder_names_its_line(before: str, after: str) -> None:
    before = before.replace("{{", "")
    if before.endswith("\\"):
        before += " "
    line = before.count("\n") + 1
    with pytest.raises(ConfigError) as raised:
        parse_template(before + "{{" + after.replace("{{", "") + "\n}}", "t.tmpl", "out")
    assert f"template t.tmpl line {line}, column" in raised.value.message


@given(TEXT)
@settings(max_examples=300, deadline=None)
def test_any_text_parses_or_fails_with_one_short_config_error(text: str) -> None:
    try:
        template = parse_template(text, "t.tmpl", "out")
    except ConfigError as exc:
        assert exc.message.startswith("template t.tmpl") and "\n" not in exc.message and len(exc.message) < 300
        return
    if not template.placeholders:  # then only escapes were there: each \{{ became {{
        assert "".join(template.pieces) == text.replace("\\{{", "{{")


# -- the filters: the format's own parser gives the value back --------------------------------


@given(VALUES)
@example('"\\\n\r\t#:{}  ü日本🎉\u2028\u2029\x85\ufeff\ufffe\uffff\x7f\x1b')
@settings(max_examples=300, deadline=None)
def test_every_filter_round_trips_through_its_format(value: str) -> None:
    assert json.loads(as_json(value)) == value
    assert yaml.safe_load("k: " + as_yaml(value)) == {"k": value}
    assert shlex.split(as_shell(value)) == [value]
    assert urllib.parse.unquote(as_url(value), errors="strict") == value
    assert base64.b64decode(as_base64(value), validate=True) == value.encode("utf-8")
    assert FILTER_FUNCTIONS[None](value) == value


# Plain scalars YAML would read as something else (a bool, null, a number, an alias, a sequence
# entry, a mapping, a comment), the line breaks and marks it treats specially, and a long one.
YAML_AWKWARD = ["yes", "~", "null", "-", "- x", "? x", "*a", "&a", "!tag", "a: b", "a #b", "\t", "|", ">", "%x"]
YAML_AWKWARD += ["@", "`", "0x10", "1e3", ".inf", "'", "\u2028", "\u2029", "\x85"]
YAML_AWKWARD += ["\ufeffa", "\x7f\x80\x9f", "\ud7ff\ue000", "x" * 100_000]
# The same scalar where a config file puts one: a block value, a list item, a flow collection,
# an explicit key, each before a comment.
YAML_PLACES = {
    "k: {}": lambda v: {"k": v},
    "- {}": lambda v: [v],
    "[{}, 1]": lambda v: [v, 1],
    "{{k: {}}}": lambda v: {"k": v},
    "? {}\n: 1": lambda v: {v: 1},
}


@pytest.mark.parametrize("value", YAML_AWKWARD, ids=lambda v: repr(v[:12]))
def test_a_yaml_scalar_stays_one_string_wherever_it_stands(value: str) -> None:
    for place, expected in YAML_PLACES.items():
        assert yaml.safe_load(place.format(as_yaml(value)) + "  # a comment\n") == expected(value), place


@given(VALUES)
@settings(deadline=None)  # a loaded 2-core machine is slow, not wrong
def test_url_keeps_only_unreserved_characters(value: str) -> None:
    assert set(as_url(value).replace("%", "")) <= set(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"
    )


def test_the_parser_and_the_renderer_know_the_same_filters() -> None:
    assert set(FILTER_FUNCTIONS) == {None, *FILTERS}


# -- SRC:DEST and references ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "expected"),
    [("a.tmpl:a.conf", ("a.tmpl", "a.conf")), ("C:/odd:path.tmpl:x_y-1.json", ("C:/odd:path.tmpl", "x_y-1.json"))],
)
def test_split_spec(spec: str, expected: tuple[str, str]) -> None:
    assert split_spec(spec) == expected


@given(st.text(min_size=1).filter(lambda d: ":" not in d))
@settings(deadline=None)  # a loaded 2-core machine is slow, not wrong
def test_a_dest_is_a_plain_name_or_refused(dest: str) -> None:
    try:
        _, got = split_spec(f"src:{dest}")
    except ConfigError as exc:
        assert "--template src" in exc.message
        return
    assert got == dest and "/" not in dest and not dest.startswith((".", "-")) and dest.isascii()


def test_equal_references_share_one_name_and_a_variables_credential() -> None:
    variable = parse_reference("DB_FILE", "stronghold://db")
    one = parse_template("{{ stronghold://db }} {{ stronghold://key }}\n{{stronghold://key|json}}", "a.tmpl", "a")
    two = parse_template("x {{ stronghold://key | yaml }} {{ stronghold://db?ttl=5m }}", "b.tmpl", "b")
    templates, own = resolve_references([one, two], [variable])
    assert templates[0].names == ("DB_FILE", "a.tmpl:1:23", "a.tmpl:1:23")
    assert templates[1].names == ("a.tmpl:1:23", "b.tmpl:1:33")  # another ttl: another credential
    assert [r.name for r in own] == ["a.tmpl:1:23", "b.tmpl:1:33"]
    assert not any(r.is_file for r in own)


def test_a_bad_reference_names_src_line_and_column() -> None:
    template = parse_template("a\n  {{ stronghold://x?scope=a b }}", "a.tmpl", "a")
    with pytest.raises(ConfigError, match=r"^template a\.tmpl line 2, column 3: bad scope 'a b'$"):
        resolve_references([template], [])


@pytest.mark.parametrize("inner", ["stronghold://x?scope=" + "a b" * 700, "stronghold://x?scope=" + "a" * 5000])
def test_a_long_reference_never_makes_a_long_message(inner: str) -> None:
    with pytest.raises(ConfigError) as raised:
        template = parse_template("{{ " + inner + " }}", "a.tmpl", "a")
        resolve_references([template], [])
    assert raised.value.message.startswith("template a.tmpl line 1, column 1: ")
    assert len(raised.value.message) < 300
