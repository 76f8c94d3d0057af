"""Errors a service raises for a user to read; views turn them into HTTP answers."""


class ApplicationError(Exception):
    """A refused operation, with a message a person can act on."""

    status_code = 400

    def __init__(self, message, *, errors=None):
        super().__init__(message)
        self.message = message
        self.errors = errors or {}


class TransitionError(ApplicationError):
    """An illegal state transition; `current` names the state the object is in."""

    status_code = 409

    def __init__(self, message, *, current=None, errors=None):
        super().__init__(message, errors=errors)
        self.current = current


class PermissionDeniedError(ApplicationError):
    """The user may see the object but not do this to it."""

    status_code = 403


class ValidationError(ApplicationError):
    """Invalid input; `errors` maps a field or a row number to its messages."""

    status_code = 400


class PayloadTooLargeError(ApplicationError):
    """An upload over the configured limit."""

    status_code = 413
