"""Label matchers in Alertmanager's syntax: `team="payments"`, `severity=~"critical|error"`, `kind!="info"`,
`pipeline!~"legacy/.*"`. Regexes are anchored at both ends, as in Alertmanager."""
from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

_MATCHER = re.compile(r'^\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*'
                      r'(?:"((?:[^"\\]|\\.)*)"|((?:[^"\s=~!][^"\s]*)?))\s*$')


class Op(enum.StrEnum):
    EQ = "="
    NE = "!="
    RE = "=~"
    NRE = "!~"


@dataclass(frozen=True)
class Matcher:
    name: str
    op: Op
    value: str
    _re: re.Pattern | None = field(default=None, compare=False, repr=False)

    @staticmethod
    def parse(text: str) -> Matcher:
        m = _MATCHER.match(text)
        if m is None:
            raise ValueError(f"not a matcher: {text!r} (expected name=\"value\", name!=\"value\", "
                             "name=~\"regex\" or name!~\"regex\")")
        name, op, quoted, bare = m.groups()
        value = bytes(quoted, "utf-8").decode("unicode_escape") if quoted is not None else bare
        op = Op(op)
        rx = None
        if op in (Op.RE, Op.NRE):
            try:
                rx = re.compile(f"^(?:{value})$")
            except re.error as e:
                raise ValueError(f"bad regex in {text!r}: {e}") from None
        return Matcher(name, op, value, rx)

    def matches(self, labels: Mapping[str, str]) -> bool:
        v = labels.get(self.name, "")
        if self.op is Op.EQ:
            return v == self.value
        if self.op is Op.NE:
            return v != self.value
        assert self._re is not None
        hit = self._re.match(v) is not None
        return hit if self.op is Op.RE else not hit

    def __str__(self) -> str:
        return f'{self.name}{self.op.value}"{self.value}"'


def parse_all(texts: Iterable[str]) -> tuple[Matcher, ...]:
    return tuple(Matcher.parse(t) for t in texts)


def match_all(matchers: Iterable[Matcher], labels: Mapping[str, str]) -> bool:
    return all(m.matches(labels) for m in matchers)
