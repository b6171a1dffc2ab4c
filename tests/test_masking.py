"""--mask-output: token values in the child's stdout and stderr become <redacted:NAME>."""

from __future__ import annotations

import itertools
import random
import signal
import textwrap

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest import PYTHON, TestProxy, base_env, read_line, run, start
from injector.delivery.masking import Masker

TOKEN = "sk_live_ABCDEFGHIJ0123456789"


def feed_all(masker: Masker, pieces: list[bytes]) -> bytes:
    out, carry = b"", b""
    for piece in pieces:
        written, carry = masker.feed(carry, piece)
        out += written
    return out + carry


def split_at(text: bytes, cuts: list[int]) -> list[bytes]:
    """`text` cut at the given offsets (taken modulo its length)."""
    bounds = sorted({0, len(text), *(c % (len(text) + 1) for c in cuts)})
    return [text[a:b] for a, b in itertools.pairwise(bounds)]


def masked_naively(text: bytes, tokens: list[str]) -> bytes:
    """The reference answer: every token replaced, longest first, token i named N<i>."""
    for index, token in sorted(enumerate(tokens), key=lambda item: -len(item[1])):
        text = text.replace(token.encode(), f"<redacted:N{index}>".encode())
    return text


def test_a_token_split_at_any_point_is_masked() -> None:
    masker = Masker()
    masker.add(TOKEN, "STRIPE_KEY")
    text = f"key={TOKEN};".encode()
    for cut in range(len(text) + 1):
        assert feed_all(masker, [text[:cut], text[cut:]]) == b"key=<redacted:STRIPE_KEY>;"


@given(st.binary(max_size=300), st.lists(st.integers(0, 300), max_size=4))
def test_bytes_without_tokens_pass_through_untouched(data: bytes, cuts: list[int]) -> None:
    masker = Masker()
    masker.add(TOKEN, "K")
    if TOKEN.encode() in data:
        return
    bounds = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    pieces = [data[a:b] for a, b in itertools.pairwise(bounds)]
    assert feed_all(masker, pieces) == data


def test_only_a_possible_token_start_is_held_back() -> None:
    masker = Masker()
    masker.add(TOKEN, "K")
    written, carry = masker.feed(b"", b"hello sk_li")
    assert (written, carry) == (b"hello ", b"sk_li")
    written, carry = masker.feed(carry, b"ght\n")
    assert (written, carry) == (b"sk_light\n", b"")


def test_longest_token_first_and_every_token_kept() -> None:
    masker = Masker()
    masker.add("abcdefgh", "SHORT")
    masker.add("abcdefghijkl", "LONG")
    masker.add("old-value-1", "K")
    masker.add("new-value-2", "K")
    assert feed_all(masker, [b"abcdefghijkl abcdefgh old-value-1 new-value-2"]) == (
        b"<redacted:LONG> <redacted:SHORT> <redacted:K> <redacted:K>"
    )


WRITER = textwrap.dedent(
    """
    import os, sys, time
    token = os.environ["K"].encode()
    os.write(1, b"ready\\n")
    os.write(1, b"env: " + token + b"\\n")
    os.write(2, b"err: " + token + b"\\n")
    os.write(1, b"split: " + token[:7])
    time.sleep(0.05)
    os.write(1, token[7:] + b"\\n")
    if sys.argv[1:] == ["binary"]:
        os.write(1, bytes(range(256)) + b"\\n")
    """
)


def test_child_output_is_masked_in_both_streams(proxy: TestProxy) -> None:
    result = run(["--mask-output", "--", PYTHON, "-c", WRITER], base_env(proxy, K="stronghold://stripe/live"))
    assert result.code == 0, result.stderr
    token = proxy.issued_values[0]
    assert token not in result.stdout + result.stderr
    lines = result.stdout.split("\n")
    assert lines[:3] == ["ready", "env: <redacted:K>", "split: <redacted:K>"]
    assert "err: <redacted:K>" in result.stderr


def test_binary_output_is_passed_through_byte_for_byte(proxy: TestProxy) -> None:
    import subprocess

    from conftest import STRONGHOLD

    done = subprocess.run(
        [STRONGHOLD, "--mask-output", "--", PYTHON, "-c", WRITER, "binary"],
        env=base_env(proxy, K="stronghold://stripe/live"),
        capture_output=True,
        timeout=60,
    )
    assert bytes(range(256)) + b"\n" in done.stdout


def test_lines_arrive_while_the_child_runs_and_rotated_values_are_masked(make_proxy, processes) -> None:
    proxy = make_proxy(ttl=2)
    child = textwrap.dedent(
        """
        import os, signal, sys
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        os.write(1, ("token " + os.environ["K"] + "\\n").encode())
        signal.pause()
        """
    )
    process = start(["--mask-output", "--", PYTHON, "-c", child], base_env(proxy, K="stronghold://stripe/live"))
    processes.append(process)
    assert read_line(process).strip() == "token <redacted:K>", "line by line, not held until exit"
    assert read_line(process, timeout=30).strip() == "token <redacted:K>", "after the restart with a new value"
    assert len(proxy.issued_values) >= 2
    process.send_signal(signal.SIGTERM)
    out, _ = process.communicate(timeout=20)
    for value in proxy.issued_values:
        assert value not in out


def test_mask_output_cannot_go_with_no_refresh() -> None:
    result = run(["--mask-output", "--no-refresh", "--", "true"], base_env())
    assert result.code == 64
    assert "--mask-output" in result.stderr


@given(st.lists(st.integers(5, 60), min_size=1, max_size=4), st.lists(st.integers(0, 600), max_size=6), st.randoms())
def test_output_split_anywhere_is_masked_as_if_it_came_at_once(lengths: list[int], cuts: list[int], rng) -> None:
    """Short tokens (the prefix set) and ones over 16 bytes (the first-16-bytes search) alike."""
    masker = Masker()
    # Distinct heads ("T<i>_") and hex bodies: no token overlaps another, so one answer is right.
    tokens = [f"T{i}_" + "".join(rng.choice("0123456789abcdef") for _ in range(n)) for i, n in enumerate(lengths)]
    for index, token in enumerate(tokens):
        masker.add(token, f"N{index}")
    parts = [rng.choice([*tokens, "x", "\n", "T", "T0_", tokens[0][:-1]]) for _ in range(12)]
    text = "".join(parts).encode()
    assert feed_all(masker, split_at(text, cuts)) == masked_naively(text, tokens)


def test_masker_memory_is_linear_and_rotated_values_are_dropped_when_their_lease_ends() -> None:
    now = [0.0]
    masker = Masker(clock=lambda: now[0])
    big = "P" * 20000
    masker.add(big, "PEM", expires_at=10.0)
    assert len(masker._short_prefixes) == 15  # not 20 000 prefixes of up to 20 KB each
    masker.add("Q" * 20000, "PEM", expires_at=20.0)
    assert feed_all(masker, [big.encode()]) == b"<redacted:PEM>", "superseded, lease still running"
    now[0] = 11.0
    masker.add("R" * 20000, "PEM", expires_at=30.0)
    assert big.encode() not in masker._tokens and len(masker._tokens) == 2


@pytest.mark.parametrize("length", [8, 10, 11, 12, 18, 19, 40, 100, 515, 516, 20000])
def test_a_token_is_found_at_every_alignment_of_the_sampled_search(length: int) -> None:
    """The search reads the buffer at a stride: a token must be found wherever it starts."""
    token = "".join(random.Random(length).choice("abcdefghijklmnop0123456789") for _ in range(length))
    masker = Masker()
    masker.add(token, "K")
    for offset in range(0, 1100):
        text = b"x" * offset + token.encode() + b"\n"
        assert masker.feed(b"", text) == (b"x" * offset + b"<redacted:K>\n", b""), offset


@given(
    st.lists(st.integers(5, 1200), min_size=1, max_size=30),
    st.lists(st.integers(0, 40000), max_size=6),
    st.randoms(use_true_random=False),
)
def test_many_tokens_of_every_length_class_split_anywhere_are_masked(lengths: list[int], cuts: list[int], rng) -> None:
    """Tokens in several stride classes and the one-by-one class at once, equal to masking naively."""
    masker = Masker()
    tokens = [f"T{i}_" + "".join(rng.choice("0123456789abcdef") for _ in range(n)) for i, n in enumerate(lengths)]
    for index, token in enumerate(tokens):
        masker.add(token, f"N{index}")
    parts = [
        rng.choice([*tokens, "x" * rng.randint(0, 9), "\n", token[: rng.randint(0, len(token))]])
        for token in tokens * 2
    ]
    text = "".join(parts).encode()
    assert feed_all(masker, split_at(text, cuts)) == masked_naively(text, tokens)


def test_the_pieces_held_per_token_are_bounded() -> None:
    """Memory linear in the token bytes: at most MAX_STRIDE pieces per token, whatever its length."""
    from injector.delivery.masking import MAX_STRIDE

    masker = Masker()
    for index in range(20):
        masker.add(
            f"{index:02d}" + "".join(random.Random(index).choice("abcdef0123456789") for _ in range(20000)), f"K{index}"
        )
    held = sum(len(index.pieces) for index in masker._strides.values())
    assert held <= 20 * MAX_STRIDE


def test_a_value_shorter_than_8_characters_is_not_masked_and_one_warning_names_it(make_proxy) -> None:
    """Masking a one-character token would replace every such character in the output: that reveals it."""
    proxy = make_proxy(rotate=False)
    proxy.secrets["tiny/one"] = "q"
    env = base_env(proxy, T="stronghold://tiny/one", K="stronghold://stripe/live")
    result = run(["--mask-output", "--", "sh", "-c", 'echo "quiet queue $K"'], env)
    assert result.code == 0, result.stderr
    assert result.stdout == "quiet queue <redacted:K>\n", "the long token masked, the short one left alone"
    warnings = [line for line in result.stderr.splitlines() if "shorter than 8 characters" in line]
    assert len(warnings) == 1 and "T" in warnings[0].split("name=")[-1], result.stderr


def test_the_masker_refuses_values_under_the_minimum() -> None:
    from injector.delivery.masking import MIN_MASKED_LENGTH

    masker = Masker()
    assert MIN_MASKED_LENGTH == 8
    assert masker.add("1234567", "SHORT") is False
    assert masker.add("12345678", "EIGHT") is True
    assert feed_all(masker, [b"1234567 12345678"]) == b"1234567 <redacted:EIGHT>"
