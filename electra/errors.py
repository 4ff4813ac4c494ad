"""The one exception type for user mistakes.

Anything the user can fix (a missing file, a malformed line, an unknown option)
raises ``UserError``; the CLI prints its message on one line and exits with
status 2, without a traceback. Everything else is a bug and keeps its traceback.
"""


class UserError(Exception):
    """A problem with the user's input; the message says what and where, and what to do."""
