"""pipemon: monitoring and alerting for data pipelines."""

__version__ = "0.1.0"

from pipemon.client import Client  # noqa: E402

__all__ = ["Client", "__version__"]
