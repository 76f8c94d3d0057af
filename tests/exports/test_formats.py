"""Export round trips per format through `GET /api/v1/projects/{id}/export/` (API.md, Export): what a customer
downloads reads back with an ordinary reader — json, csv, pycocotools, a strict CoNLL-2003 reader — and each
record carries the final result and its provenance (annotators, reviewers and decisions, guideline version,
agreement)."""

import csv
import io
import json
from datetime import datetime

import pytest
from pycocotools.coco import COCO

from apps.projects import services as project_services
from apps.tasks.exports import CSV_COLUMNS
from apps.tasks.models import Annotation

from .conftest import body, fix_with, reject_then
from .conll import character_spans, conll_read

pytestmark = pytest.mark.django_db

TEXTS = {"t1": "a cat", "t2": "a dog", "t3": "a bird, or a cat?", "t4": "still being labelled",
         "t5": "naïve \"quotes\", commas,\nnew lines, 日本語 and \u2028 a line separator"}


def classification(labelled):
    """t1: both say cat, approved (guideline v1). Guideline v2 comes out. t2: annotator1 says cat, is rejected and
    resubmits dog. t3: annotator1's cat is fixed to bird by the reviewer. t4: one submission only (in progress).
    t5: awkward text, both say dog."""
    given = labelled("classification")
    given.import_tasks([{"data": {"text": text}, "external_id": key} for key, text in TEXTS.items()])
    given.label("t1", {"label": "cat"}, {"label": "cat"})
    given.guideline("Birds are birds, even in cages.")
    given.label("t2", {"label": "dog"}, {"label": "cat"}, decisions={1: reject_then({"label": "dog"})})
    given.label("t3", {"label": "bird"}, {"label": "cat"}, decisions={1: fix_with({"label": "bird"})})
    given.submit(given.task("t4"), given.annotators[0], {"label": "cat"})
    given.label("t5", {"label": "dog"}, {"label": "dog"})
    return given


EXPECTED = {
    # external id: result, decisions in the order they were taken, error types per decision, guideline, agreement
    "t1": ({"label": "cat"}, ["approve", "approve"], [[], []], 1, 1.0),
    "t2": ({"label": "dog"}, ["approve", "reject", "approve"], [[], ["wrong_label"], []], 2, 1.0),
    # the reviewer's fix is the result; agreement is between the annotators' own submissions (METRICS.md)
    "t3": ({"label": "bird"}, ["approve", "fix"], [[], ["boundary"]], 2, 0.0),
    "t5": ({"label": "dog"}, ["approve", "approve"], [[], []], 2, 1.0),
}


def assert_provenance(record, key, given):
    result, decisions, error_types, guideline, agreement = EXPECTED[key]
    task = given.task(key)
    assert record["id"] == task.pk
    assert record["status"] == "accepted"
    assert record["batch"] == task.batch.name
    assert record["data"] == {"text": TEXTS[key]}
    assert record["result"] == result == task.final_result
    assert datetime.fromisoformat(record["accepted_at"]) == task.accepted_at
    provenance = record["provenance"]
    assert provenance["annotators"] == ["annotator0", "annotator1"]
    assert [r["decision"] for r in provenance["reviews"]] == decisions
    assert [r["error_types"] for r in provenance["reviews"]] == error_types
    assert {r["reviewer"] for r in provenance["reviews"]} == {"reviewer"}
    if key == "t2":  # whose work each decision was on, and which version
        assert [(r["annotator"], r["version"], r["comment"]) for r in provenance["reviews"]] == [
            ("annotator0", 1, "fine"), ("annotator1", 1, "look again"), ("annotator1", 2, "fine")]
    assert provenance["guideline_version"] == guideline
    assert provenance["agreement"] == pytest.approx(agreement)
    # every current version, as the annotations endpoint shows them
    current = Annotation.objects.filter(task=task, is_current=True).order_by("assignment_id")
    assert [(a["annotator"], a["author"], a["version"], a["source"], a["result"], a["guideline_version"])
            for a in provenance["annotations"]] == [
        (a.annotator.username, a.author.username, a.version, a.source, a.result, a.guideline_version)
        for a in current]


def test_json_is_one_array_of_accepted_records_with_their_provenance(labelled):
    given = classification(labelled)

    response = given.export(format="json")

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response["Content-Disposition"] == f'attachment; filename="{given.project.slug}.json"'
    records = json.loads(body(response))
    assert [r["external_id"] for r in records] == ["t1", "t2", "t3", "t5"]  # t4 is not accepted; id order
    for record in records:
        assert_provenance(record, record["external_id"], given)


def test_jsonl_is_one_record_per_line(labelled):
    given = classification(labelled)

    response = given.export(format="jsonl")

    assert response.status_code == 200
    assert response["Content-Type"] == "application/x-ndjson"
    text = body(response)
    assert text.endswith("\n")
    lines = text.split("\n")[:-1]  # JSON Lines: \n ends a record; U+2028 inside a string does not
    records = [json.loads(line) for line in lines]
    assert [r["external_id"] for r in records] == ["t1", "t2", "t3", "t5"]
    for record in records:
        assert_provenance(record, record["external_id"], given)


def test_json_of_an_empty_selection_is_an_empty_array(labelled):
    given = labelled("classification")
    given.import_tasks([{"data": {"text": "x"}}])

    assert json.loads(body(given.export(format="json"))) == []
    assert body(given.export(format="jsonl")) == ""


def test_csv_reads_back_with_dictreader(labelled):
    given = classification(labelled)

    response = given.export(format="csv")

    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    reader = csv.DictReader(io.StringIO(body(response), newline=""))
    rows = list(reader)
    assert reader.fieldnames == CSV_COLUMNS
    assert [row["external_id"] for row in rows] == ["t1", "t2", "t3", "t5"]
    for row in rows:
        key = row["external_id"]
        result, decisions, _error_types, guideline, agreement = EXPECTED[key]
        task = given.task(key)
        assert row["id"] == str(task.pk)
        assert (row["batch"], row["status"], row["is_gold"]) == (task.batch.name, "accepted", "False")
        assert json.loads(row["data"]) == {"text": TEXTS[key]}  # commas, quotes and new lines survive
        assert json.loads(row["result"]) == result
        assert row["annotators"] == "annotator0;annotator1"
        assert row["reviewers"] == "reviewer"
        assert row["decisions"] == ";".join(decisions)
        assert row["guideline_version"] == str(guideline)
        assert float(row["agreement"]) == pytest.approx(agreement)
        assert datetime.fromisoformat(row["accepted_at"]) == task.accepted_at


# --- COCO -----------------------------------------------------------------------------------------------------------

BOXES = {
    "b1": ({"image": "https://img.example.org/1.jpg", "width": 640, "height": 480},
           [{"x": 0.1, "y": 0.2, "w": 0.3, "h": 0.1, "label": "car"},
            {"x": 0.5, "y": 0.5, "w": 0.25, "h": 0.5, "label": "person"}]),
    "b2": ({"image": "/media/2.png", "width": 1920, "height": 1080},
           [{"x": 0.0, "y": 0.0, "w": 1.0, "h": 1.0, "label": "car"}]),
    "b3": ({"image": "https://img.example.org/3.jpg", "width": 100, "height": 50}, []),
}


def boxes_project(labelled):
    given = labelled("bounding_boxes")
    given.import_tasks([{"data": data, "external_id": key} for key, (data, _boxes) in BOXES.items()])
    for key, (_data, boxes) in BOXES.items():
        if key == "b2":  # annotator1 drew it too small; the reviewer fixes it
            given.label(key, {"boxes": boxes}, {"boxes": [{**boxes[0], "w": 0.5}]},
                        decisions={1: fix_with({"boxes": boxes})})
        else:
            given.label(key, {"boxes": boxes}, {"boxes": boxes})
    return given


def load_coco(text, tmp_path):
    path = tmp_path / "export.coco.json"
    path.write_text(text, encoding="utf-8")
    return COCO(str(path))


def test_coco_loads_with_pycocotools_and_boxes_are_absolute_pixels(labelled, tmp_path):
    given = boxes_project(labelled)

    response = given.export(format="coco")

    assert response.status_code == 200
    assert response["Content-Disposition"] == f'attachment; filename="{given.project.slug}.coco.json"'
    coco = load_coco(body(response), tmp_path)
    tasks = {key: given.task(key) for key in BOXES}
    assert sorted(coco.getImgIds()) == sorted(t.pk for t in tasks.values())
    assert {c["name"]: c["id"] for c in coco.loadCats(coco.getCatIds())} == {"car": 1, "person": 2}
    for key, task in tasks.items():
        data, boxes = BOXES[key]
        [image] = coco.loadImgs(task.pk)
        assert (image["file_name"], image["width"], image["height"]) == (data["image"], data["width"],
                                                                         data["height"])
        annotations = coco.loadAnns(coco.getAnnIds(imgIds=[task.pk]))
        assert len(annotations) == len(boxes)
        for annotation, box in zip(annotations, boxes):
            expected = [box["x"] * data["width"], box["y"] * data["height"], box["w"] * data["width"],
                        box["h"] * data["height"]]
            assert annotation["bbox"] == pytest.approx(expected, abs=0.01)
            assert annotation["area"] == pytest.approx(expected[2] * expected[3], abs=0.01)
            assert coco.loadCats(annotation["category_id"])[0]["name"] == box["label"]
            assert annotation["iscrowd"] == 0
    # the known answer, written out: 0.1·640, 0.2·480, 0.3·640, 0.1·480
    [car] = coco.loadAnns(coco.getAnnIds(imgIds=[tasks["b1"].pk], catIds=[1]))
    assert car["bbox"] == pytest.approx([64, 96, 192, 48])
    assert len(set(coco.getAnnIds())) == 3  # annotation ids are unique
    # the box is also its polygon, so mask-based tools work: the mask covers the box
    image = coco.loadImgs(tasks["b1"].pk)[0]
    assert coco.annToMask(car).shape == (image["height"], image["width"])
    assert coco.annToMask(car).sum() == pytest.approx(192 * 48, rel=0.05)


def test_coco_keeps_a_label_dropped_from_the_schema_after_labelling(labelled, tmp_path):
    # given accepted boxes labelled "person", and then the manager drops "person" from the schema
    given = boxes_project(labelled)
    project_services.project_update(project=given.project, actor=given.manager,
                                    label_schema={"labels": [{"value": "car"}, {"value": "truck"}]})

    coco = load_coco(body(given.export(format="coco")), tmp_path)

    # then every annotation still points at a category, and the dropped label is one
    categories = {c["id"]: c["name"] for c in coco.loadCats(coco.getCatIds())}
    assert sorted(categories.values()) == ["car", "person", "truck"]
    names = [categories[a["category_id"]] for a in coco.loadAnns(coco.getAnnIds())]
    assert sorted(names) == ["car", "car", "person"]


# --- CoNLL-2003 -----------------------------------------------------------------------------------------------------

SPANS = {
    "s1": ("Angela Merkel visited Paris .", [(0, 13, "PER"), (22, 27, "LOC")]),
    # Cyrillic; "Пекин." ends mid-word: the full stop stays outside the entity
    "s2": ("Владимир Путин посетил Пекин.", [(0, 14, "PER"), (23, 28, "LOC")]),
    # a span that starts mid-word
    "s3": ("the pre-Obama era", [(8, 13, "PER")]),
    # no spaces at all: Chinese is written without them
    "s4": ("习近平访问了巴黎。", [(0, 3, "PER"), (6, 8, "LOC")]),
    # two entities of one type side by side, and a double space inside an entity
    "s5": ("Merkel Macron met in São  Paulo", [(0, 6, "PER"), (7, 13, "PER"), (21, 31, "LOC")]),
    # Arabic, right to left
    "s6": ("زار محمد القاهرة", [(4, 8, "PER"), (9, 16, "LOC")]),
    "s7": ("nothing to see here", []),
}


def spans_project(labelled, spans=SPANS):
    given = labelled("text_spans")
    given.import_tasks([{"data": {"text": text}, "external_id": key} for key, (text, _spans) in spans.items()])
    for key, (_text, spans_) in spans.items():
        result = {"spans": [{"start": s, "end": e, "label": label} for s, e, label in spans_]}
        given.label(key, result, result)
    return given


def test_conll_parses_and_its_tags_give_back_the_spans(labelled):
    given = spans_project(labelled)
    for key, (text, spans) in SPANS.items():  # the fixtures say what they mean
        assert all(text[s:e].strip() == text[s:e] for s, e, _label in spans), key

    response = given.export(format="conll")

    assert response.status_code == 200
    assert response["Content-Type"] == "text/plain; charset=utf-8"
    document = conll_read(body(response))
    assert document.documents == 1
    assert len(document) == len(SPANS)  # one sentence per task, in id order
    for (key, (text, spans)), sentence in zip(SPANS.items(), document):
        assert character_spans(text, sentence) == sorted(spans), key


def test_conll_tags_word_by_word(labelled):
    given = spans_project(labelled)

    document = conll_read(body(given.export(format="conll")))

    by_key = dict(zip(SPANS, document))
    assert by_key["s1"] == [("Angela", "B-PER"), ("Merkel", "I-PER"), ("visited", "O"), ("Paris", "B-LOC"),
                            (".", "O")]
    assert by_key["s3"] == [("the", "O"), ("pre-", "O"), ("Obama", "B-PER"), ("era", "O")]
    assert by_key["s2"][-2:] == [("Пекин", "B-LOC"), (".", "O")]
    # Chinese: one character per line, the convention of Chinese NER corpora
    assert by_key["s4"] == [("习", "B-PER"), ("近", "I-PER"), ("平", "I-PER"), ("访", "O"), ("问", "O"),
                            ("了", "O"), ("巴", "B-LOC"), ("黎", "I-LOC"), ("。", "O")]
    assert [tag for _word, tag in by_key["s5"]] == ["B-PER", "B-PER", "O", "O", "B-LOC", "I-LOC"]
    assert {tag for _word, tag in by_key["s7"]} == {"O"}


def test_conll_keeps_the_outer_entity_when_entities_of_two_types_nest(labelled):
    # BIO cannot nest: "New York University" is an organisation whose name holds a place
    text = "at New York University today"
    given = spans_project(labelled, {"n1": (text, [(3, 11, "LOC"), (3, 22, "ORG")])})

    [sentence] = conll_read(body(given.export(format="conll")))

    assert character_spans(text, sentence) == [(3, 22, "ORG")]


def test_conll_labels_with_spaces_keep_four_columns(labelled):
    schema = {"labels": [{"value": "Person name"}, {"value": "LOC"}]}
    given = labelled("text_spans", schema=schema)
    text = "Ada Lovelace wrote it"
    given.import_tasks([{"data": {"text": text}, "external_id": "x"}])
    result = {"spans": [{"start": 0, "end": 12, "label": "Person name"}]}
    given.label("x", result, result)

    [sentence] = conll_read(body(given.export(format="conll")))

    assert sentence[:2] == [("Ada", "B-Person_name"), ("Lovelace", "I-Person_name")]


# --- provenance in COCO and CoNLL -----------------------------------------------------------------------------------
# Neither format has a place for it: COCO's image records take one extra key (readers ignore keys they do not know),
# CoNLL's sentences a comment line (`# labelportal = {...}`) before their first token. `?provenance=false` leaves
# both out.

COCO_IMAGE_KEYS = {"id", "file_name", "width", "height"}


def decisions_of(reviews):
    """The JSON export's reviews as the compact provenance lists them (the comments stay in the JSON export)."""
    return [{key: review[key] for key in ("reviewer", "annotator", "version", "decision", "error_types", "decided_at")}
            for review in reviews]


def assert_compact_provenance(provenance, task, full_record):
    """The compact provenance of COCO and CoNLL says what the JSON export's record says."""
    full = full_record["provenance"]
    assert provenance["task_id"] == task.pk
    assert provenance["external_id"] == task.external_id
    assert provenance["batch"] == task.batch.name
    assert provenance["annotators"] == full["annotators"] == ["annotator0", "annotator1"]
    assert provenance["reviewers"] == sorted({r["reviewer"] for r in full["reviews"]}) == ["reviewer"]
    assert provenance["decisions"] == decisions_of(full["reviews"])
    assert provenance["guideline_version"] == full["guideline_version"]
    assert provenance["agreement"] == full["agreement"]
    assert set(provenance) == {"task_id", "external_id", "batch", "annotators", "reviewers", "decisions",
                               "guideline_version", "agreement"}


def test_coco_images_carry_their_provenance_under_one_extra_key(labelled, tmp_path):
    given = boxes_project(labelled)
    given.guideline("Boxes hug the object.")
    full = {record["id"]: record for record in json.loads(body(given.export(format="json")))}

    coco = load_coco(body(given.export(format="coco")), tmp_path)  # pycocotools still loads it

    for key in BOXES:
        task = given.task(key)
        [image] = coco.loadImgs(task.pk)
        assert set(image) == COCO_IMAGE_KEYS | {"labelportal"}
        assert_compact_provenance(image["labelportal"], task, full[task.pk])
    fixed = coco.loadImgs(given.task("b2").pk)[0]["labelportal"]
    assert [(d["annotator"], d["decision"], d["error_types"]) for d in fixed["decisions"]] == [
        ("annotator0", "approve", []), ("annotator1", "fix", ["boundary"])]
    assert all(datetime.fromisoformat(d["decided_at"]) for d in fixed["decisions"])
    assert fixed["agreement"] is not None


def test_coco_without_provenance_is_plain_coco(labelled, tmp_path):
    given = boxes_project(labelled)
    with_provenance = json.loads(body(given.export(format="coco")))

    text = body(given.export(format="coco", provenance="false"))

    plain = json.loads(text)
    assert all(set(image) == COCO_IMAGE_KEYS for image in plain["images"])
    assert [image["id"] for image in plain["images"]] == [image["id"] for image in with_provenance["images"]]
    assert plain["annotations"] == with_provenance["annotations"]
    assert plain["categories"] == with_provenance["categories"]
    assert len(load_coco(text, tmp_path).getAnnIds()) == 3


def test_conll_opens_each_sentence_with_its_provenance_as_a_comment(labelled):
    given = spans_project(labelled)
    full = {record["id"]: record for record in json.loads(body(given.export(format="json")))}

    text = body(given.export(format="conll"))

    document = conll_read(text)
    assert document.documents == 1 and len(document) == len(SPANS)
    for key, comments in zip(SPANS, document.comments):
        [comment] = comments
        assert comment.startswith("labelportal = {")
        task = given.task(key)
        assert_compact_provenance(json.loads(comment.removeprefix("labelportal = ")), task, full[task.pk])
    # the comment comes right before the sentence's first token
    lines = text.split("\n")
    first = lines.index(next(line for line in lines if line.startswith("# ")))
    assert lines[:first] == ["-DOCSTART- -X- -X- O", ""]
    assert lines[first + 1] == "Angela _ _ B-PER"


def test_a_conll_comment_is_one_line_and_a_word_that_is_a_hash_stays_a_word(labelled):
    # an external id with characters some readers break lines at, and words made of and starting with "#"
    text = "# tags #1 and # more"
    given = labelled("text_spans")
    external_id = "odd\u2028id\u0085with\u2029breaks\"and quotes"
    given.import_tasks([{"data": {"text": text}, "external_id": external_id}])
    result = {"spans": [{"start": 2, "end": 6, "label": "LOC"}]}
    given.label(external_id, result, result)

    exported = body(given.export(format="conll"))

    assert exported.splitlines() == exported.split("\n")[:-1]  # no line break but \n, for any reader
    assert "\\u2028" in exported and "\\u0085" in exported and "\\u2029" in exported
    [sentence] = document = conll_read(exported)
    assert sentence == [("#", "O"), ("tags", "B-LOC"), ("#1", "O"), ("and", "O"), ("#", "O"), ("more", "O")]
    assert character_spans(text, sentence) == [(2, 6, "LOC")]
    [[comment]] = document.comments
    assert json.loads(comment.removeprefix("labelportal = "))["external_id"] == external_id


def test_conll_without_provenance_has_no_comment_lines(labelled):
    given = spans_project(labelled)
    with_provenance = conll_read(body(given.export(format="conll")))

    text = body(given.export(format="conll", provenance="false"))

    assert not any(line.startswith("#") for line in text.split("\n"))
    assert conll_read(text, comments=False) == with_provenance


@pytest.mark.parametrize("value", ["maybe", ""])
def test_provenance_is_true_or_false(labelled, value):
    given = spans_project(labelled, {"x": ("a b", [])})

    response = given.export(format="conll", provenance=value)

    if value:
        assert response.status_code == 400
        assert set(response.json()["errors"]) == {"provenance"}
    else:
        assert response.status_code == 200
