"""User-facing errors.

A :class:`ConfigError` is raised for anything the *user* can get wrong (a bad config value, an
unknown name, a missing file). Its message is one line that names the key or file and what is
allowed; entry points print it without a traceback.
"""


class ConfigError(ValueError):
    """A bad user input: the message names the key/file and the allowed values."""


def check(condition: bool, message: str) -> None:
    """Raise :class:`ConfigError` with ``message`` unless ``condition`` holds."""
    if not condition:
        raise ConfigError(message)
