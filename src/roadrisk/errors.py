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


class DeviceUnavailable(RoadriskError):
    exit_code = EXIT_DEVICE_UNAVAILABLE
