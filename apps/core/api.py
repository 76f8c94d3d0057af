"""API plumbing shared by every app: errors as the contract wants them, pagination, Idempotency-Key, lookups."""

import functools
import hashlib
import tempfile

import django_filters
from django import forms
from django.conf import settings
from django.core.exceptions import ObjectDoesNotExist, RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, transaction
from django.http import Http404
from django.utils.translation import gettext as _
from rest_framework import exceptions, serializers, status
from rest_framework.pagination import PageNumberPagination
from rest_framework.parsers import FormParser, JSONParser
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from .errors import ApplicationError, PayloadTooLargeError, TransitionError, body_too_large_message, size_text
from .models import IdempotencyRecord


class Pagination(PageNumberPagination):
    """`{"count", "next", "previous", "results"}`, `?page_size=` up to 1000."""

    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 1000


class IdFilter(django_filters.NumberFilter):
    """`?batch=<id>`-style filters: a whole number that fits a database id, else 400 (never a database error on an
    id too large for the column, nor a silent match on `1.5`)."""

    field_class = forms.IntegerField

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("min_value", 1)
        kwargs.setdefault("max_value", 2**63 - 1)
        super().__init__(*args, **kwargs)


JSON_MAX_DEPTH = 64


def json_value_validate(value):
    """Refuse a JSON value that would fail later instead of now: text holding U+0000 (PostgreSQL stores none in
    text or jsonb: a database error, i.e. a 500) or nesting deeper than JSON_MAX_DEPTH (every reader recurses)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > JSON_MAX_DEPTH:
            raise serializers.ValidationError(f"Nested deeper than {JSON_MAX_DEPTH} levels.")
        if isinstance(item, str):
            if "\x00" in item:
                raise serializers.ValidationError("Text cannot contain the NUL character (U+0000).")
        elif isinstance(item, dict):
            stack.extend((part, depth + 1) for pair in item.items() for part in pair)
        elif isinstance(item, list):
            stack.extend((part, depth + 1) for part in item)


class JSONValueField(serializers.JSONField):
    """A JSON input that the database and every later reader can take (see json_value_validate)."""

    def __init__(self, **kwargs):
        kwargs["validators"] = [*kwargs.get("validators", []), json_value_validate]
        super().__init__(**kwargs)


def _field_errors(detail):
    if isinstance(detail, dict):
        return {str(k): v if isinstance(v, list) else [v] for k, v in detail.items()}
    if isinstance(detail, list):
        return {"non_field_errors": detail}
    return {}


def _content_length(request):
    try:
        return max(0, int(request.META.get("CONTENT_LENGTH") or 0))
    except (TypeError, ValueError):
        return 0


def exception_handler(exc, context):
    """Every error as `{"detail": "...", "errors": {...}}` with the status the contract gives."""
    if isinstance(exc, ApplicationError):
        body = {"detail": exc.message, "errors": exc.errors}
        if isinstance(exc, TransitionError) and exc.current is not None:
            body["current"] = exc.current
            if str(exc.current) not in exc.message:
                # API.md: a 409's detail names the current state; not every service message does (gate refusals).
                body["detail"] = f"{exc.message} (current state: {exc.current})"
        return Response(body, status=exc.status_code)
    if isinstance(exc, DjangoValidationError):
        errors = exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
        first = next(iter(errors.values()), ["Invalid input."])
        return Response({"detail": f"Invalid input: {first[0]}", "errors": errors}, status=400)
    if isinstance(exc, RecursionError):
        # json.loads (DRF's JSONParser) and any walk over the parsed value recurse once per level: a body of a few
        # kilobytes like [[[[… exhausts the stack. That is bad input, not a server error.
        return Response({"detail": "The JSON body is nested too deeply.", "errors": {}}, status=400)
    if isinstance(exc, RequestDataTooBig):
        # Django refuses to hold a body over DATA_UPLOAD_MAX_MEMORY_SIZE in memory (request.body, a form's
        # fields); left to Django, the answer would be its HTML "Bad Request (400)" page.
        request = context.get("request")
        size = _content_length(request) if request is not None else 0
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        detail = body_too_large_message(size, limit) if size > limit else _(
            "The request body is larger than %(limit)s.") % {"limit": size_text(limit)}
        return Response({"detail": detail, "errors": {}}, status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE)
    if isinstance(exc, (TooManyFieldsSent, TooManyFilesSent)):
        return Response({"detail": _("The form has too many fields or files."), "errors": {}}, status=400)
    if isinstance(exc, ObjectDoesNotExist):
        exc = Http404()
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        errors = _field_errors(response.data)
        first = next(iter(errors.values()), ["Invalid input."])
        response.data = {"detail": f"Invalid input: {first[0] if first else ''}".strip(), "errors": errors}
    elif isinstance(response.data, dict) and "detail" in response.data:
        response.data = {"detail": str(response.data["detail"]), "errors": {}}
    return response


SPOOL_MEMORY = 64 * 1024  # bytes of a body kept in memory; beyond that the spool is a temporary file
SPOOL_CHUNK = 64 * 1024


def _digest_start(request):
    digest = hashlib.sha256()
    for part in (request.method.encode(), request.path.encode()):
        digest.update(part)
        digest.update(b"\0")
    return digest


def _fingerprint_form(request, digest):
    """A form upload: its fields and the content of its files (Django's parser spools big files to disk; they are
    rewound for the view), since the raw multipart body differs on every send (its boundary)."""
    for name, values in sorted(request.POST.lists()):
        digest.update(repr((name, values)).encode())
        digest.update(b"\0")
    for name, files in sorted(request.FILES.lists()):
        for upload in files:
            digest.update(repr((name, upload.name, upload.size)).encode())
            for chunk in upload.chunks():
                digest.update(chunk)
            upload.seek(0)
            digest.update(b"\0")
    return digest.hexdigest()


def _fingerprint_spooled(request, digest, limit):
    """Any other body: read in chunks into a spool (memory up to SPOOL_MEMORY, then a temporary file) while
    hashing it, then put back as the request's stream, unread, so that the view and DRF's parsers read exactly
    the bytes they would have read from the client (request.body, request.read(), request.readline()).
    Returns (fingerprint, spool); the caller closes the spool. PayloadTooLargeError past `limit` bytes."""
    if hasattr(request, "_body"):  # someone already read it into memory
        digest.update(request._body)
        return digest.hexdigest(), None
    if _content_length(request) == 0:
        return digest.hexdigest(), None  # Django reads no body without a Content-Length
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY)
    try:
        read = 0
        while chunk := request.read(SPOOL_CHUNK):  # bounded by CONTENT_LENGTH (Django's LimitedStream)
            read += len(chunk)
            if read > limit:
                raise PayloadTooLargeError(body_too_large_message(max(read, _content_length(request)), limit))
            digest.update(chunk)
            spool.write(chunk)
        spool.seek(0)
    except BaseException:
        spool.close()
        raise
    request._stream = spool
    request._read_started = False
    return digest.hexdigest(), spool


def _body_limit(request):
    """The largest body the view takes: a body DRF parses in memory (JSON, form) is limited by Django's
    DATA_UPLOAD_MAX_MEMORY_SIZE (DRF reads it through request.body); a body the view streams itself (the import's
    pass-through parser, a multipart upload spooled to disk) by IMPORT_MAX_BYTES, the largest upload the API takes."""
    limit = settings.IMPORT_MAX_BYTES
    try:
        parser = request.negotiator.select_parser(request, request.parsers)
    except Exception:  # noqa: BLE001 - an unparsable Content-Type: the view answers it
        parser = None
    if isinstance(parser, (JSONParser, FormParser)) and settings.DATA_UPLOAD_MAX_MEMORY_SIZE is not None:
        limit = min(limit, settings.DATA_UPLOAD_MAX_MEMORY_SIZE)
    return limit


def _fingerprint(request):
    """(SHA-256 of method, path and body, spool to close or None), reading the body in constant memory.
    `request` is DRF's; a body over the view's limit is refused (413) before anything is read."""
    django_request = request._request
    digest = _digest_start(django_request)
    limit = _body_limit(request)
    length = _content_length(django_request)
    if length > limit:
        raise PayloadTooLargeError(body_too_large_message(length, limit))
    content_type = django_request.content_type or ""
    if content_type.startswith("multipart/") or content_type == "application/x-www-form-urlencoded":
        return _fingerprint_form(django_request, digest), None
    return _fingerprint_spooled(django_request, digest, limit)


def idempotent(view_method):
    """Honour `Idempotency-Key`: the same key and request again returns the first answer with 200, changing
    nothing; the same key with another request is refused (409)."""

    @functools.wraps(view_method)
    def wrapper(self, request, *args, **kwargs):
        key = request.headers.get("Idempotency-Key", "").strip()
        if not key or not request.user.is_authenticated:
            return view_method(self, request, *args, **kwargs)
        if len(key) > 128:
            return Response({"detail": "Idempotency-Key is longer than 128 characters.", "errors": {}}, status=400)
        if any(ord(char) < 32 or ord(char) == 127 for char in key):
            # Not a valid header value, and PostgreSQL would refuse to store a NUL: a 500 otherwise.
            return Response({"detail": "Idempotency-Key contains control characters.", "errors": {}}, status=400)
        fingerprint, spool = _fingerprint(request)
        try:
            return _once(view_method, self, request, args, kwargs, key, fingerprint)
        finally:
            if spool is not None:
                spool.close()

    return wrapper


def _once(view_method, view, request, args, kwargs, key, fingerprint):
    try:
        with transaction.atomic():
            record = IdempotencyRecord.objects.create(user=request.user, key=key, fingerprint=fingerprint)
    except IntegrityError:
        record = IdempotencyRecord.objects.get(user=request.user, key=key)
        if record.fingerprint != fingerprint:
            return Response({"detail": "This Idempotency-Key was already used for a different request.",
                             "errors": {}}, status=status.HTTP_409_CONFLICT)
        if record.status_code is None:
            return Response({"detail": "A request with this Idempotency-Key is still being processed.",
                             "errors": {}}, status=status.HTTP_409_CONFLICT)
        replay_status = 200 if record.status_code == 201 else record.status_code
        return Response(record.body, status=replay_status, headers={"Idempotent-Replayed": "true"})
    try:
        response = view_method(view, request, *args, **kwargs)
    except BaseException:
        record.delete()
        raise
    if 200 <= response.status_code < 300:
        record.status_code = response.status_code
        record.body = response.data
        record.save(update_fields=["status_code", "body"])
    else:
        record.delete()
    return response


def project_for(request, project_id, perm=None):
    """The project if the caller may see it (else 404), and holds `perm` on it (else 403)."""
    from apps.core.permissions import has_project_perm
    from apps.projects.selectors import project_get

    project = project_get(user=request.user, project_id=project_id)
    if perm is not None and not has_project_perm(request.user, project, perm):
        raise exceptions.PermissionDenied(f"You do not have the {perm.split('_')[0]} role in this project.")
    return project
