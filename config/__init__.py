"""Configuration: `app-config.yaml` defaults overridden by environment variables."""

from config.settings import ConfigError, Settings, load_settings

__all__ = ["ConfigError", "Settings", "load_settings"]
