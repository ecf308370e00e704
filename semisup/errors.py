"""The one exception every layer raises for input a user can fix, and how a report shows an exception."""


class ConfigError(ValueError):
    """A configuration or input problem the user can fix; reported as one line, exit code 2."""


def first_line(err: BaseException) -> str:
    """The first line of an exception's message (its type name if it has none), for one-line error reports."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
