"""What the client scrubs from a command's output before it leaves the host (pure, table-driven)."""
from __future__ import annotations

import pytest

from pipemon_client.redact import REDACTED, env_secrets, scrub_output

CASES = [
    # (output line, the secret that must go, what must stay)
    ("connecting to postgresql://etl:hunter2@db.internal:5432/sales", "hunter2",
     "postgresql://etl:<redacted>@db.internal:5432/sales"),
    ("curl -H 'Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.e30.abc' https://api",
     "eyJhbGciOiJIUzI1NiJ9.e30.abc", "Authorization: Bearer <redacted>"),
    ("retrying with password=Sup3rS3cret! in 5s", "Sup3rS3cret!", "password=<redacted> in 5s"),
    ('config: {"api_key": "k-123456789", "region": "eu"}', "k-123456789", '"region": "eu"'),
    ("export DB_PASSWORD: 'xyzzy-42'", "xyzzy-42", "DB_PASSWORD: '<redacted>'"),
    ("mysql --password s3cr3tpw --host db", "s3cr3tpw", "--host db"),
    ("aws key AKIAIOSFODNN7EXAMPLE used", "AKIAIOSFODNN7EXAMPLE", "aws key <redacted> used"),
    ("token ghp_abcdefghijklmnopqrstuvwxyz0123456789 expired", "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
     "expired"),
    ("posting to https://hooks.slack.com/services/T000/B000/XXXXXXXXXXXXXXXX failed", "XXXXXXXXXXXXXXXX",
     "https://hooks.slack.com/<redacted> failed"),
    ("slack xoxb-1234567890-abcdefghij rejected", "xoxb-1234567890-abcdefghij", "rejected"),
    ("-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA\n-----END RSA PRIVATE KEY-----\nnext",
     "MIIEpAIBAAKCAQEA", "next"),
]


@pytest.mark.parametrize("line,secret,kept", CASES, ids=[c[0][:30] for c in CASES])
def test_secret_shapes_are_redacted_and_the_rest_kept(line, secret, kept):
    out = scrub_output(line)
    assert secret not in out and REDACTED in out
    assert kept in out


@pytest.mark.parametrize("line", [
    "loaded 1200 rows into sales.daily in 3.2s",
    "ERROR: relation \"orders_raw\" does not exist",
    "see https://docs.example.com/guide?page=2 for details",
    "token bucket refilled",  # the word alone, no value that looks like one
])
def test_ordinary_output_is_untouched(line):
    assert scrub_output(line) == line


def test_known_secrets_go_raw_and_url_encoded():
    out = scrub_output("auth a/b+c==  and a%2Fb%2Bc%3D%3D", ["a/b+c=="])
    assert out == f"auth {REDACTED}  and {REDACTED}"


def test_secret_named_environment_variables_are_secrets():
    env = {"DB_PASSWORD": "correct-horse", "GITHUB_TOKEN": "tok-abcdef",
           "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI", "PATH": "/usr/bin:/bin", "PASSWORD_MIN_LENGTH": "8",
           "HOME": "/root", "PGPASS": "short"}
    assert sorted(env_secrets(env)) == ["correct-horse", "tok-abcdef", "wJalrXUtnFEMI"]
    out = scrub_output("login as etl with correct-horse; home /root", env_secrets(env))
    assert out == f"login as etl with {REDACTED}; home /root"
