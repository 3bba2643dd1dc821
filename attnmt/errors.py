"""The one exception type for mistakes a user can fix (bad file, bad config, missing model)."""


class AttnmtError(Exception):
    """A user-facing error: the command line prints its message on one line and exits non-zero."""
