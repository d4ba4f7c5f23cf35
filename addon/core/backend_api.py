"""The only door from the add-on into the backend package.

The architecture allows exactly two backend modules inside Blender: ``protocol`` (message schema)
and ``client`` (non-blocking ZeroMQ client). Both are bundled in the extension next to ``addon/``,
so they are imported relative to the extension's root package, never as a top-level ``backend``.
"""

from ...backend import __version__ as BACKEND_VERSION
from ...backend import client, protocol

__all__ = ["BACKEND_VERSION", "client", "protocol"]
