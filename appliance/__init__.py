"""The appliance: a Prefect-3-compatible orchestration server (settings, CLI, boot)."""

__version__ = "0.1.0"
