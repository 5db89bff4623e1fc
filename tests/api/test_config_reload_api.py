"""POST /api/v1/config/reload as an operator would try it: without config files, as a team's viewer, with
a broken main file."""
from __future__ import annotations

from fastapi.testclient import TestClient

from pipemon.api.app import create_app
from pipemon.reload import Reloader
from pipemon.teamconfig import ConfigSource
from tests.conftest import TEST_CALLERS


def test_reload_answers_clearly_in_every_case(pm, tmp_path, as_team):
    app = create_app(pm)
    headers = as_team(app)
    with TestClient(app, raise_server_exceptions=False) as c:
        r = c.post("/api/v1/config/reload", headers=headers("org-admin"))
        assert r.status_code == 409 and "started without --config" in r.json()["message"]
        main = tmp_path / "pipemon.yaml"
        main.write_text("pipelines: [{match: 'a/*', team: alpha}]\n")
        pm.reloader = Reloader(ConfigSource(main))
        assert pm.reloader.initial().ok
        assert c.post("/api/v1/config/reload", headers=headers("alpha-viewer")).status_code == 403
        assert c.post("/api/v1/config/reload", headers={"Authorization": "Bearer nope"}).status_code == 401
        assert c.post("/api/v1/config/reload", headers=headers("org-admin")).json()["ok"] is True
        assert pm.settings.rule_for("a/x").team == "alpha"
        main.write_text("pipelines: [{match: 'a/*', team: beta}]\nroute: {receiver: ghost}\n")
        r = c.post("/api/v1/config/reload", headers=headers("org-admin"))
        assert r.status_code == 422 and r.json()["applied"] is False
        assert r.json()["main"]["problems"] == [f"{main}:2: route.receiver: no receiver named 'ghost'"]
        assert pm.settings.rule_for("a/x").team == "alpha"   # nothing changed
        main.write_text("pipelines: [{match: 'a/*', team: beta}]\n")
        r = c.post("/api/v1/config/reload", headers=headers("org-admin"))
        assert r.status_code == 200 and r.json()["ok"] is True and pm.settings.rule_for("a/x").team == "beta"
        audit = c.get("/api/v1/audit", headers=headers("org-admin"),
                      params={"action": "config.reload"}).json()["items"]
        # each applied reload is audited with the token's name as its actor; the refused one changed nothing
        assert [e["actor"] for e in audit] == [TEST_CALLERS["org-admin"][0]] * 2
        assert audit[0]["detail"] == {"team_files": 0, "rejected": []}
