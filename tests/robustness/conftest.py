"""A PostgreSQL this package's tests own: a schema of their own on the shared server, reached through a proxy
they can cut and freeze (the shared server itself is never stopped, frozen or reconfigured)."""
from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa

from tests.conftest import PG_URL, _pg_schema_url
from tests.robustness.proxy import FaultProxy


@pytest.fixture
def owned_db():
    """A schema of its own on the shared server, and a proxy to it that the test can cut and freeze."""
    if not PG_URL:
        pytest.skip("needs PIPEMON_TEST_POSTGRES_URL")
    from pipemon.store.db import normalize_url
    base = sa.make_url(normalize_url(PG_URL))
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(base)
    with admin.begin() as c:
        c.exec_driver_sql(f"CREATE SCHEMA {schema}")
    proxy = FaultProxy((base.host or "127.0.0.1", base.port or 5432))
    via_proxy = base.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    try:
        yield _pg_schema_url(via_proxy, schema), proxy, _pg_schema_url(str(normalize_url(PG_URL)), schema)
    finally:
        proxy.close()
        with admin.begin() as c:
            c.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()


