"""iotmon: real-time monitoring for a manufacturing floor."""

__version__ = "0.1.0"
