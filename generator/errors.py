"""One exception family for mistakes a user can fix.

The CLI prints an `AtlasError` as one line and exits with code 1; any other
exception is a bug and keeps its traceback.
"""


class AtlasError(Exception):
    """A problem with the user's input, config or environment, with what to do about it."""
