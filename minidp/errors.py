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
