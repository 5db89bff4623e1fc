"""Tokens, roles and the ingest doors with auth on, on SQLite and PostgreSQL: the CLI against --db, the
admin API and who may use it, 401 for revoked and expired tokens, ping `?key=`, a team's ingest token
refused (nothing stored) on another team's pipeline, the per-token new-pipeline limit, and `serve --auth`."""
from __future__ import annotations

import hashlib
import subprocess
import sys
import time

import httpx
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from pipemon.access import Role
from pipemon.cli import app as cli
from pipemon.config import Limits, PipelineRule, Settings
from pipemon.store import tokens as tokens_store
from pipemon.store.audit import audit_log
from tests.conftest import T0, LiveServer, free_port


def native(pipeline, run_id="r1", type_="START", t=T0, **kw):
    return {"pipeline": pipeline, "run_id": run_id, "type": type_, "event_time": t, **kw}


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def make(client, name: str, role: Role, team: str | None = None, expires_at: float | None = None) -> str:
    """A token straight in the store (as `pipemon token create --db` makes it), honoured at once."""
    pm = client.app.state.pm
    with pm.db.begin() as conn:
        _, secret = tokens_store.create(conn, name=name, team=team, role=role, created_by="test",
                                        now=pm.clock.now(), expires_at=expires_at)
    client.app.state.keyring.load()
    return secret


def stored_events(client) -> int:
    with client.app.state.pm.db.connect() as conn:
        return conn.execute(sa.text("SELECT count(*) FROM events")).scalar_one()


def pipeline_keys(client) -> set[str]:
    with client.app.state.pm.db.connect() as conn:
        return set(conn.execute(sa.text("SELECT key FROM pipelines")).scalars())


def team_of(client, key: str) -> str | None:
    with client.app.state.pm.db.connect() as conn:
        return conn.execute(sa.text("SELECT team FROM pipelines WHERE key = :k"), {"k": key}).scalar_one()


# --- the CLI straight on the database ---------------------------------------------------------------------

def test_cli_creates_lists_and_revokes_against_the_database(db_url):
    run = CliRunner()
    r = run.invoke(cli, ["token", "create", "--org-admin", "--name", "root", "--db", db_url])
    assert r.exit_code == 0, r.output
    secret = r.stdout.strip().splitlines()[-1]
    assert secret.startswith("pm_") and len(secret) > 40 and " " not in secret
    r = run.invoke(cli, ["token", "create", "--team", "payments", "--role", "ingest", "--name", "pay-ol",
                         "--expires", "90d", "--db", db_url])
    assert r.exit_code == 0, r.output
    ingest_secret = r.stdout.strip().splitlines()[-1]

    engine = sa.create_engine(db_url)
    with engine.connect() as conn:
        rows = {r.name: r for r in conn.execute(sa.select(tokens_store.tokens))}
        dump = repr([tuple(r) for r in rows.values()])
    engine.dispose()
    assert rows["root"].hash == hashlib.sha256(secret.encode()).hexdigest()
    assert (rows["root"].team, rows["root"].role) == (None, "org-admin")
    assert (rows["pay-ol"].team, rows["pay-ol"].role) == ("payments", "ingest")
    assert 89 * 86400 < rows["pay-ol"].expires_at - rows["pay-ol"].created_at <= 90 * 86400
    assert secret not in dump and ingest_secret not in dump  # only the hashes are stored

    r = run.invoke(cli, ["token", "list", "--db", db_url], env={"COLUMNS": "250"})
    assert r.exit_code == 0 and "pay-ol" in r.stdout and "root" in r.stdout
    assert rows["root"].hash not in r.stdout and secret not in r.stdout
    r = run.invoke(cli, ["token", "revoke", "pay-ol", "--db", db_url])
    assert r.exit_code == 0 and "revoked" in r.stdout
    r = run.invoke(cli, ["token", "list", "--db", db_url], env={"COLUMNS": "250"})
    assert "revoked" in r.stdout
    r = run.invoke(cli, ["audit", "--db", db_url], env={"COLUMNS": "250"})
    assert r.exit_code == 0 and r.stdout.count("token.create") == 2 and "token.revoke" in r.stdout


@pytest.mark.parametrize("args, says", [
    (["--org-admin"], "--org-admin needs --name"),
    (["--org-admin", "--name", "x", "--team", "a"], "leave out --team"),
    (["--team", "a"], "give --role"),
    (["--team", "a", "--role", "boss"], "--role 'boss': expected one of"),
    (["--role", "viewer"], "a viewer token needs a team"),
    (["--team", "a", "--role", "viewer", "--expires", "soon"], "expires: expected a duration"),
    (["--team", "a", "--role", "viewer", "--name", "bad name!"], "token name 'bad name!'"),
])
def test_cli_bad_input_says_what_is_wrong(tmp_path, args, says):
    r = CliRunner().invoke(cli, ["token", "create", *args, "--db", f"sqlite:///{tmp_path / 'x.db'}"])
    assert r.exit_code in (1, 2) and says in r.output and "Traceback" not in r.output


def test_a_taken_name_is_a_clear_error(tmp_path):
    db = f"sqlite:///{tmp_path / 'x.db'}"
    args = ["token", "create", "--org-admin", "--name", "a", "--db", db]
    assert CliRunner().invoke(cli, args).exit_code == 0
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 1 and "exists already" in r.output


# --- when auth is on, and who gets in ---------------------------------------------------------------------

def test_auto_is_off_until_the_first_token_then_401_without_one(client):
    assert client.get("/api/v1/tokens").json() == {"items": []}  # off: the anonymous org admin
    assert client.post("/api/v1/events", json=native("etl/a")).status_code == 200
    r = client.post("/api/v1/tokens", json={"role": "org-admin", "name": "root"})
    assert r.status_code == 201, r.text
    secret = r.json()["token"]
    for path in ("/api/v1/tokens", "/api/v1/audit"):
        r = client.get(path)
        assert (r.status_code, r.json()["error"], r.headers["www-authenticate"]) == (401, "unauthorized",
                                                                                     "Bearer")
    assert client.post("/api/v1/events", json=native("etl/a", "r2")).status_code == 401
    big = b"[" + b" " * (20 << 20) + b"]"  # refused before the body is read: a stranger's 20 MB costs nothing
    assert client.post("/api/v1/events", content=big).status_code == 401
    assert client.get("/api/v1/tokens", headers=bearer("pm_not-a-token")).status_code == 401
    assert client.get("/api/v1/tokens", headers={"Authorization": f"Basic {secret}"}).status_code == 401
    assert client.get("/api/v1/tokens", headers=bearer(secret)).status_code == 200
    client.cookies.set("pipemon_token", secret)  # the dashboard login's cookie
    assert client.get("/api/v1/tokens").status_code == 200
    client.cookies.clear()
    assert client.get("/healthz").status_code == 200  # the probes stay open


def test_revoked_and_expired_tokens_are_refused(client):
    pm = client.app.state.pm
    root = make(client, "root", Role.ORG_ADMIN)
    short = make(client, "short", Role.VIEWER, "a", expires_at=pm.clock.now() + 3600)
    assert client.get("/api/v1/tokens", headers=bearer(root)).status_code == 200
    assert client.post("/api/v1/events", json=native("etl/x"), headers=bearer(short)).status_code == 403
    pm.clock.advance(3601)
    r = client.post("/api/v1/events", json=native("etl/x"), headers=bearer(short))
    assert (r.status_code, r.json()["message"]) == (401, "the token 'short' is expired")

    r = client.delete("/api/v1/tokens/root", headers=bearer(root))
    assert r.status_code == 200 and r.json()["state"] == "revoked"
    r = client.get("/api/v1/tokens", headers=bearer(root))
    assert (r.status_code, r.json()["message"]) == (401, "the token 'root' is revoked")


def test_a_revoke_by_another_process_is_honoured_within_seconds(client):
    pm = client.app.state.pm
    secret = make(client, "a-admin", Role.ADMIN, "a")
    assert client.get("/api/v1/tokens", headers=bearer(secret)).status_code == 200
    with pm.db.begin() as conn:  # as `pipemon token revoke a-admin --db …` does, outside the server
        tokens_store.revoke(conn, "a-admin", pm.clock.now())
    t0 = time.monotonic()
    while client.get("/api/v1/tokens", headers=bearer(secret)).status_code == 200:
        assert time.monotonic() - t0 < 6, "a revoked token was still honoured after 6 s"
        time.sleep(0.1)


def test_tokens_keep_working_while_the_database_is_away(client, caplog):
    from pipemon.api.keyring import Keyring
    secret = make(client, "a-admin", Role.ADMIN, "a")
    ring: Keyring = client.app.state.keyring
    ring.engine = sa.create_engine("postgresql+psycopg://nobody@127.0.0.1:1/none",
                                   connect_args={"connect_timeout": 1})
    try:
        ring.load()
        ring.load()
        assert client.get("/api/v1/tokens", headers=bearer("pm_unknown")).status_code == 401
        assert ring.resolve(_request(secret)).name == "a-admin"
        warnings = [r for r in caplog.records if "could not read the tokens" in r.getMessage()]
        assert len(warnings) == 1  # said once, not at every retry
    finally:
        ring.engine.dispose()
        ring.engine = client.app.state.pm.db


def _request(secret: str):
    from starlette.requests import Request
    return Request({"type": "http", "method": "GET", "path": "/api/v1/tokens", "query_string": b"",
                    "headers": [(b"authorization", f"Bearer {secret}".encode())], "client": ("10.1.2.3", 5)})


def test_admin_api_roles(client):
    root = make(client, "root", Role.ORG_ADMIN)
    a_admin = make(client, "a-admin", Role.ADMIN, "a")
    make(client, "b-admin", Role.ADMIN, "b")
    a_viewer = make(client, "a-viewer", Role.VIEWER, "a")
    a_operator = make(client, "a-operator", Role.OPERATOR, "a")
    a_ingest = make(client, "a-ingest", Role.INGEST, "a")
    a = bearer(a_admin)

    r = client.post("/api/v1/tokens", json={"role": "ingest", "name": "a-cron"}, headers=a)
    assert r.status_code == 201 and (r.json()["team"], r.json()["role"]) == ("a", "ingest")
    created = r.json()["token"]
    for body, says in (({"role": "viewer", "team": "b"}, "manages team 'a'"),
                       ({"role": "org-admin"}, "only an org admin"),
                       ({"role": "metrics"}, "only an org admin")):
        r = client.post("/api/v1/tokens", json=body, headers=a)
        assert r.status_code == 403 and says in r.json()["message"], r.text
    for body, status in (({"role": "viewer", "name": "a-cron"}, 409), ({"role": "nope"}, 422),
                         ({"role": "viewer", "expires": "-1d"}, 400),
                         ({"role": "viewer", "name": "x y"}, 400)):
        assert client.post("/api/v1/tokens", json=body, headers=a).status_code == status, body

    listed = client.get("/api/v1/tokens", headers=a).json()["items"]
    assert {t["name"] for t in listed} == {"a-admin", "a-viewer", "a-operator", "a-ingest", "a-cron"}
    everything = client.get("/api/v1/tokens", headers=bearer(root)).text
    assert "b-admin" in everything and "root" in everything
    with client.app.state.pm.db.connect() as conn:
        hashes = list(conn.execute(sa.select(tokens_store.tokens.c.hash)).scalars())
    assert not any(h in everything or h in created for h in hashes)

    assert client.delete("/api/v1/tokens/b-admin", headers=a).status_code == 404  # another team's
    assert client.delete("/api/v1/tokens/root", headers=a).status_code == 404
    assert client.delete("/api/v1/tokens/nobody", headers=a).status_code == 404
    assert client.delete("/api/v1/tokens/a-cron", headers=a).status_code == 200
    for weak in (a_viewer, a_operator, a_ingest):
        for method, path in (("GET", "/api/v1/tokens"), ("GET", "/api/v1/audit"),
                             ("DELETE", "/api/v1/tokens/a-admin")):
            assert client.request(method, path, headers=bearer(weak)).status_code == 403, (method, path)
        assert client.post("/api/v1/tokens", json={"role": "viewer"}, headers=bearer(weak)).status_code == 403

    client.post("/api/v1/tokens", json={"role": "viewer", "team": "b", "name": "b-view"},
                headers=bearer(root))
    mine = client.get("/api/v1/audit", headers=a).json()["items"]
    assert [(e["action"], e["target"], e["actor"], e["team"]) for e in mine] == [
        ("token.revoke", "a-cron", "a-admin", "a"), ("token.create", "a-cron", "a-admin", "a")]
    assert mine[0]["address"] == "testclient"
    everything = client.get("/api/v1/audit", headers=bearer(root)).json()["items"]
    assert ("token.create", "b-view", "root", "b") in [(e["action"], e["target"], e["actor"], e["team"])
                                                        for e in everything]


def test_changes_by_hand_are_audited_with_the_token_name(client):
    make(client, "root", Role.ORG_ADMIN)
    op = make(client, "pay-oncall", Role.OPERATOR, "payments")
    r = client.post("/api/v1/silences", headers=bearer(op), json={
        "matchers": ['team="payments"'], "duration": "2h", "created_by": "someone else", "comment": "deploy"})
    assert r.status_code == 200, r.text
    sid = r.json()["id"]
    assert client.delete(f"/api/v1/silences/{sid}", headers=bearer(op)).status_code == 200
    with client.app.state.pm.db.connect() as conn:
        rows = list(conn.execute(sa.select(audit_log).order_by(audit_log.c.id)))
    assert [(r.action, r.target, r.actor, r.actor_team, r.address) for r in rows] == [
        ("silence.add", str(sid), "pay-oncall", "payments", "testclient"),
        ("silence.expire", str(sid), "pay-oncall", "payments", "testclient")]
    assert '"comment":"deploy"' in rows[0].detail


# --- the ingest doors -------------------------------------------------------------------------------------

def test_ping_takes_the_token_as_key(client):
    make(client, "root", Role.ORG_ADMIN)
    cron = make(client, "a-cron", Role.INGEST, "a")
    assert client.get("/ping/cron/backup").status_code == 401
    assert client.get(f"/ping/cron/backup?key={cron}").text == "OK\n"
    assert client.post(f"/ping/cron/backup/fail?key={cron}", content=b"disk full").status_code == 200
    assert client.get("/ping/cron/backup", headers=bearer(cron)).status_code == 200
    assert client.get("/ping/cron/backup?key=pm_wrong").status_code == 401
    # `?key=` is for the ping doors only: elsewhere a URL that ends up in logs must not carry a token
    assert client.post(f"/api/v1/events?key={cron}", json=native("cron/backup")).status_code == 401
    assert team_of(client, "cron/backup") == "a"


def test_ingest_token_writes_only_its_teams_pipelines(client):
    pm = client.app.state.pm
    client.post("/api/v1/events", json=native("old/unowned"))  # before any token: nobody's
    make(client, "root", Role.ORG_ADMIN)
    a = bearer(make(client, "a-ingest", Role.INGEST, "a"))
    b = bearer(make(client, "b-ingest", Role.INGEST, "b"))
    viewer = bearer(make(client, "a-viewer", Role.VIEWER, "a"))

    assert client.post("/api/v1/events", json=native("etl/a1"), headers=a).status_code == 200
    assert team_of(client, "etl/a1") == "a"  # a new pipeline naming no owner is its token's team's
    before = (stored_events(client), pipeline_keys(client))
    for body in ([native("etl/b-new"), native("etl/a1", "r9")],   # a batch is all-or-nothing
                 native("etl/a1", "r2", "COMPLETE", T0 + 5),
                 native("etl/b-x", team="a")):                   # names another team as the owner
        r = client.post("/api/v1/events", json=body, headers=b)
        assert (r.status_code, r.json()["error"]) == (403, "forbidden"), r.text
        assert "pipeline 'etl/" in r.json()["message"] and "b-ingest" in r.json()["message"]
    assert (stored_events(client), pipeline_keys(client)) == before
    r = client.post("/api/v1/events", json=native("etl/a2", team="b"), headers=a)  # a would give it to b
    assert r.status_code == 403 and "would belong to team 'b'" in r.json()["message"]
    assert client.post("/api/v1/events", json=native("etl/a3"), headers=viewer).status_code == 403
    assert (stored_events(client), pipeline_keys(client)) == before

    assert client.post("/api/v1/events", json=native("old/unowned", "r2"), headers=a).status_code == 200
    assert team_of(client, "old/unowned") == "a"  # adopted, and the adoption is in the audit log
    with pm.db.connect() as conn:
        adopt = conn.execute(sa.select(audit_log).where(audit_log.c.action == "pipeline.adopt")).one()
    assert (adopt.target, adopt.actor, adopt.team) == ("old/unowned", "a-ingest", "a")
    assert client.post("/api/v1/events", json=native("old/unowned", "r3"), headers=b).status_code == 403


@pytest.fixture
def settings():
    return Settings(pipelines=(PipelineRule(match="cfg/*", team="b"),),
                    limits=Limits(new_pipelines_per_minute=3))


def test_config_owner_wins_and_the_new_pipeline_limit(client):
    make(client, "root", Role.ORG_ADMIN)
    a = bearer(make(client, "a-ingest", Role.INGEST, "a"))
    r = client.post("/api/v1/events", json=native("cfg/x"), headers=a)  # the config gives cfg/* to team b
    assert r.status_code == 403 and "cfg/x" in r.json()["message"]

    assert client.post("/api/v1/events", json=[native(f"etl/p{i}") for i in range(3)], headers=a).json() == \
        {"accepted": 3, "duplicates": 0}
    before = (stored_events(client), pipeline_keys(client))
    r = client.post("/api/v1/events", json=[native("etl/p0", "r2"), native("etl/p3")], headers=a)
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
    assert "new_pipelines_per_minute" in r.json()["message"]
    r = client.post("/api/v1/lineage", headers=a, json={
        "eventType": "START", "eventTime": "2026-09-21T10:00:00Z", "producer": "x",
        "run": {"runId": "3f1d8a5e-1b2c-4d3e-8f9a-0b1c2d3e4f50"}, "job": {"namespace": "ol", "name": "new"}})
    assert r.status_code == 429  # the fast path answers the same
    assert (stored_events(client), pipeline_keys(client)) == before
    # writing pipelines that exist costs nothing of the limit
    assert client.post("/api/v1/events", json=native("etl/p1", "r2"), headers=a).status_code == 200
    r = client.post("/api/v1/events", json=[native(f"etl/q{i}") for i in range(4)], headers=a)
    assert r.status_code == 429 and "more than the 3 a minute" in r.json()["message"]


# --- pipemon serve --auth ---------------------------------------------------------------------------------

def test_serve_refuses_auth_off_on_a_public_address(tmp_path):
    out = subprocess.run([sys.executable, "-m", "pipemon", "serve", "--host", "0.0.0.0", "--auth", "off",
                          "--db", f"sqlite:///{tmp_path / 'x.db'}", "--port", str(free_port())],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 2
    assert "not a loopback address" in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "x.db").exists()  # refused before touching anything
    out = subprocess.run([sys.executable, "-m", "pipemon", "serve", "--auth", "maybe"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 2 and "expected on, off or auto" in out.stderr


def test_serve_auth_modes(tmp_path):
    db = f"sqlite:///{tmp_path / 'pm.db'}"
    server = LiveServer(db, tmp_path).start()
    try:
        assert "auth: off" in server.logs()
        assert httpx.get(server.url + "/api/v1/tokens").status_code == 200
        r = CliRunner().invoke(cli, ["token", "create", "--org-admin", "--name", "root", "--db", db])
        secret = r.stdout.strip().splitlines()[-1]
        t0 = time.monotonic()  # the running server notices the first token and switches auth on
        while httpx.get(server.url + "/api/v1/tokens").status_code != 401:
            assert time.monotonic() - t0 < 6, "auth did not switch on within 6 s of the first token"
            time.sleep(0.1)
        assert httpx.get(server.url + "/api/v1/tokens", headers=bearer(secret)).status_code == 200
    finally:
        server.stop()
    other = f"sqlite:///{tmp_path / 'other.db'}"
    r = CliRunner().invoke(cli, ["token", "create", "--team", "a", "--role", "ingest", "--db", other])
    ingest = r.stdout.strip().splitlines()[-1]
    server = LiveServer(other, tmp_path, extra=["--auth", "on"]).start()
    try:
        assert "auth: on" in server.logs()
        r = httpx.post(server.url + "/api/v1/events", json=native("etl/a"))
        assert r.status_code == 401 and r.json()["error"] == "unauthorized"
        # the wrappers and the SDK send the token, from --token or PIPEMON_TOKEN
        def pipemon(command, *args, token=None):
            env = {"PATH": "/usr/bin:/bin", **({"PIPEMON_TOKEN": token} if token else {})}
            return subprocess.run([sys.executable, "-m", "pipemon", command, "--url", server.url, *args],
                                  capture_output=True, text=True, timeout=60, env=env)
        assert pipemon("send", "etl/sent", "--token", ingest).returncode == 0
        assert pipemon("send", "etl/sent").returncode == 1  # refused, said on stderr
        assert pipemon("run", "etl/wrapped", "--", "true", token=ingest).returncode == 0
        sdk = (f"import pipemon, sys; "
               f"sys.exit(0 if pipemon.Client({server.url!r}).event('etl/sdk', 'START') else 1)")
        out = subprocess.run([sys.executable, "-c", sdk], timeout=60,
                             env={"PIPEMON_TOKEN": ingest, "PATH": "/usr/bin:/bin"})
        assert out.returncode == 0
    finally:
        server.stop()
    with sa.create_engine(other).connect() as conn:
        rows = dict(conn.execute(sa.text("SELECT key, team FROM pipelines")).all())
    assert rows == {"etl/sent": "a", "etl/wrapped": "a", "etl/sdk": "a"}
