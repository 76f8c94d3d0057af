"""Label schemas per task type, and the sanity rules every result, gold answer and prediction must pass.

A schema is `{"labels": [{"value", "name", "hotkey", "color"}], "options": {...}}`; results follow DESIGN.md:
classification `{"label"}`, multilabel `{"labels"}`, text spans `{"spans"}`, bounding boxes `{"boxes"}`.
"""

import math
import re

from django.utils.translation import gettext as _, gettext_lazy

from apps.core.errors import ValidationError


class TaskType:
    CLASSIFICATION = "classification"
    MULTILABEL = "multilabel"
    TEXT_SPANS = "text_spans"
    BOUNDING_BOXES = "bounding_boxes"

    choices = [
        (CLASSIFICATION, "Classification"),
        (MULTILABEL, "Multi-label classification"),
        (TEXT_SPANS, "Text spans (NER)"),
        (BOUNDING_BOXES, "Bounding boxes"),
    ]


_COLOR = re.compile(r"^#[0-9a-fA-F]{6}$")
_VALUE = re.compile(r"^[\w.\-:/ ]{1,64}$", re.UNICODE)
_OPTIONS = {
    TaskType.CLASSIFICATION: set(),
    TaskType.MULTILABEL: {"min_labels", "max_labels"},
    TaskType.TEXT_SPANS: {"min_spans", "max_spans"},
    TaskType.BOUNDING_BOXES: {"min_boxes", "max_boxes"},
}
DEFAULT_COLORS = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45", "#9a6324"]


def label_schema_validate(task_type, schema):
    """Check a label schema for `task_type`; return it normalised (hotkeys and colours filled in) or raise."""
    errors = []
    if task_type not in _OPTIONS:
        raise ValidationError(_("Unknown task type %(type)r.") % {"type": task_type}, errors={"task_type": ["unknown"]})
    if not isinstance(schema, dict):
        raise ValidationError(_("The label schema must be a JSON object with a 'labels' list."))
    unknown_keys = set(schema) - {"labels", "options"}
    if unknown_keys:
        errors.append(_("Unknown keys in the schema: %(keys)s.") % {"keys": ", ".join(sorted(unknown_keys))})
    labels = schema.get("labels")
    if not isinstance(labels, list) or not labels:
        errors.append(_("'labels' must be a non-empty list."))
        labels = []
    minimum = 2 if task_type == TaskType.CLASSIFICATION else 1
    if labels and len(labels) < minimum:
        errors.append(_("A classification schema needs at least two labels."))
    normalised, values, hotkeys = [], set(), set()
    for position, label in enumerate(labels, start=1):
        if isinstance(label, str):
            label = {"value": label}
        if not isinstance(label, dict):
            errors.append(_("Label %(n)d must be an object with a 'value'.") % {"n": position})
            continue
        value = label.get("value")
        if not isinstance(value, str) or not _VALUE.match(value):
            errors.append(
                _("Label %(n)d: 'value' must be 1-64 letters, digits, spaces or _ . - : /.") % {"n": position}
            )
            continue
        if value in values:
            errors.append(_("Label %(n)d: the value %(value)r is used twice.") % {"n": position, "value": value})
        values.add(value)
        hotkey = label.get("hotkey", str(position) if position <= 9 else "")
        if hotkey:
            if not isinstance(hotkey, str) or len(hotkey) != 1 or hotkey in "?" or not hotkey.isprintable():
                errors.append(_("Label %(n)d: a hotkey is one printable character other than '?'.") % {"n": position})
            elif hotkey.lower() in hotkeys:
                errors.append(_("Label %(n)d: the hotkey %(key)r is used twice.") % {"n": position, "key": hotkey})
            hotkeys.add(str(hotkey).lower())
        color = label.get("color", DEFAULT_COLORS[(position - 1) % len(DEFAULT_COLORS)])
        if not isinstance(color, str) or not _COLOR.match(color):
            errors.append(_("Label %(n)d: 'color' must look like #1f77b4.") % {"n": position})
        name = label.get("name", value)
        if not isinstance(name, str) or not name.strip() or len(name) > 200:
            errors.append(_("Label %(n)d: 'name' must be a non-empty text of at most 200 characters.") % {"n": position})
        extra = set(label) - {"value", "name", "hotkey", "color", "description"}
        if extra:
            errors.append(_("Label %(n)d: unknown keys %(keys)s.") % {"n": position, "keys": ", ".join(sorted(extra))})
        normalised.append({"value": value, "name": name, "hotkey": hotkey, "color": color, **(
            {"description": label["description"]} if "description" in label else {})})
    options = schema.get("options", {})
    if not isinstance(options, dict):
        errors.append(_("'options' must be an object."))
        options = {}
    for key, option in options.items():
        if key not in _OPTIONS[task_type]:
            allowed = ", ".join(sorted(_OPTIONS[task_type])) or _("none")
            errors.append(_("Option %(key)r does not apply to this task type (allowed: %(allowed)s).")
                          % {"key": key, "allowed": allowed})
        elif not _whole(option):
            errors.append(_("Option %(key)r must be a whole number ≥ 0.") % {"key": key})
    errors += _options_satisfiable(task_type, options, len(normalised))
    if errors:
        raise ValidationError(_("The label schema is not valid: %(first)s") % {"first": errors[0]},
                              errors={"label_schema": errors})
    return {"labels": normalised, "options": options}


def _whole(value):
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _options_satisfiable(task_type, options, label_count):
    """Messages for bounds that no result could meet (a minimum above the maximum, more labels than exist)."""
    errors = []
    for key in sorted(_OPTIONS[task_type]):
        if not key.startswith("min_"):
            continue
        noun = key[len("min_"):]
        low, high = options.get(key), options.get(f"max_{noun}")
        if _whole(low) and _whole(high) and low > high:
            errors.append(_("Option 'min_%(noun)s' (%(low)d) is more than 'max_%(noun)s' (%(high)d): "
                            "no result could pass.") % {"noun": noun, "low": low, "high": high})
    low = options.get("min_labels")
    if task_type == TaskType.MULTILABEL and _whole(low) and low > label_count:
        errors.append(_("Option 'min_labels' (%(low)d) is more than the %(n)d labels of the schema: "
                        "no result could pass.") % {"low": low, "n": label_count})
    return errors


def label_values(schema):
    return [label["value"] for label in schema.get("labels", [])]


def _in_schema(label, allowed):
    # A result is any JSON a client sent: a list or an object where a label belongs must be refused, not hashed.
    return isinstance(label, str) and label in allowed


def _is_fraction(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and 0 <= value <= 1


def _image_url_ok(url):
    # The browser loads images; the server never fetches them. Only web and site-relative URLs are shown.
    return isinstance(url, str) and 0 < len(url) <= 2048 and (
        url.startswith(("http://", "https://")) or (url.startswith("/") and not url.startswith("//"))
    )


def task_data_validate(task_type, data):
    """Check a task's `data` for its task type; return a list of messages (empty when valid)."""
    if not isinstance(data, dict) or not data:
        return [_("'data' must be a non-empty object.")]
    errors = []
    text, image = data.get("text"), data.get("image")
    if text is not None and not isinstance(text, str):
        errors.append(_("'data.text' must be a string."))
    if image is not None and not _image_url_ok(image):
        errors.append(_("'data.image' must be an http(s) URL or a path starting with '/'."))
    if task_type in (TaskType.CLASSIFICATION, TaskType.MULTILABEL) and text is None and image is None:
        errors.append(_("'data' needs 'text' or 'image'."))
    if task_type == TaskType.TEXT_SPANS and not isinstance(text, str):
        errors.append(_("'data.text' is required for text spans."))
    if task_type == TaskType.BOUNDING_BOXES:
        if image is None:
            errors.append(_("'data.image' is required for bounding boxes."))
        for key in ("width", "height"):
            size = data.get(key)
            if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
                errors.append(_("'data.%(key)s' must be a positive whole number of pixels.") % {"key": key})
    return errors


# Translated when a message is made, not on every check (result_validate runs over every annotation of a report).
NOUNS = {"labels": gettext_lazy("labels"), "spans": gettext_lazy("spans"), "boxes": gettext_lazy("boxes")}


def _count_bounds(options, prefix, count, noun):
    errors = []
    low, high = options.get(f"min_{prefix}"), options.get(f"max_{prefix}")
    if low is not None and count < low:
        errors.append(_("At least %(n)d %(noun)s required.") % {"n": low, "noun": noun})
    if high is not None and count > high:
        errors.append(_("At most %(n)d %(noun)s allowed.") % {"n": high, "noun": noun})
    return errors


def result_validate(task_type, schema, data, result):
    """The sanity rules of DESIGN.md: return a list of messages naming the rule broken (empty when valid)."""
    if not isinstance(result, dict):
        return [_("The result must be an object.")]
    allowed = set(label_values(schema))
    options = schema.get("options", {})
    if task_type == TaskType.CLASSIFICATION:
        label = result.get("label")
        if label is None:
            return [_("Required field 'label' is missing.")]
        if not _in_schema(label, allowed):
            return [_("Label %(label)r is not in the schema.") % {"label": label}]
        return []
    if task_type == TaskType.MULTILABEL:
        labels = result.get("labels")
        if not isinstance(labels, list):
            return [_("Required field 'labels' (a list) is missing.")]
        errors = [_("Label %(label)r is not in the schema.") % {"label": x} for x in labels
                  if not _in_schema(x, allowed)]
        if len(set(map(str, labels))) != len(labels):
            errors.append(_("A label is listed twice."))
        return errors + _count_bounds(options, "labels", len(labels), NOUNS["labels"])
    if task_type == TaskType.TEXT_SPANS:
        spans = result.get("spans")
        if not isinstance(spans, list):
            return [_("Required field 'spans' (a list) is missing.")]
        text = data.get("text") if isinstance(data, dict) else None
        text = text if isinstance(text, str) else ""
        errors, by_label = [], {}
        for n, span in enumerate(spans, start=1):
            if not isinstance(span, dict):
                errors.append(_("Span %(n)d must be an object.") % {"n": n})
                continue
            start, end, label = span.get("start"), span.get("end"), span.get("label")
            if not _in_schema(label, allowed):
                errors.append(_("Span %(n)d: label %(label)r is not in the schema.") % {"n": n, "label": label})
            if not all(isinstance(v, int) and not isinstance(v, bool) for v in (start, end)):
                errors.append(_("Span %(n)d: 'start' and 'end' must be whole numbers.") % {"n": n})
                continue
            if end <= start:
                errors.append(_("Span %(n)d is empty or reversed: 'end' (%(end)d) must be greater than "
                                "'start' (%(start)d).") % {"n": n, "start": start, "end": end})
                continue
            if not 0 <= start < end <= len(text):
                errors.append(_("Span %(n)d: [%(start)d, %(end)d) is outside the text (length %(length)d).")
                              % {"n": n, "start": start, "end": end, "length": len(text)})
                continue
            if isinstance(label, str):  # a span without a usable label is already refused above
                by_label.setdefault(label, []).append((start, end, n))
        for label, ranges in by_label.items():
            ranges.sort()
            for (_s1, e1, n1), (s2, _e2, n2) in zip(ranges, ranges[1:]):
                if s2 < e1:
                    errors.append(_("Spans %(a)d and %(b)d overlap with the same label %(label)r.")
                                  % {"a": n1, "b": n2, "label": label})
        return errors + _count_bounds(options, "spans", len(spans), NOUNS["spans"])
    if task_type == TaskType.BOUNDING_BOXES:
        boxes = result.get("boxes")
        if not isinstance(boxes, list):
            return [_("Required field 'boxes' (a list) is missing.")]
        errors = []
        for n, box in enumerate(boxes, start=1):
            if not isinstance(box, dict):
                errors.append(_("Box %(n)d must be an object.") % {"n": n})
                continue
            if not _in_schema(box.get("label"), allowed):
                errors.append(_("Box %(n)d: label %(label)r is not in the schema.") % {"n": n, "label": box.get("label")})
            x, y, w, h = (box.get(k) for k in ("x", "y", "w", "h"))
            if not all(_is_fraction(v) for v in (x, y, w, h)):
                errors.append(_("Box %(n)d: x, y, w and h must be fractions of the image between 0 and 1.") % {"n": n})
                continue
            if w <= 0 or h <= 0:
                errors.append(_("Box %(n)d: width and height must be positive.") % {"n": n})
            if x + w > 1 + 1e-9 or y + h > 1 + 1e-9:
                errors.append(_("Box %(n)d: the box reaches outside the image.") % {"n": n})
        return errors + _count_bounds(options, "boxes", len(boxes), NOUNS["boxes"])
    return [_("Unknown task type %(type)r.") % {"type": task_type}]
