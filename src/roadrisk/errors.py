"""Errors a user can act on. Each carries its exit code; the CLI prints its message as one line."""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_DEVICE_UNAVAILABLE = 3
EXIT_INTERRUPTED = 130


class RoadriskError(Exception):
    """A problem with what the user asked for; never shown with a traceback."""

    exit_code = EXIT_USAGE


class DataError(RoadriskError):
    """Input files that the loader refuses. ``problems`` holds one line per problem."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


class WriteFailed(RoadriskError, OSError):
    """A file roadrisk writes could not be written (a full or read-only disk): the input was fine, so
    exit 1. Still an OSError, so code that handles those keeps doing so."""

    exit_code = EXIT_FAILED

    def __init__(self, path, cause: OSError):
        OSError.__init__(self, cause.errno, cause.strerror, str(path))
        self.message = (f"error: cannot write {path}: {cause.strerror or cause}. Fix: free space on that disk or "
                        "make it writable, or write somewhere else")

    def __str__(self) -> str:
        return self.message


class DeviceUnavailable(RoadriskError):
    exit_code = EXIT_DEVICE_UNAVAILABLE
