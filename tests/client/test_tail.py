"""The output tail a wrapped command's report carries: bounded, readable, starting on a line (pure)."""
from __future__ import annotations

from pipemon_client.wrapper import TAIL_BYTES, OutputTail, exit_status


def tail_of(*chunks: bytes, keep: int = 65_536, secrets=()) -> str:
    t = OutputTail(keep)
    for c in chunks:
        t.feed(c)
    return t.text(secrets)


def test_short_output_is_sent_whole():
    assert tail_of(b"hello\n", b"done\n") == "hello\ndone\n"


def test_long_output_keeps_the_last_lines_within_the_bound():
    lines = b"".join(b"line %06d of the job's output\n" % i for i in range(100_000))
    text = tail_of(*(lines[i:i + 4096] for i in range(0, len(lines), 4096)))
    assert len(text.encode()) <= TAIL_BYTES + len("…\n".encode())
    assert text.startswith("…\nline ") and text.endswith("line 099999 of the job's output\n")
    assert text.count("\n") > 100  # many whole lines, not one fragment


def test_a_cut_never_splits_a_character():
    text = tail_of(("é" * 5000 + "\n" + "😀" * 3000).encode())
    assert "\ufffd" not in text and text.endswith("😀") and len(text.encode()) <= TAIL_BYTES + 4


def test_one_huge_line_is_bounded_too():
    text = tail_of(b"x" * 10_000_000)
    assert text == "…\n" + "x" * TAIL_BYTES


def test_control_characters_ansi_colours_and_progress_bars_are_cleaned():
    raw = b"\x1b[31mERROR\x1b[0m bad\x00row\x07\n 10%\r 50%\r100%\nend\r\n"
    assert tail_of(raw) == "ERROR bad\ufffdrow\ufffd\n100%\nend\n"


def test_invalid_utf8_is_replaced_not_fatal():
    assert tail_of(b"caf\xe9 \xff\n") == "caf\ufffd \ufffd\n"


def test_secrets_are_redacted_before_the_cut():
    # the secret straddles where a naive 4 KB cut would fall: redaction runs on all that is kept first
    secret = "S3CRET-" + "z" * 40
    body = b"y" * 100 + f"password={secret}\n".encode() + b"tail line\n" * 400
    text = tail_of(body, secrets=[secret])
    assert "S3CRET" not in text and "z" * 20 not in text


def test_exit_status_of_a_signal_is_128_plus_n():
    assert (exit_status(0), exit_status(1), exit_status(-15), exit_status(-9)) == (0, 1, 143, 137)
