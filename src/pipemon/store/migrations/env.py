"""Alembic environment: pipemon always passes an open connection (see store/db.py)."""
from alembic import context

from pipemon.store.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - pipemon never runs alembic without a connection
    raise RuntimeError("run migrations through `pipemon db upgrade`")
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
