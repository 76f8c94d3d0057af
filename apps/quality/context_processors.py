"""The alert bell in the portal's top bar: whether the user manages a project, and their unread live alerts."""

from django.utils.functional import SimpleLazyObject

from .alerts import alert_bell

_CACHE = "_labelportal_alert_bell"


def alert_bell_cached(request):
    """alerts.alert_bell for the request's user, asked at most once per request."""
    if not hasattr(request, _CACHE):
        setattr(request, _CACHE, alert_bell(request.user))
    return getattr(request, _CACHE)


def alert_bell_forget(request):
    """The request changed what the user has read: the next look at the bell asks again."""
    if hasattr(request, _CACHE):
        delattr(request, _CACHE)


def alert_bell_context(request):
    """`alert_bell` ({"manages", "unread"}) for templates; lazy, so a page that shows no bell asks nothing, and
    nothing at all is asked for anonymous users."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    return {"alert_bell": SimpleLazyObject(lambda: alert_bell_cached(request))}
