"""Errors a user can cause. The CLI turns a UserError into one sentence on stderr and exit code 2."""


class UserError(Exception):
    """Bad input (config, data, arguments): the message is one sentence that names the fix."""


class DataError(UserError):
    """Missing, corrupt or unsafe dataset files."""
