"""The one exception type the CLI turns into a one-line message and exit code 2."""


class UserError(Exception):
    """Bad input from the user (a file, a config field, a flag), not a bug in encoderlab.

    The message must say what was wrong, where (file:line or config key) and how to fix it.
    """
