"""The one exception type for user mistakes.

Anything the user can fix (a missing file, a malformed line, an unknown option)
raises ``UserError``; the CLI prints its message on one line and exits with
status 2, without a traceback. Everything else is a bug and keeps its traceback.
"""


class UserError(Exception):
    """A problem with the user's input; the message says what and where, and what to do."""


class Stopped(Exception):
    """A run stopped on request (SIGTERM/SIGINT) after saving; not an error. The CLI prints the message
    (how to resume) and exits with ``exit_code`` (128 + the signal number, as a killed process would),
    so that `electra pretrain ... && electra export ...` does not go on with an unfinished run."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code
