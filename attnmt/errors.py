"""The one exception type for mistakes a user can fix (bad file, bad config, missing model)."""


class AttnmtError(Exception):
    """A user-facing error: the command line prints its message on one line and exits non-zero.
    Line breaks in the message (a library's multi-line complaint, quoted) become spaces."""

    def __init__(self, message: str):
        super().__init__(" ".join(message.split("\n")).replace("\r", " "))
