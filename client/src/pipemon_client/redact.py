"""Keeping secrets out of text that leaves the process: the rules shared by the server (notifications,
errors, logs: `pipemon.notify.redact` builds on these) and the client (a command's output tail).

`redact()` replaces secrets that are known by value; `scrub_output()` also finds the ones that are not,
by their shape (credentials in URLs, `password=…`, Authorization headers, well-known token formats), and
the values of the environment's secret-named variables, which a command is most likely to print.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from urllib.parse import quote, urlsplit, urlunsplit

REDACTED = "<redacted>"


def redact(text: str, secrets: Iterable[str]) -> str:
    """`text` with each secret, raw or URL-encoded, replaced by <redacted> (longest first, so a URL
    goes whole before its token does)."""
    variants = {v for s in secrets if s for v in (s, quote(s, safe=""))}
    for s in sorted(variants, key=len, reverse=True):
        text = text.replace(s, REDACTED)
    return text


def redact_url(url: str) -> str:
    """scheme://host[:port] and nothing else: credentials, path and query may all hold tokens."""
    try:
        p = urlsplit(url)
        host = p.hostname or ""
        port = p.port
    except ValueError:
        return REDACTED
    netloc = (f"[{host}]" if ":" in host else host) + (f":{port}" if port else "")
    path = "/" + REDACTED if p.path.strip("/") or p.query or p.fragment else p.path
    return urlunsplit((p.scheme, netloc, path, "", ""))


def url_secrets(url: str) -> list[str]:
    """What of a secret URL must not appear anywhere: the URL, its path and query, its password, and
    its long path segments and query values (the tokens)."""
    p = urlsplit(url)
    out = [url]
    if p.path.strip("/") or p.query:
        out.append(p.path + (f"?{p.query}" if p.query else ""))
    if p.password:
        out.append(p.password)
    out += [s for s in re.split(r"[/?&=]", f"{p.path}?{p.query}") if len(s) >= 16]
    return out


# --- secrets found by their shape, in a command's output ----------------------------------------------

# An environment variable whose name says it holds a secret: DB_PASSWORD, GITHUB_TOKEN, AWS_SECRET_ACCESS_KEY.
_SECRET_NAME = re.compile(r"(^|_)(PASSWORD|PASSWD|PASS|SECRET|TOKEN|APIKEY|CREDENTIALS?|PRIVATE_?KEY|"
                          r"ACCESS_?KEY|API_?KEY|SIGNING_?KEY)(_|$)", re.IGNORECASE)
_MIN_SECRET = 6  # shorter values would replace ordinary words all over the output
_SECRET_WORD = r"(?:password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key)"

_SHAPES: list[tuple[re.Pattern[str], str | Callable[[re.Match[str]], str]]] = [
    # -----BEGIN RSA PRIVATE KEY----- … -----END RSA PRIVATE KEY----- (or its start, when the tail cut it)
    (re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(-----END [A-Z ]*PRIVATE KEY-----|\Z)", re.DOTALL),
     REDACTED),
    # scheme://user:password@host: the password
    (re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s:/@\"']*:)[^\s@/\"']+@"), rf"\g<1>{REDACTED}@"),
    # Authorization: Bearer … / Basic …
    (re.compile(r"\b(Bearer|Basic)(\s+)[A-Za-z0-9._~+/=-]{8,}", re.IGNORECASE), rf"\1\2{REDACTED}"),
    # password=…, "api_key": "…", token: …
    (re.compile(rf"""(\b[\w-]*{_SECRET_WORD}["']?\s*[=:]\s*["']?)(?!{REDACTED})[^\s"'&,;]+""", re.IGNORECASE),
     rf"\g<1>{REDACTED}"),
    # --password …, --api-key … (a command line echoed in the output)
    (re.compile(rf"""(\s--?[\w-]*{_SECRET_WORD}\s+["']?)(?!{REDACTED})[^\s"'&,;]+""", re.IGNORECASE),
     rf"\g<1>{REDACTED}"),
    # well-known token formats: AWS access key ids, GitHub, Slack, GitLab tokens
    (re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"), REDACTED),
    (re.compile(r"\bgh[pousr]_[A-Za-z0-9]{30,}\b"), REDACTED),
    (re.compile(r"\bglpat-[A-Za-z0-9_-]{20,}\b"), REDACTED),
    (re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}"), REDACTED),
    # webhook URLs whose path is the credential (Slack, Discord, Teams)
    (re.compile(r"https://(hooks\.slack\.com|discord(?:app)?\.com/api/webhooks|[\w.-]+\.webhook\.office\.com)"
                r"[^\s\"'<>]*"), lambda m: redact_url(m.group())),
]


def env_secrets(environ: Mapping[str, str]) -> list[str]:
    """The values of secret-named variables (long enough not to be ordinary words)."""
    return [v for k, v in environ.items() if _SECRET_NAME.search(k) and len(v) >= _MIN_SECRET]


def scrub_output(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` (a command's output) with known secrets and secret-shaped strings replaced by <redacted>."""
    text = redact(text, secrets)
    for pattern, repl in _SHAPES:
        text = pattern.sub(repl, text)
    return text
