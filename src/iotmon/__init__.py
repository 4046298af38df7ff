"""iotmon: real-time monitoring for a manufacturing floor."""

from iotmon import native as _native

__version__ = "0.1.0"

# The live-statistics engine compiled with mypyc when it was built for these sources, pure
# Python otherwise (see native.py); before any of its modules is imported.
_native.activate()
