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
