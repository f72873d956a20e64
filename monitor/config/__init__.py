"""Configuration: YAML with ${ENV} and *_file secrets, validated into typed models."""

from monitor.config.errors import ConfigError, ConfigIssue
from monitor.config.loader import load_config, parse_config
from monitor.config.models import Config

__all__ = ["Config", "ConfigError", "ConfigIssue", "load_config", "parse_config"]
