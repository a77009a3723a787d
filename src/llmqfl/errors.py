"""Errors a user can act on: one line, naming the field or file at fault."""


class LlmqflError(Exception):
    """Base class: the stage CLIs print these as one line and exit 2, without a traceback."""


class ConfigError(LlmqflError, ValueError):
    """A config value is invalid; the message names the dotted field path."""


class DataError(LlmqflError, ValueError):
    """Input data cannot be used (unreadable file, missing column, one class, too few items)."""


class OfflineError(LlmqflError, RuntimeError):
    """A hub model or online dataset was asked for but the network is not reachable."""


class IntegrityError(DataError):
    """A file differs from the digest it was written with (edited, truncated or damaged); names the file."""


class FaultError(LlmqflError, RuntimeError):
    """The machine refused: permissions, a path that is a file, a full disk, a tracking server that does not answer."""
