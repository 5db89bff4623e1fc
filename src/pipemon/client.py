"""The Python SDK, kept importable as `pipemon.client`: it lives in the light client package
(`client/src/pipemon_client`, the `pipemon-client` distribution), which `pipemon` ships too."""
from pipemon_client.sdk import Client, RunContext, _split, split_pipeline

__all__ = ["Client", "RunContext", "_split", "split_pipeline"]
