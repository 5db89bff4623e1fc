"""A whole scenario against a real `pipemon serve` logging at DEBUG (every library's log included,
SQLAlchemy's statements and their parameters too), then the captured log is searched for every secret:
API tokens (created on the command line and through the API, used as Bearer, as a ping's `?key=`, as
the dashboard's cookie, revoked and wrong ones), a webhook URL with a secret path, a PagerDuty routing
key and, on PostgreSQL, the database password."""
from __future__ import annotations

import subprocess
import sys
import time

import httpx
import sqlalchemy as sa
from typer.testing import CliRunner

from pipemon.cli import app as cli
from tests.alerting.receiver import Receiver
from tests.conftest import free_port

HOOK_SECRET = "hk7Zq2SeCrEtPaTh9x"
ROUTING_KEY = "R0UT1NGK3Ysecret0123456789abcdef"
PASSWORD = "pgPa55w0rdS3cret"
# Logging at DEBUG for the whole process, before pipemon's CLI (whose own basicConfig then does nothing).
LAUNCH = ("import logging, sys; logging.basicConfig(level=logging.DEBUG, "
          "format='%(asctime)s %(levelname)s %(name)s: %(message)s'); "
          "logging.getLogger('sqlalchemy.engine').setLevel(logging.INFO); "  # statements, with parameters
          "from pipemon.cli import main; sys.argv[0] = 'pipemon'; main()")


def token(db: str, *args: str) -> str:
    r = CliRunner().invoke(cli, ["token", "create", *args, "--db", db])
    assert r.exit_code == 0, r.output
    return r.stdout.strip().splitlines()[-1]


def test_no_secret_in_a_debug_log_of_a_whole_scenario(db_url, tmp_path):
    receiver = Receiver()
    if db_url.startswith("postgresql"):  # the shared test server trusts local connections: any password
        db_url = sa.make_url(db_url).set(password=PASSWORD).render_as_string(hide_password=False)
    root = token(db_url, "--org-admin", "--name", "root")
    ingest = token(db_url, "--team", "payments", "--role", "ingest", "--name", "pay-ingest")
    oncall = token(db_url, "--team", "payments", "--role", "operator", "--name", "pay-oncall")
    cfg = tmp_path / "pipemon.yaml"
    cfg.write_text(f"""
pipelines:
  - match: "pay/*"
    team: payments
receivers:
  - name: payments
    webhook: {{url: "{receiver.url}/hook/{HOOK_SECRET}"}}
    pagerduty: {{routing_key: "{ROUTING_KEY}", url: "{receiver.url}/pd"}}
route:
  receiver: payments
  group_by: [pipeline]
  group_wait: 0s
""")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "server.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-c", LAUNCH, "serve", "--db", db_url, "--port", str(port),
                                 "--config", str(cfg)], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, log_path.read_text()[-3000:]
            try:
                if httpx.get(url + "/healthz", timeout=0.5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.1)

        def h(secret: str) -> dict[str, str]:
            return {"Authorization": f"Bearer {secret}"}

        # a token made through the API, used, then revoked and used again
        made = httpx.post(url + "/api/v1/tokens", headers=h(root),
                          json={"team": "payments", "role": "ingest", "name": "pay-cron"})
        assert made.status_code == 201, made.text
        cron = made.json()["token"]
        assert httpx.get(f"{url}/ping/pay/backup?key={cron}").status_code == 200
        assert httpx.delete(url + "/api/v1/tokens/pay-cron", headers=h(root)).status_code == 200
        assert httpx.get(f"{url}/ping/pay/backup?key={cron}").status_code == 401
        wrong = "pm_" + "x" * 43
        assert httpx.post(url + "/api/v1/events", headers=h(wrong), json={}).status_code == 401
        assert httpx.get(url + "/api/v1/tokens", cookies={"pipemon_token": root}).status_code == 200

        # a failing run pages the webhook and PagerDuty; the operator acknowledges it
        now = time.time()
        for ev in ({"pipeline": "pay/settle", "run_id": "r1", "type": "START", "event_time": now - 60},
                   {"pipeline": "pay/settle", "run_id": "r1", "type": "FAIL", "event_time": now,
                    "error": {"message": "boom"}}):
            assert httpx.post(url + "/api/v1/events", headers=h(ingest), json=ev).status_code == 200
        assert receiver.wait(f"/hook/{HOOK_SECRET}", 1) and receiver.wait("/pd", 1)
        assert receiver.on("/pd")[0]["body"]["routing_key"] == ROUTING_KEY  # the secrets were used
        alerts = httpx.get(url + "/api/v1/alerts", headers=h(oncall)).json()["items"]
        assert httpx.post(f"{url}/api/v1/alerts/{alerts[0]['id']}/ack", headers=h(oncall)).status_code == 200
        audit = httpx.get(url + "/api/v1/audit", headers=h(root)).json()["items"]
        assert {"token.create", "token.revoke", "alert.acknowledge"} <= {e["action"] for e in audit}
    finally:
        proc.terminate()
        proc.wait(15)
        receiver.close()

    text = log_path.read_text(errors="replace")
    # the capture did record at DEBUG, the statements, and the URLs httpx logs (masked)
    assert "DEBUG httpcore" in text and "INSERT INTO tokens" in text and "auth: on" in text
    assert f"HTTP Request: POST {receiver.url}/<redacted>" in text
    secrets = {"root token": root, "ingest token": ingest, "operator token": oncall, "API-made token": cron,
               "wrong token": wrong, "webhook path": HOOK_SECRET, "routing key": ROUTING_KEY,
               "database password": PASSWORD}
    leaked = [what for what, s in secrets.items() if s in text]
    assert leaked == [], f"secrets in the log: {leaked}"
