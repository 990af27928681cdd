"""The one exception type ops/ raises: its message is shown to the user as it is."""


class OpsError(Exception):
    """A failure with a message a user can act on (what went wrong and what to do)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
