"""The one exception type ops/ raises: its message is shown to the user as it is."""


class OpsError(Exception):
    """A failure with a message a user can act on (what went wrong and what to do)."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status  # the HTTP status of the API answer behind it, when there was one
