"""pipemon-client: report data pipeline runs to pipemon (the SDK and the `pipemon-run` command wrapper).

Depends on httpx alone; the full `pipemon` distribution re-exports it as `pipemon.Client`."""

__version__ = "0.1.0"

from pipemon_client.sdk import Client, RunContext  # noqa: E402

__all__ = ["Client", "RunContext", "__version__"]
