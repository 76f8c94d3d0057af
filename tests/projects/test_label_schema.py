"""Label schemas per task type, task data, and the sanity rules every result must pass (DESIGN.md, Task types).

Each refusal must come as a message a person can act on, never as a crash: results arrive from browsers and
API clients and may be any JSON at all. Span offsets are Python str indices (code points), end exclusive.
"""

import pytest
from django.core import exceptions

from apps.core.errors import ValidationError
from apps.projects.label_schema import label_schema_validate, result_validate, task_data_validate
from apps.projects.models import Project

CLASSES = {"labels": [{"value": "cat"}, {"value": "dog"}, {"value": "bird"}]}
SPANS = {"labels": [{"value": "PER"}, {"value": "ORG"}, {"value": "LOC"}]}
BOXES = {"labels": [{"value": "car"}, {"value": "person"}]}
IMAGE = {"image": "https://img.example.org/1.jpg", "width": 640, "height": 480}


def refused_schema(task_type, schema):
    """The messages with which `schema` is refused (and the headline names the first one)."""
    with pytest.raises(ValidationError) as refused:
        label_schema_validate(task_type, schema)
    messages = refused.value.errors.get("label_schema") or [refused.value.message]
    assert messages[0] in refused.value.message
    return messages


# --- label_schema_validate: good schemas ------------------------------------------------------------------------------


@pytest.mark.parametrize("task_type", ["classification", "multilabel", "text_spans", "bounding_boxes"])
def test_a_good_schema_is_normalised_with_hotkeys_colours_and_names(task_type):
    # given a schema naming only the label values
    schema = {"labels": [{"value": "a"}, {"value": "b"}]}

    # when it is validated
    result = label_schema_validate(task_type, schema)

    # then each label gets a hotkey, a colour and a display name, and there are no options
    assert result == {"labels": [{"value": "a", "name": "a", "hotkey": "1", "color": "#e6194b"},
                                 {"value": "b", "name": "b", "hotkey": "2", "color": "#3cb44b"}],
                      "options": {}}


def test_what_the_admin_wrote_is_kept():
    schema = {"labels": [{"value": "PER", "name": "Person", "hotkey": "p", "color": "#112233",
                          "description": "People, real or fictional"},
                         "ORG"],
              "options": {"min_spans": 1, "max_spans": 20}}
    result = label_schema_validate("text_spans", schema)
    assert result["labels"][0] == {"value": "PER", "name": "Person", "hotkey": "p", "color": "#112233",
                                   "description": "People, real or fictional"}
    assert result["labels"][1] == {"value": "ORG", "name": "ORG", "hotkey": "2", "color": "#3cb44b"}
    assert result["options"] == {"min_spans": 1, "max_spans": 20}


def test_labels_past_the_ninth_get_no_default_hotkey_and_colours_cycle():
    result = label_schema_validate("classification", {"labels": [f"L{i}" for i in range(1, 12)]})
    assert [label["hotkey"] for label in result["labels"]] == [str(i) for i in range(1, 10)] + ["", ""]
    assert result["labels"][9]["color"] == result["labels"][0]["color"]


@pytest.mark.parametrize("value", ["人物", "שם_פרטי", "Straße", "B-PER", "a.b:c/d", "x" * 64])
def test_label_values_may_be_non_latin(value):
    assert label_schema_validate("multilabel", {"labels": [value]})["labels"][0]["value"] == value


@pytest.mark.parametrize("task_type, options", [
    ("multilabel", {"min_labels": 0, "max_labels": 2}),
    ("multilabel", {"min_labels": 2, "max_labels": 2}),
    ("text_spans", {"max_spans": 0}),
    ("bounding_boxes", {"min_boxes": 1, "max_boxes": 50}),
])
def test_options_of_the_task_type_are_accepted(task_type, options):
    assert label_schema_validate(task_type, {"labels": ["a", "b"], "options": options})["options"] == options


# --- label_schema_validate: bad schemas, with readable messages ---------------------------------------------------------


@pytest.mark.parametrize("task_type, schema, message", [
    ("classification", ["cat", "dog"], "must be a JSON object with a 'labels' list"),
    ("classification", {"labels": ["cat", "dog"], "colours": {}}, "Unknown keys in the schema: colours."),
    ("classification", {}, "'labels' must be a non-empty list."),
    ("classification", {"labels": []}, "'labels' must be a non-empty list."),
    ("classification", {"labels": "cat,dog"}, "'labels' must be a non-empty list."),
    ("classification", {"labels": ["cat"]}, "A classification schema needs at least two labels."),
    ("multilabel", {"labels": [7]}, "Label 1 must be an object with a 'value'."),
    ("multilabel", {"labels": [{"name": "Cat"}]}, "Label 1: 'value' must be 1-64 letters"),
    ("multilabel", {"labels": [""]}, "Label 1: 'value' must be 1-64 letters"),
    ("multilabel", {"labels": ["x" * 65]}, "Label 1: 'value' must be 1-64 letters"),
    ("multilabel", {"labels": ["ok", "cat!"]}, "Label 2: 'value' must be 1-64 letters"),
    ("multilabel", {"labels": ["cat", "dog", "cat"]}, "Label 3: the value 'cat' is used twice."),
    ("multilabel", {"labels": [{"value": "a", "hotkey": "ab"}]}, "Label 1: a hotkey is one printable character"),
    ("multilabel", {"labels": [{"value": "a", "hotkey": "?"}]}, "Label 1: a hotkey is one printable character"),
    ("multilabel", {"labels": [{"value": "a", "hotkey": 1}]}, "Label 1: a hotkey is one printable character"),
    ("multilabel", {"labels": [{"value": "a", "hotkey": "\n"}]}, "Label 1: a hotkey is one printable character"),
    ("multilabel", {"labels": [{"value": "a", "hotkey": "x"}, {"value": "b", "hotkey": "X"}]},
     "Label 2: the hotkey 'X' is used twice."),
    ("multilabel", {"labels": [{"value": "a", "color": "red"}]}, "Label 1: 'color' must look like #1f77b4."),
    ("multilabel", {"labels": [{"value": "a", "color": "#12345"}]}, "Label 1: 'color' must look like #1f77b4."),
    ("multilabel", {"labels": [{"value": "a", "name": "  "}]}, "Label 1: 'name' must be a non-empty text"),
    ("multilabel", {"labels": [{"value": "a", "name": "n" * 201}]}, "Label 1: 'name' must be a non-empty text"),
    ("multilabel", {"labels": [{"value": "a", "shortcut": "s"}]}, "Label 1: unknown keys shortcut."),
    ("multilabel", {"labels": ["a"], "options": []}, "'options' must be an object."),
    ("classification", {"labels": ["a", "b"], "options": {"min_labels": 1}},
     "Option 'min_labels' does not apply to this task type (allowed: none)."),
    ("text_spans", {"labels": ["a"], "options": {"max_boxes": 1}},
     "Option 'max_boxes' does not apply to this task type (allowed: max_spans, min_spans)."),
    ("multilabel", {"labels": ["a"], "options": {"max_labels": -1}}, "Option 'max_labels' must be a whole number ≥ 0."),
    ("multilabel", {"labels": ["a"], "options": {"max_labels": 1.5}}, "Option 'max_labels' must be a whole number"),
    ("multilabel", {"labels": ["a"], "options": {"max_labels": True}}, "Option 'max_labels' must be a whole number"),
    ("multilabel", {"labels": ["a"], "options": {"max_labels": "2"}}, "Option 'max_labels' must be a whole number"),
    ("bounding_boxes", {"labels": ["a"], "options": {"min_boxes": 3, "max_boxes": 2}},
     "'min_boxes' (3) is more than 'max_boxes' (2)"),
    ("text_spans", {"labels": ["a"], "options": {"min_spans": 5, "max_spans": 0}},
     "'min_spans' (5) is more than 'max_spans' (0)"),
    ("multilabel", {"labels": ["a", "b"], "options": {"min_labels": 3}},
     "'min_labels' (3) is more than the 2 labels of the schema"),
])
def test_a_bad_schema_is_refused_with_a_readable_message(task_type, schema, message):
    messages = refused_schema(task_type, schema)
    assert any(message in m for m in messages), messages


def test_every_problem_of_a_schema_is_listed_not_only_the_first():
    messages = refused_schema("multilabel", {"labels": ["a", "a", {"value": "b", "color": "blue"}],
                                             "options": {"max_boxes": 1}})
    assert len(messages) == 3
    assert "used twice" in messages[0] and "'color'" in messages[1] and "does not apply" in messages[2]


def test_an_unknown_task_type_is_refused():
    with pytest.raises(ValidationError) as refused:
        label_schema_validate("audio", CLASSES)
    assert "Unknown task type 'audio'" in refused.value.message
    assert "task_type" in refused.value.errors


def test_the_admin_form_shows_schema_errors_on_the_field():
    # given a project whose schema has a duplicate value
    project = Project(name="P", slug="p", task_type="classification", label_schema={"labels": ["a", "a"]})

    # when the model is cleaned (as the admin does), then the error is on label_schema
    with pytest.raises(exceptions.ValidationError) as refused:
        project.clean()
    assert "used twice" in refused.value.message_dict["label_schema"][0]


@pytest.mark.django_db
def test_project_create_with_a_bad_schema_writes_nothing():
    from tests import factories

    with pytest.raises(ValidationError):
        factories.project(schema={"labels": ["only one"]})
    assert not Project.objects.exists()


# --- task_data_validate ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("task_type, data", [
    ("classification", {"text": "A cat on a mat"}),
    ("classification", {"image": "https://img.example.org/1.jpg"}),
    ("classification", {"image": "/media/demo/1.jpg"}),
    ("multilabel", {"text": "", "language": "de"}),
    ("text_spans", {"text": "Ada Lovelace wrote the first program."}),
    ("text_spans", {"text": "مرحبا بالعالم"}),
    ("bounding_boxes", IMAGE),
    ("bounding_boxes", {"image": "/media/demo/1.jpg", "width": 1, "height": 1}),
])
def test_good_task_data(task_type, data):
    assert task_data_validate(task_type, data) == []


@pytest.mark.parametrize("task_type, data, message", [
    ("classification", {}, "'data' must be a non-empty object."),
    ("classification", ["text"], "'data' must be a non-empty object."),
    ("classification", {"caption": "x"}, "'data' needs 'text' or 'image'."),
    ("classification", {"text": 42}, "'data.text' must be a string."),
    ("classification", {"image": "ftp://files.example.org/1.jpg"}, "'data.image' must be an http(s) URL"),
    ("classification", {"image": "javascript:alert(1)"}, "'data.image' must be an http(s) URL"),
    ("classification", {"image": "//evil.example.org/1.jpg"}, "'data.image' must be an http(s) URL"),
    ("classification", {"image": ""}, "'data.image' must be an http(s) URL"),
    ("classification", {"image": "https://x.org/" + "a" * 2048}, "'data.image' must be an http(s) URL"),
    ("text_spans", {"image": "https://img.example.org/1.jpg"}, "'data.text' is required for text spans."),
    ("bounding_boxes", {"width": 640, "height": 480, "text": "x"}, "'data.image' is required for bounding boxes."),
    ("bounding_boxes", {**IMAGE, "width": 0}, "'data.width' must be a positive whole number of pixels."),
    ("bounding_boxes", {**IMAGE, "height": -5}, "'data.height' must be a positive whole number of pixels."),
    ("bounding_boxes", {**IMAGE, "width": 640.5}, "'data.width' must be a positive whole number of pixels."),
    ("bounding_boxes", {**IMAGE, "width": True}, "'data.width' must be a positive whole number of pixels."),
    ("bounding_boxes", {"image": IMAGE["image"]}, "'data.width' must be a positive whole number of pixels."),
])
def test_bad_task_data_is_named(task_type, data, message):
    assert message in " ".join(task_data_validate(task_type, data))


# --- result_validate: classification and multilabel ---------------------------------------------------------------------


def check(task_type, result, data=None):
    schema = {"classification": CLASSES, "multilabel": CLASSES, "text_spans": SPANS, "bounding_boxes": BOXES}
    return result_validate(task_type, label_schema_validate(task_type, schema[task_type]),
                           data if data is not None else {"text": "x"}, result)


@pytest.mark.parametrize("result, message", [
    ({"label": "cat"}, None),
    ({"label": "zebra"}, "Label 'zebra' is not in the schema."),
    ({"label": "Cat"}, "Label 'Cat' is not in the schema."),
    ({}, "Required field 'label' is missing."),
    ({"labels": ["cat"]}, "Required field 'label' is missing."),
    ({"label": ["cat"]}, "Label ['cat'] is not in the schema."),
    ({"label": {"value": "cat"}}, "is not in the schema."),
    ({"label": 1}, "Label 1 is not in the schema."),
    ("cat", "The result must be an object."),
    (None, "The result must be an object."),
])
def test_classification_results(result, message):
    errors = check("classification", result)
    assert (errors == []) if message is None else (message in " ".join(errors)), errors


@pytest.mark.parametrize("result, message", [
    ({"labels": ["cat", "dog"]}, None),
    ({"labels": []}, None),
    ({"labels": ["cat", "zebra"]}, "Label 'zebra' is not in the schema."),
    ({"labels": ["cat", "cat"]}, "A label is listed twice."),
    ({"labels": "cat"}, "Required field 'labels' (a list) is missing."),
    ({"label": "cat"}, "Required field 'labels' (a list) is missing."),
    ({"labels": [["cat"]]}, "Label ['cat'] is not in the schema."),
    ({"labels": [{"value": "cat"}, None]}, "is not in the schema."),
])
def test_multilabel_results(result, message):
    errors = check("multilabel", result)
    assert (errors == []) if message is None else (message in " ".join(errors)), errors


@pytest.mark.parametrize("labels, message", [
    ([], "At least 1 labels required."),
    (["cat"], None),
    (["cat", "dog"], None),
    (["cat", "dog", "bird"], "At most 2 labels allowed."),
])
def test_multilabel_min_and_max_options(labels, message):
    schema = label_schema_validate("multilabel", {**CLASSES, "options": {"min_labels": 1, "max_labels": 2}})
    errors = result_validate("multilabel", schema, {"text": "x"}, {"labels": labels})
    assert (errors == []) if message is None else (errors == [message]), errors


# --- result_validate: text spans ----------------------------------------------------------------------------------------

TEXT = "Ada Lovelace met Babbage in London."  # 35 characters


def spans(*items):
    return {"spans": [{"start": s, "end": e, "label": label} for s, e, label in items]}


@pytest.mark.parametrize("result, message", [
    (spans((0, 12, "PER"), (17, 24, "PER"), (28, 34, "LOC")), None),
    (spans((0, 35, "ORG")), None),  # end is exclusive: the whole text
    ({"spans": []}, None),
    (spans((0, 36, "PER")), "Span 1: [0, 36) is outside the text (length 35)."),
    (spans((-1, 3, "PER")), "Span 1: [-1, 3) is outside the text (length 35)."),
    (spans((40, 45, "PER")), "Span 1: [40, 45) is outside the text (length 35)."),
    (spans((5, 5, "PER")), "Span 1 is empty or reversed: 'end' (5) must be greater than 'start' (5)."),
    (spans((9, 3, "PER")), "Span 1 is empty or reversed: 'end' (3) must be greater than 'start' (9)."),
    (spans((0, 3, "DATE")), "Span 1: label 'DATE' is not in the schema."),
    (spans((0, 3, ["PER"])), "Span 1: label ['PER'] is not in the schema."),
    (spans((0, 3, None)), "Span 1: label None is not in the schema."),
    (spans((0.0, 3, "PER")), "Span 1: 'start' and 'end' must be whole numbers."),
    (spans((True, 3, "PER")), "Span 1: 'start' and 'end' must be whole numbers."),
    (spans(("0", "3", "PER")), "Span 1: 'start' and 'end' must be whole numbers."),
    ({"spans": [{"start": 0, "label": "PER"}]}, "Span 1: 'start' and 'end' must be whole numbers."),
    ({"spans": ["0-3 PER"]}, "Span 1 must be an object."),
    ({"spans": {"start": 0}}, "Required field 'spans' (a list) is missing."),
    ({}, "Required field 'spans' (a list) is missing."),
])
def test_span_results(result, message):
    errors = check("text_spans", result, {"text": TEXT})
    assert (errors == []) if message is None else (message in " ".join(errors)), errors


@pytest.mark.parametrize("items, overlapping", [
    ([(0, 12, "PER"), (4, 12, "PER")], True),      # the second inside the first
    ([(0, 12, "PER"), (11, 20, "PER")], True),     # one character shared
    ([(17, 24, "PER"), (0, 12, "PER"), (10, 18, "PER")], True),  # out of order
    ([(0, 3, "PER"), (3, 12, "PER")], False),      # touching is not overlapping (end exclusive)
    ([(0, 12, "PER"), (0, 12, "ORG")], False),     # the same range with different labels
    ([(0, 35, "ORG"), (0, 12, "PER"), (28, 34, "LOC")], False),  # nested, different labels
])
def test_spans_may_not_overlap_with_the_same_label(items, overlapping):
    errors = check("text_spans", spans(*items), {"text": TEXT})
    if overlapping:
        assert errors and all("overlap with the same label 'PER'" in e for e in errors), errors
    else:
        assert errors == []


def test_overlap_message_names_both_spans():
    errors = check("text_spans", spans((0, 3, "LOC"), (20, 30, "PER"), (25, 27, "PER")), {"text": TEXT})
    assert errors == ["Spans 2 and 3 overlap with the same label 'PER'."]


@pytest.mark.parametrize("text, start, end, covered", [
    ("שלום עולם", 0, 4, "שלום"),             # Hebrew, right to left
    ("שלום עולם", 5, 9, "עולם"),
    ("مرحبا بالعالم", 6, 13, "بالعالم"),      # Arabic, right to left
    ("東京タワーに行った", 0, 5, "東京タワー"),     # no spaces at all
    ("😀 Ada Lovelace", 2, 14, "Ada Lovelace"),  # one code point outside the BMP counts as one character
    ("Zoë Ωmega", 0, 3, "Zoë"),
])
def test_span_offsets_are_python_string_indices_on_any_script(text, start, end, covered):
    # given a span over a word of a non-Latin or right-to-left text, counted in Python str indices
    assert text[start:end] == covered

    # then it is inside the text; one character more at the end is outside it
    assert check("text_spans", spans((start, end, "LOC")), {"text": text}) == []
    beyond = len(text) + 1
    assert check("text_spans", spans((start, beyond, "LOC")), {"text": text}) == [
        f"Span 1: [{start}, {beyond}) is outside the text (length {len(text)})."]


def test_a_decomposed_accent_counts_as_two_characters():
    text = "Zoe\u0308"  # e + combining diaeresis: four code points, three visible letters
    assert check("text_spans", spans((0, 4, "PER")), {"text": text}) == []
    assert "outside the text" in check("text_spans", spans((0, 5, "PER")), {"text": text})[0]


@pytest.mark.parametrize("data", [{}, {"text": None}, {"image": "/x.png"}, None])
def test_spans_on_a_task_without_text_are_outside_it_not_a_crash(data):
    errors = result_validate("text_spans", label_schema_validate("text_spans", SPANS), data,
                             spans((0, 1, "PER")))
    assert errors == ["Span 1: [0, 1) is outside the text (length 0)."]


@pytest.mark.parametrize("count, message", [
    (0, "At least 1 spans required."),
    (2, None),
    (3, "At most 2 spans allowed."),
])
def test_span_min_and_max_options(count, message):
    schema = label_schema_validate("text_spans", {**SPANS, "options": {"min_spans": 1, "max_spans": 2}})
    items = [(i * 4, i * 4 + 3, "PER") for i in range(count)]
    errors = result_validate("text_spans", schema, {"text": TEXT}, spans(*items))
    assert (errors == []) if message is None else (errors == [message]), errors


# --- result_validate: bounding boxes ------------------------------------------------------------------------------------


def box(x=0.1, y=0.2, w=0.3, h=0.1, label="car"):
    return {"x": x, "y": y, "w": w, "h": h, "label": label}


@pytest.mark.parametrize("result, message", [
    ({"boxes": [box(), box(label="person")]}, None),
    ({"boxes": []}, None),
    ({"boxes": [box(x=0, y=0, w=1, h=1)]}, None),          # the whole image
    ({"boxes": [box(x=0.5, w=0.5)]}, None),               # touching the right edge
    ({"boxes": [box(x=0.30000000000000004, w=0.7000000000000002)]}, None),  # rounding: 1.0000000000000002
    ({"boxes": [box(x=0.8, w=0.3)]}, "Box 1: the box reaches outside the image."),
    ({"boxes": [box(y=0.95, h=0.1)]}, "Box 1: the box reaches outside the image."),
    ({"boxes": [box(w=0)]}, "Box 1: width and height must be positive."),
    ({"boxes": [box(h=0.0)]}, "Box 1: width and height must be positive."),
    ({"boxes": [box(w=-0.1)]}, "Box 1: x, y, w and h must be fractions of the image between 0 and 1."),
    ({"boxes": [box(x=-0.1)]}, "Box 1: x, y, w and h must be fractions of the image between 0 and 1."),
    ({"boxes": [box(x=1.5)]}, "Box 1: x, y, w and h must be fractions of the image between 0 and 1."),
    ({"boxes": [box(x=120, y=40, w=30, h=20)]}, "must be fractions of the image"),  # pixels instead of fractions
    ({"boxes": [box(x=float("nan"))]}, "must be fractions of the image"),
    ({"boxes": [box(w=float("inf"))]}, "must be fractions of the image"),
    ({"boxes": [box(x=True)]}, "must be fractions of the image"),
    ({"boxes": [box(x="0.1")]}, "must be fractions of the image"),
    ({"boxes": [{"x": 0.1, "y": 0.1, "w": 0.1, "label": "car"}]}, "must be fractions of the image"),
    ({"boxes": [box(label="truck")]}, "Box 1: label 'truck' is not in the schema."),
    ({"boxes": [box(label=["car"])]}, "Box 1: label ['car'] is not in the schema."),
    ({"boxes": [box(), "car"]}, "Box 2 must be an object."),
    ({"boxes": box()}, "Required field 'boxes' (a list) is missing."),
    ({}, "Required field 'boxes' (a list) is missing."),
])
def test_box_results(result, message):
    errors = check("bounding_boxes", result, IMAGE)
    assert (errors == []) if message is None else (message in " ".join(errors)), errors


def test_every_bad_box_is_named():
    errors = check("bounding_boxes", {"boxes": [box(), box(x=0.9), box(w=0, label="bus")]}, IMAGE)
    assert errors == ["Box 2: the box reaches outside the image.",
                      "Box 3: label 'bus' is not in the schema.",
                      "Box 3: width and height must be positive."]


@pytest.mark.parametrize("count, message", [(0, "At least 1 boxes required."), (1, None),
                                            (3, "At most 2 boxes allowed.")])
def test_box_min_and_max_options(count, message):
    schema = label_schema_validate("bounding_boxes", {**BOXES, "options": {"min_boxes": 1, "max_boxes": 2}})
    errors = result_validate("bounding_boxes", schema, IMAGE, {"boxes": [box()] * count})
    assert (errors == []) if message is None else (errors == [message]), errors


def test_an_unknown_task_type_has_no_valid_result():
    assert result_validate("audio", CLASSES, {}, {"label": "cat"}) == ["Unknown task type 'audio'."]
