"""Errors the CLI reports as one clear line with exit code 2, never a traceback."""


class UserError(Exception):
    """Bad input or configuration the operator can fix (bad URL, wrong password, missing file)."""

    exit_code = 2
