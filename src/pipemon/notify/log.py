"""The built-in `log` receiver: each notification as one line on the terminal (stderr), no outside service.

It is what `pipemon demo` routes to, so a newcomer sees alerting work (pages, groups, resolves) in the
terminal; it is delivered and recorded like any other channel, so the notifications API and the alerts
page show the same messages. The line is safe text: whatever a client sent (a pipeline name, an error) is
printed with control characters escaped, so nothing it holds can move the cursor or recolour the terminal.

    receivers:
      - name: terminal
        log: {}                    # send_resolved: true by default
"""
from __future__ import annotations

import sys
import threading
from typing import Any, ClassVar

import httpx

from pipemon.model import Notification, NotifyAction
from pipemon.notify.base import Channel, ChannelConfig
from pipemon.notify.render import label, oneline, title, truncate
from pipemon.notify.render import iso as iso_time

LINE_LIMIT = 400   # characters of the headline: one terminal line or two, never a screenful
_LOCK = threading.Lock()  # one line at a time, whole, whichever receiver lane writes it


class LogConfig(ChannelConfig):
    send_resolved: bool = True


def safe(text: str) -> str:
    """`text` on one line with every control character (ANSI escapes, CR, NUL, bidi overrides) escaped."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


class LogChannel(Channel[LogConfig]):
    kind = "log"
    config_model = LogConfig
    default_rate: ClassVar[tuple[float, int]] = (1000.0, 10_000)  # a terminal takes what it is given

    def build(self, n: Notification) -> list[str]:
        """`pipemon 2026-12-03T08:10:00Z FIRING [error] terminal: dbt/shop failed: model orders …`"""
        head = title(n)
        if len(n.alerts) > 1:  # a group: what it is, then its worst alert's headline
            first = max(n.alerts, key=lambda a: a.severity.level)
            head = f"{head} ({len(n.alerts)} alerts): {first.summary}"
        head = truncate(safe(oneline(head)), LINE_LIMIT)
        worst = max((a.severity for a in n.alerts), key=lambda s: s.level, default=None)
        sev = f" [{worst.value}]" if worst is not None and n.action is not NotifyAction.RESOLVE else ""
        return [f"pipemon {iso_time(n.time)} {label(n)}{sev} {safe(n.receiver)}: {head}"]

    def send(self, n: Notification, http: httpx.Client, stream: Any = None) -> None:
        out = stream or sys.stderr  # looked up at send time: a test's capture or a redirected stderr
        lines = self.build(n)
        try:
            with _LOCK:
                for line in lines:
                    out.write(line + "\n")
                out.flush()
        except (OSError, ValueError) as e:  # a closed or broken stderr: retrying cannot help
            raise self.error(f"cannot write to the terminal: {e}", permanent=True) from None
