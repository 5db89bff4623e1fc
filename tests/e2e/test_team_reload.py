"""Configuration per team on a real `pipemon serve` (issue 11, item 6): an invalid payments file on reload
leaves payments on its last good config and applies the marketing file's change, both visible in /metrics
and in the reload response; an invalid main file changes nothing; SIGHUP reloads too; no event is lost
while reloading."""
from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

MAIN = """
teams: [{name: payments}, {name: marketing}]
receivers:
  - name: org-default
    webhook: {url: "http://127.0.0.1:9/default"}
route: {receiver: org-default}
"""
PAYMENTS = """
pipelines:
  - {match: "pay/*", tier: TIER}
receivers:
  - name: pay-hook
    webhook: {url: "http://127.0.0.1:9/pay"}
route: {receiver: pay-hook}
"""
MARKETING = """
pipelines:
  - {match: "mkt/*", tier: TIER}
"""


def reload_metrics(url: str) -> dict[tuple[str, str], float]:
    text = httpx.get(url + "/metrics", timeout=10).text
    out = {}
    for fam in text_string_to_metric_families(text):
        if fam.name.startswith("pipemon_config_last_reload"):
            for s in fam.samples:
                out[(s.name, s.labels["team"])] = s.value
    return out


def tier(url: str, pipeline: str) -> int | None:
    r = httpx.get(f"{url}/api/v1/pipelines/{pipeline.replace('/', '%2F')}", timeout=10)
    assert r.status_code == 200, r.text
    return r.json()["tier"]


def team_of(url: str, pipeline: str) -> str:
    return httpx.get(f"{url}/api/v1/pipelines/{pipeline.replace('/', '%2F')}", timeout=10).json()["team"]


def setup(tmp: Path) -> tuple[Path, Path]:
    (tmp / "config.d").mkdir()
    (tmp / "pipemon.yaml").write_text(MAIN)
    (tmp / "config.d/payments.yaml").write_text(PAYMENTS.replace("TIER", "1"))
    (tmp / "config.d/marketing.yaml").write_text(MARKETING.replace("TIER", "3"))
    return tmp / "pipemon.yaml", tmp / "config.d"


def post(url: str, events: list[dict]) -> None:
    r = httpx.post(url + "/api/v1/events", json=events, timeout=30)
    assert r.status_code == 200, r.text


def test_an_invalid_team_file_keeps_its_last_good_config_and_the_others_apply(live_server, tmp_path):
    main, cdir = setup(tmp_path)
    s = live_server(str(main), ["--config-dir", str(cdir)])
    post(s.url, [{"pipeline": p, "run_id": "r1", "type": "COMPLETE", "duration_s": 1}
                 for p in ("pay/ledger", "mkt/campaigns", "orphan/job")])
    assert (tier(s.url, "pay/ledger"), tier(s.url, "mkt/campaigns")) == (1, 3)
    assert team_of(s.url, "orphan/job") == "unowned"
    m = reload_metrics(s.url)
    assert m[("pipemon_config_last_reload_success", "payments")] == 1
    assert m[("pipemon_config_last_reload_success", "marketing")] == 1
    before = m[("pipemon_config_last_reload_timestamp_seconds", "marketing")]

    # payments breaks its file (and changes its tier); marketing changes its tier and claims orphan/*
    (cdir / "payments.yaml").write_text(PAYMENTS.replace("TIER", "2").replace("route: {receiver: pay-hook}",
                                                                             "route: {receiver: nobody}"))
    (cdir / "marketing.yaml").write_text(MARKETING.replace("TIER", "1") + '  - {match: "orphan/*"}\n')
    r = httpx.post(s.url + "/api/v1/config/reload", timeout=30)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["applied"] is True and body["ok"] is False
    pay, mkt = body["teams"]["payments"], body["teams"]["marketing"]
    assert (pay["ok"], pay["kept"]) == (False, "last good")
    assert pay["problems"] == [f"{cdir / 'payments.yaml'}:7: route.receiver: no receiver named 'nobody'"]
    assert (mkt["ok"], mkt["problems"]) == (True, [])
    assert tier(s.url, "pay/ledger") == 1            # payments: still its last good file
    assert tier(s.url, "mkt/campaigns") == 1         # marketing: its change applied
    assert team_of(s.url, "orphan/job") == "marketing"   # an existing pipeline's owner follows the config
    m = reload_metrics(s.url)
    assert m[("pipemon_config_last_reload_success", "payments")] == 0
    assert m[("pipemon_config_last_reload_success", "marketing")] == 1
    assert m[("pipemon_config_last_reload_timestamp_seconds", "marketing")] > before
    assert "nobody" in s.logs() and "payments" in s.logs()   # and a log line names the team and problem

    # an invalid main file: nothing changes, and the response says why
    main.write_text(MAIN + "colour: red\n")
    (cdir / "marketing.yaml").write_text(MARKETING.replace("TIER", "2"))
    r = httpx.post(s.url + "/api/v1/config/reload", timeout=30)
    assert r.status_code == 422 and r.json()["applied"] is False
    assert r.json()["main"]["problems"] == [f"{main}:7: colour: unknown key"]
    assert tier(s.url, "mkt/campaigns") == 1
    assert reload_metrics(s.url)[("pipemon_config_last_reload_success", "_main")] == 0

    # fixed: payments' new file applies
    main.write_text(MAIN)
    (cdir / "payments.yaml").write_text(PAYMENTS.replace("TIER", "2"))
    assert httpx.post(s.url + "/api/v1/config/reload", timeout=30).json()["ok"] is True
    assert tier(s.url, "pay/ledger") == 2
    assert reload_metrics(s.url)[("pipemon_config_last_reload_success", "payments")] == 1


def test_sighup_reloads_and_no_event_is_lost_meanwhile(live_server, tmp_path):
    main, cdir = setup(tmp_path)
    s = live_server(str(main), ["--config-dir", str(cdir)])
    post(s.url, [{"pipeline": "mkt/a", "run_id": "first", "type": "COMPLETE", "duration_s": 1}])
    stop = threading.Event()
    sent: list[int] = []

    def stream() -> None:  # batches of events for one pipeline while the config is swapped
        i = 0
        while not stop.is_set():
            post(s.url, [{"pipeline": "mkt/stream", "run_id": f"r{i}-{j}", "type": "COMPLETE",
                          "duration_s": 1} for j in range(20)])
            sent.append(20)
            i += 1

    t = threading.Thread(target=stream)
    t.start()
    try:
        for n in range(4):
            (cdir / "marketing.yaml").write_text(MARKETING.replace("TIER", str(1 + n % 3)))
            was = reload_metrics(s.url)[("pipemon_config_last_reload_timestamp_seconds", "marketing")]
            assert s.proc is not None
            s.proc.send_signal(signal.SIGHUP)
            deadline = time.monotonic() + 15
            while reload_metrics(s.url)[("pipemon_config_last_reload_timestamp_seconds", "marketing")] == was:
                assert time.monotonic() < deadline, s.logs()
                time.sleep(0.05)
            assert tier(s.url, "mkt/a") == 1 + n % 3
    finally:
        stop.set()
        t.join(30)
    assert s.proc.poll() is None   # the server is still serving
    total = 0
    cursor = None
    while True:
        params = {"limit": 1000, **({"cursor": cursor} if cursor else {})}
        page = httpx.get(f"{s.url}/api/v1/pipelines/mkt%2Fstream/runs", params=params, timeout=30).json()
        total += len(page["items"])
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert total == sum(sent) > 0


def test_a_team_file_invalid_at_start_is_left_out_and_the_server_serves_the_others(live_server, tmp_path):
    main, cdir = setup(tmp_path)
    (cdir / "payments.yaml").write_text(PAYMENTS.replace("TIER", "7"))
    s = live_server(str(main), ["--config-dir", str(cdir)])
    m = reload_metrics(s.url)
    assert m[("pipemon_config_last_reload_success", "payments")] == 0
    assert m[("pipemon_config_last_reload_success", "marketing")] == 1
    why = "pipelines[0].tier: Input should be less than or equal to 3"
    assert f"{cdir / 'payments.yaml'}:3: {why}" in s.logs()
    post(s.url, [{"pipeline": p, "run_id": "r1", "type": "COMPLETE", "duration_s": 1}
                 for p in ("pay/ledger", "mkt/campaigns")])
    assert (tier(s.url, "pay/ledger"), tier(s.url, "mkt/campaigns")) == (None, 3)
