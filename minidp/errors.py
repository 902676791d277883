"""The exceptions minidp raises for problems a user can fix.

Each message names the file, field or argument at fault; the CLI prints it as one line (exit 2).
"""


class MinidpError(Exception):
    """Base class: a problem with the user's input, not a bug in minidp."""


class ConfigError(MinidpError, ValueError):
    """An unsupported or invalid configuration value (names the field)."""


class DataError(MinidpError, ValueError):
    """A missing, unreadable or malformed data / checkpoint / tokenizer file (names the file and field)."""


class PrivacyError(MinidpError, ValueError):
    """Invalid privacy parameters, or a run that would spend more epsilon than asked."""


class RunInterrupted(Exception):
    """A run stopped by SIGINT/SIGTERM after finishing its step (and writing a checkpoint).

    The CLI prints the message (which says how to resume) and exits with ``exit_code`` (130 / 143).
    """

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


class RunFailed(Exception):
    """A run that stopped because its loss, released gradient or parameters became non-finite.

    The run directory is marked with ``FAILED`` (no model, no final evaluation); ``summary`` says what was
    spent up to that step. The CLI prints the message as one line and exits with ``exit_code`` (3).
    """

    EXIT_CODE = 3

    def __init__(self, message: str, summary: dict | None = None):
        super().__init__(message)
        self.summary = summary or {}
        self.exit_code = self.EXIT_CODE
