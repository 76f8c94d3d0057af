"""Errors a service raises for a user to read; views turn them into HTTP answers."""

from django.utils.translation import gettext as _


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


def size_text(size, *, round_up=False):
    """A byte count as people read it: "900 bytes", "1.5 KB", "10 MB" (units of 1024, at most one decimal).
    `round_up` for the size of something refused as too large, so that it never reads as equal to its limit."""
    if size < 1024:
        return _("%(n)d bytes") % {"n": size}
    for unit, scale in (("KB", 2**10), ("MB", 2**20), ("GB", 2**30)):
        if size < scale * 1024 or unit == "GB":
            tenths = -(-size * 10 // scale) if round_up else size * 10 // scale
            number = f"{tenths // 10}" if tenths % 10 == 0 else f"{tenths // 10}.{tenths % 10}"
            return f"{number} {unit}"


def body_too_large_message(size, limit):
    """The 413's detail for a request body over `limit` bytes (the import's wording: the body is an upload)."""
    return _("The upload is %(size)s; the limit is %(limit)s.") % {
        "size": size_text(size, round_up=True), "limit": size_text(limit)}
