"""Exceptions that end a job or reject a request with a named protocol error code."""

from __future__ import annotations

from backend.protocol import ErrorCode, ProtocolError


class InputError(ProtocolError):
    """The request is well-formed but its content cannot be used (bad image, empty prompt, ...)."""


class PipelineError(RuntimeError):
    """A pipeline could not produce a result; ``code`` is sent to the client."""

    def __init__(self, code: ErrorCode, message: str):
        super().__init__(f"{code.value}: {message}")
        self.code = code
        self.message = message


class UsageError(ValueError):
    """A command-line argument that cannot be used; the CLI prints it as one line and exits 2."""


class JobCancelled(Exception):
    """Raised inside a pipeline at a check point once the job was cancelled."""


class JobTimedOut(Exception):
    """Raised inside a pipeline at a check point once the job passed its deadline."""
