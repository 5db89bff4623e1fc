"""The command wrapper: run a command and report it as a run (`pipemon-run`, and `pipemon run` in the full
distribution).

    pipemon-run [--url URL] [--token TOKEN] [--team TEAM] NAMESPACE/NAME -- COMMAND [ARG ...]

START before the command; after it, COMPLETE or FAIL with the exit code (metric `exit_code`) and the tail
of its output (stdout and stderr merged; the last TAIL_BYTES, secrets redacted). The output is passed on
live, the exit code is passed through (128+N for a command killed by signal N), and a pipemon that is
down never stops the command: the reports give up after a bounded time.
"""
from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import BinaryIO

from pipemon_client.redact import env_secrets, scrub_output
from pipemon_client.sdk import Client, split_pipeline

TAIL_BYTES = 4096    # of UTF-8 sent as the run's log: enough for the error, small enough for a notification
KEEP_BYTES = 65_536  # of raw output kept meanwhile; redaction runs on all of it, so a secret that the cut
                     # to TAIL_BYTES goes through is already replaced
_FORWARDED = (signal.SIGTERM, signal.SIGHUP)  # SIGINT reaches the command from the terminal by itself


class OutputTail:
    """The last KEEP_BYTES of a byte stream, and the text of its tail, cleaned for a report."""

    def __init__(self, keep: int = KEEP_BYTES) -> None:
        self.keep = keep
        self.total = 0
        self._buf = bytearray()

    def feed(self, chunk: bytes) -> None:
        self.total += len(chunk)
        self._buf += chunk
        if len(self._buf) > 2 * self.keep:  # trim now and then, not at every chunk
            del self._buf[:-self.keep]

    def text(self, secrets: Sequence[str] = (), limit: int = TAIL_BYTES) -> str:
        """The output's last `limit` bytes of UTF-8, starting on a line when it was cut; secrets redacted,
        carriage-return overwrites (progress bars) resolved, control characters and ANSI colours removed."""
        text = bytes(self._buf[-self.keep:]).decode("utf-8", errors="replace")
        text = scrub_output(_printable(text), secrets)
        data = text.encode()
        if len(data) <= limit and self.total <= self.keep:
            return text
        cut = data[-limit:].decode("utf-8", errors="ignore")  # a character split by the cut is dropped
        nl = cut.find("\n")
        if 0 <= nl < len(cut) - 1:
            cut = cut[nl + 1:]  # start on a whole line
        return "…\n" + cut


_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[@-Z\\-_]")  # colours and cursor moves
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def _printable(text: str) -> str:
    text = _ANSI.sub("", text).replace("\r\n", "\n")
    text = "\n".join(line.rsplit("\r", 1)[-1] for line in text.split("\n"))  # what a terminal showed last
    # NUL and the other C0 controls (but tab and newline) would make the report invalid or unreadable
    return _CONTROL.sub("\ufffd", text)


def exit_status(returncode: int) -> int:
    """A shell's exit status for a child's return code: 128+N when signal N killed it."""
    return 128 - returncode if returncode < 0 else returncode


def _describe(returncode: int) -> str:
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"killed by {name} (exit {exit_status(returncode)})"
    return f"exit code {returncode}"


def run_command(client: Client, pipeline: str, command: Sequence[str], *, team: str | None = None,
                out: BinaryIO | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Run `command`, passing its output on to `out` (default: our stdout), and report the run.
    Returns the exit status to exit with."""
    out = out if out is not None else sys.stdout.buffer
    environ = os.environ if environ is None else environ
    secrets = [*env_secrets(environ), client.token or ""]
    run_id = str(uuid.uuid4())
    started = client.event(pipeline, "START", run_id, team=team)
    t0 = time.monotonic()
    try:
        proc = subprocess.Popen(list(command), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                env=dict(environ))
    except OSError as e:
        why = f"cannot start {command[0]!r}: {e.strerror or e}"
        client.event(pipeline, "FAIL", run_id, team=team, error={"message": why, "type": "ExitCode"},
                     duration_s=None if started else 0.0)
        print(f"pipemon: {why}", file=sys.stderr)
        return 127 if isinstance(e, FileNotFoundError) else 126  # as a shell: not found, not executable
    # Signals are for the command: passed on (SIGTERM, SIGHUP) or left to it (SIGINT, which the terminal
    # sends the command too), so that we live to report how it ended. Only the main thread can set handlers.
    previous = {}
    if threading.current_thread() is threading.main_thread():
        previous = {s: signal.signal(s, lambda signum, _f: proc.send_signal(signum)) for s in _FORWARDED}
        previous[signal.SIGINT] = signal.signal(signal.SIGINT, signal.SIG_IGN)
    tail = OutputTail()
    try:
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        while chunk := os.read(fd, 65_536):  # tee: the user sees the output live, we keep its tail
            tail.feed(chunk)
            try:
                out.write(chunk)
                out.flush()
            except (BrokenPipeError, ValueError):
                pass  # our reader went away; the command goes on and is still reported
        returncode = proc.wait()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    elapsed = time.monotonic() - t0
    fields = {"log": tail.text(secrets), "team": team, "metrics": {"exit_code": exit_status(returncode)},
              "duration_s": None if started else round(elapsed, 3)}  # without a START, say how long it took
    if returncode == 0:
        client.event(pipeline, "COMPLETE", run_id, **fields)
    else:
        client.event(pipeline, "FAIL", run_id, error={"message": _describe(returncode), "type": "ExitCode"},
                     **fields)
    verdict = "succeeded" if returncode == 0 else f"failed ({_describe(returncode)})"
    print(f"pipemon: {pipeline} {verdict} in {elapsed:.1f}s", file=sys.stderr)
    return exit_status(returncode)


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    command: list[str] = []
    if "--" in args:
        i = args.index("--")
        args, command = args[:i], args[i + 1:]
    ap = argparse.ArgumentParser(
        prog="pipemon-run", description="Run COMMAND and report it to pipemon as a run of PIPELINE: start, "
        "then success or failure with the exit code, duration and the tail of its output (secrets redacted). "
        "The exit code is passed through; a pipemon that is down never stops the command.",
        usage="pipemon-run [--url URL] [--token TOKEN] [--team TEAM] PIPELINE -- COMMAND [ARG ...]")
    ap.add_argument("pipeline", metavar="PIPELINE", help="namespace/name")
    ap.add_argument("--url", default=os.environ.get("PIPEMON_URL"),
                    help="pipemon service URL (default: $PIPEMON_URL, else http://127.0.0.1:8787)")
    ap.add_argument("--token", default=os.environ.get("PIPEMON_TOKEN"),
                    help="API token, sent as Authorization: Bearer (default: $PIPEMON_TOKEN)")
    ap.add_argument("--team", default=None, help="owning team")
    ns = ap.parse_args(args)
    if not command:
        ap.error("give the command after --, e.g. pipemon-run billing/nightly -- ./nightly.sh")
    try:
        split_pipeline(ns.pipeline)
        client = Client(ns.url, ns.token)
    except ValueError as e:
        ap.error(str(e))
    with client:
        code = run_command(client, ns.pipeline, command, team=ns.team)
    sys.exit(code)
