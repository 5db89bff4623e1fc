"""The light client as a pipeline host installs it: `pip install ./client` in a fresh venv brings no server
dependency, its `pipemon-run` reports a failed command to a real running server and passes the exit code
through, and the client's own tests pass there. Skipped where the server is not installed (that is, when
these tests themselves run inside the light client's venv)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("pipemon.app", reason="needs the pipemon server (this is the light client's own venv)")

ROOT = Path(__file__).resolve().parents[2]
SERVER_ONLY = {"fastapi", "starlette", "uvicorn", "sqlalchemy", "alembic", "numpy", "pydantic", "psycopg",
               "typer", "rich", "jinja2", "croniter", "prometheus-client", "msgspec", "pipemon"}
pytestmark = pytest.mark.slow


def _env() -> dict[str, str]:
    # (PYTEST_ADDOPTS: the outer run's options, e.g. CI's `-n 2`, need plugins this venv does not have)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PIPEMON_URL",
                                                               "PIPEMON_TOKEN", "PYTEST_ADDOPTS")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def _sh(*cmd: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=_env())


@pytest.fixture(scope="module")
def light_venv(tmp_path_factory) -> Path:
    venv = tmp_path_factory.mktemp("light") / "venv"
    done = _sh(sys.executable, "-m", "venv", str(venv))
    assert done.returncode == 0, done.stderr
    done = _sh(str(venv / "bin" / "pip"), "install", "-q", "./client")
    assert done.returncode == 0, done.stderr[-3000:]
    return venv


def test_installing_the_light_client_brings_no_server_dependency(light_venv):
    listed = _sh(str(light_venv / "bin" / "pip"), "list", "--format=json")
    names = {p["name"].lower().replace("_", "-") for p in json.loads(listed.stdout)}
    assert {"pipemon-client", "httpx"} <= names
    assert names & SERVER_ONLY == set()
    probe = _sh(str(light_venv / "bin" / "python"), "-c", "import pipemon")
    assert probe.returncode == 1 and "No module named 'pipemon'" in probe.stderr


def test_pipemon_run_around_false_reports_a_failed_run_to_a_real_server(light_venv, tmp_path):
    import httpx

    from tests.conftest import LiveServer
    server = LiveServer(f"sqlite:///{tmp_path / 'p.db'}", tmp_path).start()
    try:
        out = _sh(str(light_venv / "bin" / "pipemon-run"), "--url", server.url, "light/false", "--", "false")
        assert out.returncode == 1, out.stderr
        assert "light/false failed (exit code 1)" in out.stderr
        [run] = httpx.get(f"{server.url}/api/v1/pipelines/light%2Ffalse/runs").json()["items"]
        assert (run["status"], run["error"]["message"], run["metrics"]) == ("failed", "exit code 1",
                                                                              {"exit_code": 1})
        assert run["duration_s"] is not None and run["duration_s"] >= 0
    finally:
        server.stop()


def test_the_client_tests_pass_with_only_the_client_installed(light_venv):
    done = _sh(str(light_venv / "bin" / "pip"), "install", "-q", "pytest>=8.0")
    assert done.returncode == 0, done.stderr[-3000:]
    # --confcutdir: the repository's tests/conftest.py needs the server; the client's tests do not
    run = _sh(str(light_venv / "bin" / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider",
              "--confcutdir", "tests/client", "tests/client", timeout=600)
    assert run.returncode == 0, run.stdout[-3000:]
    assert " passed" in run.stdout and "skipped" in run.stdout  # this module skips there
