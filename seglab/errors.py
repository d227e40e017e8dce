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


def is_int(value: object) -> bool:
    """An integer (Python's or NumPy's) and not a bool (``True`` is an ``int`` to Python, never a count to a user)."""
    import numbers

    return isinstance(value, numbers.Integral) and not isinstance(value, bool)
