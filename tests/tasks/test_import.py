"""Importing tasks: JSON, JSONL, CSV and the API's list; all-or-nothing with row-numbered errors; history."""

import csv
import io
import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import override_settings

from apps.core.errors import PayloadTooLargeError, PermissionDeniedError, ValidationError
from apps.projects import services as project_services
from apps.projects.models import Batch, Membership
from apps.tasks import services as task_services
from apps.tasks.imports import CHUNK, tasks_import
from apps.tasks.models import Task, TaskEvent
from tests import factories

HistoricalTask = Task.history.model
HistoricalBatch = Batch.history.model


def upload(name, content):
    return SimpleUploadedFile(name, content if isinstance(content, bytes) else content.encode("utf-8"))


def jsonl(rows):
    return "".join(json.dumps(row) + "\n" for row in rows).encode("utf-8")


def csv_file(header, rows):
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue().encode("utf-8")


def text_rows(n, prefix="t"):
    return [{"data": {"text": f"item {i}"}, "external_id": f"{prefix}-{i}"} for i in range(1, n + 1)]


def counts():
    """What a refused import must leave untouched."""
    return {"tasks": Task.objects.count(), "batches": Batch.objects.count(),
            "task_history": HistoricalTask.objects.count(), "batch_history": HistoricalBatch.objects.count(),
            "events": TaskEvent.objects.count()}


def import_(team, source, **kwargs):
    return tasks_import(project=team.project, actor=team.admin, source=source, **kwargs)


# --- formats ----------------------------------------------------------------------------------------------------


def test_json_array_file_imports_every_field(team):
    # given a JSON array with plain, prioritised, gold and predicted tasks
    rows = [
        {"data": {"text": "a cat on a mat"}, "external_id": "j-1"},
        {"data": {"text": "urgent"}, "external_id": "j-2", "priority": 5},
        {"data": {"text": "gold"}, "external_id": "j-3", "is_gold": True, "gold_answer": {"label": "dog"}},
        {"data": {"image": "https://example.org/1.png"}, "external_id": 4,
         "prediction": {"result": {"label": "bird"}, "score": 0.25}},
    ]

    # when it is imported
    result = import_(team, upload("tasks.json", json.dumps(rows)))

    # then four tasks are new in a fresh draft batch named after the import
    assert (result.created, result.skipped) == (4, 0)
    assert result.batch.status == Batch.Status.DRAFT and result.batch.name.startswith("Import ")
    tasks = {t.external_id: t for t in Task.objects.filter(batch=result.batch)}
    assert set(tasks) == {"j-1", "j-2", "j-3", "4"}
    assert all(t.status == Task.Status.NEW for t in tasks.values())
    assert tasks["j-1"].data == {"text": "a cat on a mat"} and tasks["j-1"].priority == 0
    assert tasks["j-2"].priority == 5
    assert tasks["j-3"].is_gold and tasks["j-3"].gold_answer == {"label": "dog"}
    assert tasks["4"].prediction == {"label": "bird"} and tasks["4"].prediction_score == 0.25


def test_jsonl_file_imports_and_skips_blank_lines(team):
    content = jsonl(text_rows(2)) + b"\n  \n" + jsonl([{"data": {"text": "third"}}])

    result = import_(team, upload("tasks.jsonl", content))

    assert (result.created, result.skipped) == (3, 0)
    assert sorted(Task.objects.filter(batch=result.batch).values_list("data__text", flat=True)) == [
        "item 1", "item 2", "third"]


def test_ndjson_extension_and_explicit_format(team):
    assert import_(team, upload("tasks.ndjson", jsonl(text_rows(1, "a")))).created == 1
    assert import_(team, upload("upload.bin", jsonl(text_rows(1, "b"))), fmt="jsonl").created == 1


def test_csv_file_with_every_column(team):
    # given a CSV with the task columns, JSON gold answers and predictions, and extra data columns
    content = csv_file(
        ["text", "external_id", "batch", "priority", "is_gold", "gold_answer", "prediction", "prediction_score",
         "source"],
        [
            ["first", "c-1", "", "", "", "", "", "", "web"],
            ["second", "c-2", "Spring", "3", "false", "", '{"label": "cat"}', "0.8", ""],
            ["third", "c-3", "Spring", "-1", "true", '{"label": "bird"}', "", "", "mail"],
        ],
    )

    result = import_(team, upload("tasks.csv", content))

    assert (result.created, result.skipped) == (3, 0)
    tasks = {t.external_id: t for t in Task.objects.filter(project=team.project, external_id__startswith="c-")}
    assert tasks["c-1"].data == {"text": "first", "source": "web"}
    assert tasks["c-1"].batch.name.startswith("Import ")
    assert tasks["c-2"].data == {"text": "second"}
    assert tasks["c-2"].batch.name == "Spring" and tasks["c-2"].priority == 3
    assert tasks["c-2"].prediction == {"label": "cat"} and tasks["c-2"].prediction_score == 0.8
    assert not tasks["c-2"].is_gold
    assert tasks["c-3"].is_gold and tasks["c-3"].gold_answer == {"label": "bird"} and tasks["c-3"].priority == -1


def test_csv_prediction_score_column_may_come_before_the_prediction(team):
    content = csv_file(["prediction_score", "prediction", "text"],
                       [["0.3", '{"result": {"label": "dog"}}', "a"], ["0.6", '{"label": "cat"}', "b"]])

    import_(team, upload("tasks.csv", content))

    assert dict(Task.objects.filter(data__text__in=["a", "b"]).values_list("data__text", "prediction_score")) == {
        "a": 0.3, "b": 0.6}
    assert Task.objects.get(data__text="a").prediction == {"label": "dog"}


def test_csv_data_column_holds_json_and_merges_other_columns(team):
    content = csv_file(["data", "external_id", "lang"],
                       [['{"text": "hola", "meta": {"n": 1}}', "d-1", "es"], ['{"image": "/media/x.png"}', "d-2", ""]])

    result = import_(team, upload("tasks.csv", content))

    assert result.created == 2
    assert Task.objects.get(external_id="d-1").data == {"text": "hola", "meta": {"n": 1}, "lang": "es"}
    assert Task.objects.get(external_id="d-2").data == {"image": "/media/x.png"}


def test_csv_integer_image_sizes_for_bounding_boxes(db):
    project = factories.project(task_type="bounding_boxes")
    admin = project.created_by
    content = csv_file(["image", "width", "height", "gold_answer", "is_gold"],
                       [["https://example.org/a.jpg", "640", "480",
                         '{"boxes": [{"x": 0.1, "y": 0.1, "w": 0.2, "h": 0.2, "label": "car"}]}', "true"]])

    tasks_import(project=project, actor=admin, source=upload("boxes.csv", content))

    task = Task.objects.get(project=project)
    assert task.data == {"image": "https://example.org/a.jpg", "width": 640, "height": 480}
    assert task.is_gold


def test_python_list_from_the_api_body(team):
    # given the parsed JSON body of an API request
    body = [{"data": {"text": "from the api"}, "external_id": "api-1", "batch": team.batch.pk},
            {"data": {"text": "second"}, "batch": team.batch.name}]

    result = import_(team, body, filename="")

    assert result.created == 2 and result.batch == team.batch
    assert set(Task.objects.filter(data__text__in=["from the api", "second"]).values_list("batch", "status")) == {
        (team.batch.pk, Task.Status.OPEN)}


def test_text_stream_is_read_like_a_file(team):
    result = import_(team, io.StringIO(jsonl(text_rows(3)).decode()), fmt="jsonl")

    assert result.created == 3


def test_files_with_a_byte_order_mark_import(team):
    bom = b"\xef\xbb\xbf"
    assert import_(team, upload("a.json", bom + json.dumps(text_rows(1, "a")).encode())).created == 1
    assert import_(team, upload("b.jsonl", bom + jsonl(text_rows(1, "b")))).created == 1
    assert import_(team, upload("c.csv", bom + csv_file(["text", "external_id"], [["x", "c-1"]]))).created == 1
    assert Task.objects.get(external_id="c-1").data == {"text": "x"}


def test_unicode_line_separators_inside_text_are_kept(team):
    # given texts holding characters str.splitlines() would break on (U+2028, U+0085, form feed)
    text = "line\u2028sep\x85next\x0cpage"
    content_jsonl = (json.dumps({"data": {"text": text}, "external_id": "u-1"}, ensure_ascii=False) + "\n").encode()
    content_csv = csv_file(["text", "external_id"], [[text, "u-2"], ["multi\nline\r\nquoted", "u-3"]])

    import_(team, upload("u.jsonl", content_jsonl))
    import_(team, upload("u.csv", content_csv))

    assert Task.objects.get(external_id="u-1").data["text"] == text
    assert Task.objects.get(external_id="u-2").data["text"] == text
    assert Task.objects.get(external_id="u-3").data["text"] == "multi\nline\r\nquoted"


def test_imported_tasks_get_the_model_defaults(team):
    result = import_(team, text_rows(50))

    tasks = list(Task.objects.filter(batch=result.batch))
    assert len(tasks) == 50
    assert all(0 <= t.random_key < 1 for t in tasks) and len({t.random_key for t in tasks}) == 50
    assert all(t.created_at is not None and abs(t.updated_at - t.created_at).total_seconds() < 1 for t in tasks)
    assert all(t.final_result is None and t.accepted_at is None and t.prediction_score is None for t in tasks)


def test_a_long_csv_cell_imports(team):
    long_text = "word " * 60_000  # 300 KB, over the csv module's default 128 KiB cell limit

    import_(team, upload("long.csv", csv_file(["text", "external_id"], [[long_text, "long-1"]])))

    assert Task.objects.get(external_id="long-1").data["text"] == long_text


def test_lines_ending_in_a_lone_carriage_return_are_split(team):
    # old Mac exports end lines with \r alone
    csv_content = b'text,external_id\rfirst,m-1\r"two\rlines",m-2\rthird,m-3'
    jsonl_content = b'{"data": {"text": "a"}, "external_id": "r-1"}\r{"data": {"text": "b"}, "external_id": "r-2"}'

    assert import_(team, upload("mac.csv", csv_content)).created == 3
    assert import_(team, upload("mac.jsonl", jsonl_content)).created == 2
    assert Task.objects.get(external_id="m-2").data == {"text": "two\rlines"}


# --- all or nothing ---------------------------------------------------------------------------------------------

ROWS = 2 * CHUNK + 500  # three chunks: the middle error falls past the first full chunk write


@pytest.mark.parametrize("bad_row", [1, CHUNK + 500, ROWS], ids=["first", "middle-of-later-chunk", "last"])
def test_one_invalid_jsonl_row_imports_nothing(team, bad_row):
    # given a JSONL file with one row whose text is a number
    rows = text_rows(ROWS)
    rows[bad_row - 1] = {"data": {"text": 42}, "external_id": "bad"}
    before = counts()

    # when it is imported
    with pytest.raises(ValidationError) as refused:
        import_(team, upload("tasks.jsonl", jsonl(rows)))

    # then the error names the row, and no task, batch, history row or event was written
    assert refused.value.errors == {str(bad_row): ["'data.text' must be a string."]}
    assert f"row {bad_row}" in refused.value.message
    assert counts() == before


@pytest.mark.parametrize("fmt", ["json", "csv", "list"])
def test_one_invalid_row_past_the_first_chunk_imports_nothing_in_any_format(team, fmt):
    bad_row = CHUNK + 7
    rows = text_rows(CHUNK + 20)
    if fmt == "csv":
        table = [[r["data"]["text"], r["external_id"], "1"] for r in rows]
        table[bad_row - 1][2] = "high"
        source, message = upload("t.csv", csv_file(["text", "external_id", "priority"], table)), \
            "'priority' must be a whole number."
    else:
        rows[bad_row - 1]["gold_answer"] = {"label": "horse"}
        message = "gold_answer: Label 'horse' is not in the schema."
        source = rows if fmt == "list" else upload("t.json", json.dumps(rows))
    before = counts()

    with pytest.raises(ValidationError) as refused:
        import_(team, source)

    assert refused.value.errors == {str(bad_row): [message]}
    assert counts() == before


def test_every_row_error_is_reported_up_to_the_limit(team, settings):
    settings.IMPORT_MAX_ERRORS = 5
    rows = [{"data": {"text": "ok"}}] + [{"data": {}} for _ in range(20)]
    before = counts()

    with pytest.raises(ValidationError) as refused:
        import_(team, rows)

    assert list(refused.value.errors) == ["2", "3", "4", "5", "6"]
    assert refused.value.message.startswith("Nothing was imported: 5 row(s) have errors (first: row 2:")
    assert counts() == before


def test_a_row_lists_all_of_its_problems(team):
    rows = [{"data": {"text": "x"}, "priority": "high", "is_gold": "yes", "colour": "red"}]

    with pytest.raises(ValidationError) as refused:
        import_(team, rows)

    assert refused.value.errors["1"] == ["Unknown field(s): colour.", "'priority' must be a whole number.",
                                         "'is_gold' must be true or false."]


def test_gold_answers_and_predictions_are_checked_against_the_schema(team):
    rows = [
        {"data": {"text": "ok"}, "is_gold": True, "gold_answer": {"label": "cat"}},
        {"data": {"text": "bad gold"}, "is_gold": True, "gold_answer": {"label": "horse"}},
        {"data": {"text": "gold without answer"}, "is_gold": True},
        {"data": {"text": "bad prediction"}, "prediction": {"result": {"label": "cow"}, "score": 0.5}},
        {"data": {"text": "bad score"}, "prediction": {"result": {"label": "cat"}, "score": 1.5}},
        {"data": {"text": "bad shape"}, "prediction": {"label": "cat"}},
    ]
    before = counts()

    with pytest.raises(ValidationError) as refused:
        import_(team, rows)

    assert refused.value.errors == {
        "2": ["gold_answer: Label 'horse' is not in the schema."],
        "3": ["A gold task needs a 'gold_answer'."],
        "4": ["prediction: Label 'cow' is not in the schema."],
        "5": ["'prediction.score' must be a number between 0 and 1."],
        "6": ["'prediction' must be {\"result\": {...}, \"score\": 0.42}."],
    }
    assert counts() == before


def test_text_span_gold_answers_must_lie_inside_the_text(db):
    project = factories.project(task_type="text_spans")
    rows = [{"data": {"text": "Ada Lovelace"}, "is_gold": True,
             "gold_answer": {"spans": [{"start": 0, "end": 40, "label": "PER"}]}}]

    with pytest.raises(ValidationError) as refused:
        tasks_import(project=project, actor=project.created_by, source=rows)

    assert refused.value.errors == {"1": ["gold_answer: Span 1: [0, 40) is outside the text (length 12)."]}
    assert not Task.objects.filter(project=project).exists()


def test_nul_characters_are_row_errors(team):
    # PostgreSQL stores no U+0000 in text or jsonb; refuse it on every database alike
    rows = [{"data": {"text": "a\u0000b"}}, {"data": {"text": "ok"}, "external_id": "x\u0000"},
            {"data": {"text": "a literal \\u0000 is fine"}}]
    before = counts()

    with pytest.raises(ValidationError) as refused:
        import_(team, upload("nul.jsonl", jsonl(rows)))

    assert refused.value.errors == {"1": ["data contains a NUL character (\\u0000)."],
                                    "2": ["'external_id' contains a NUL character."]}
    assert counts() == before


# --- duplicates -------------------------------------------------------------------------------------------------


def test_external_ids_already_in_the_project_are_skipped_and_counted(team):
    factories.tasks(team.batch, 1, external_id="dup-1", data={"text": "the original"})
    rows = [{"data": {"text": "again"}, "external_id": "dup-1"}, {"data": {"text": "new"}, "external_id": "new-1"}]

    result = import_(team, upload("tasks.jsonl", jsonl(rows)))

    assert (result.created, result.skipped) == (1, 1)
    assert Task.objects.get(project=team.project, external_id="dup-1").data == {"text": "the original"}
    assert TaskEvent.objects.get(type=TaskEvent.Type.IMPORTED).payload["skipped"] == 1


def test_duplicates_inside_one_file_keep_the_first_row(team):
    rows = [{"data": {"text": "first"}, "external_id": "7"}, {"data": {"text": "second"}, "external_id": 7},
            {"data": {"text": "third"}, "external_id": " 7 "}, {"data": {"text": "no id"}},
            {"data": {"text": "no id"}}]

    result = import_(team, rows)

    assert (result.created, result.skipped) == (3, 2)
    assert Task.objects.get(project=team.project, external_id="7").data == {"text": "first"}


def test_duplicates_far_apart_in_a_long_file_are_skipped(team):
    rows = text_rows(CHUNK + 10) + [{"data": {"text": "late copy"}, "external_id": "t-3"}]

    result = import_(team, upload("tasks.jsonl", jsonl(rows)))

    assert (result.created, result.skipped) == (CHUNK + 10, 1)


def test_the_same_external_id_in_another_project_is_fine(team):
    other_batch = factories.batch(team.other_project)
    factories.tasks(other_batch, 1, external_id="shared-1")

    result = import_(team, [{"data": {"text": "mine"}, "external_id": "shared-1"}])

    assert (result.created, result.skipped) == (1, 0)
    assert Task.objects.filter(external_id="shared-1").count() == 2


def test_a_concurrent_import_of_the_same_external_ids_is_refused_cleanly(team):
    # given another import that writes "race-1" after this one checked the project for duplicates
    class RacingRows(list):
        def __iter__(self):
            factories.tasks(team.batch, 1, external_id="race-1")
            return super().__iter__()

    before = counts()

    with pytest.raises(ValidationError) as refused:
        import_(team, RacingRows([{"data": {"text": "mine"}, "external_id": "race-1"}]))

    assert "another import added the same tasks" in refused.value.message
    assert counts() == before


def test_a_file_of_only_duplicates_leaves_no_empty_batch(team):
    factories.tasks(team.batch, 1, external_id="only-1")
    before = Batch.objects.count()

    result = import_(team, [{"data": {"text": "again"}, "external_id": "only-1"}])

    assert (result.created, result.skipped, result.batch) == (0, 1, None)
    assert Batch.objects.count() == before


# --- batches ----------------------------------------------------------------------------------------------------


def test_a_named_batch_that_does_not_exist_is_created_as_draft(team):
    result = import_(team, [{"data": {"text": "x"}, "batch": "  Week 12 "}, {"data": {"text": "y"}, "batch": "Week 12"}])

    batch = Batch.objects.get(project=team.project, name="Week 12")
    assert result.batch == batch and batch.status == Batch.Status.DRAFT
    assert list(batch.tasks.values_list("status", flat=True)) == [Task.Status.NEW, Task.Status.NEW]
    assert batch.history.get().history_user == team.admin


def test_rows_into_an_active_batch_are_open(team):
    result = import_(team, [{"data": {"text": "x"}, "batch": team.batch.name}])

    assert result.batch == team.batch
    assert Task.objects.get(data__text="x").status == Task.Status.OPEN


def test_rows_into_a_paused_batch_can_be_worked_once_it_resumes(team):
    # given a paused batch that receives new tasks
    project_services.batch_pause(batch=team.batch, actor=team.manager)
    import_(team, [{"data": {"text": "x"}, "batch": team.batch.name}])
    task = Task.objects.get(data__text="x")

    # when the batch is resumed
    project_services.batch_activate(batch=team.batch, actor=team.manager)

    # then the imported task is open and can be assigned like the others
    task.refresh_from_db()
    assert task.status == Task.Status.OPEN
    task_services.assignment_assign(task=task, annotator=team.annotators[0])


def test_rows_into_a_completed_batch_are_refused(team):
    # given a batch that went all the way to completed
    done = project_services.batch_create(project=team.project, name="Done", actor=team.manager)
    for step in (project_services.batch_activate, project_services.batch_review, project_services.batch_complete):
        step(batch=done, actor=team.manager)
    before = counts()

    with pytest.raises(ValidationError) as refused:
        import_(team, [{"data": {"text": "ok"}, "batch": "New one"}, {"data": {"text": "late"}, "batch": "Done"}])

    assert refused.value.errors == {
        "2": ["Batch “Done” is completed; import into a draft, active or paused batch."]}
    assert counts() == before


def test_a_batch_id_of_another_project_is_refused(team):
    other_batch = factories.batch(team.other_project)

    with pytest.raises(ValidationError) as refused:
        import_(team, [{"data": {"text": "x"}, "batch": other_batch.pk}])

    assert refused.value.errors == {"1": [f"Batch {other_batch.pk} does not exist in this project."]}


def test_a_blank_batch_name_goes_to_the_default_batch(team):
    result = import_(team, [{"data": {"text": "x"}, "batch": "   "}], default_batch_name="Inbox")

    assert result.batch.name == "Inbox"
    assert not Batch.objects.filter(project=team.project, name="").exists()


def test_the_default_batch_name_is_made_unique(team):
    factories.batch(team.project, name="Inbox", active=False)

    result = import_(team, [{"data": {"text": "x"}}], default_batch_name="Inbox")

    assert result.batch.name == "Inbox (2)"


# --- refusals of the whole file ---------------------------------------------------------------------------------


@override_settings(IMPORT_MAX_BYTES=1024)
def test_a_file_over_the_size_limit_is_refused(team):
    before = counts()
    big = upload("big.jsonl", jsonl(text_rows(100)))
    assert big.size > 1024

    with pytest.raises(PayloadTooLargeError) as refused:
        import_(team, big)

    assert refused.value.status_code == 413
    assert "the limit is" in refused.value.message
    assert counts() == before


@pytest.mark.parametrize("name, content", [
    ("latin1.json", '[{"data": {"text": "café"}}]'.encode("latin-1")),
    ("latin1.jsonl", '{"data": {"text": "ok"}}\n{"data": {"text": "café"}}\n'.encode("latin-1")),
    ("latin1.csv", "text\nok\ncafé\n".encode("latin-1")),
    ("utf16.csv", "text\ncafé\n".encode("utf-16")),
])
def test_a_file_that_is_not_utf8_is_refused_with_a_clear_error(team, name, content):
    before = counts()

    with pytest.raises(ValidationError) as refused:
        import_(team, upload(name, content))

    assert "not UTF-8" in refused.value.message
    assert counts() == before


@pytest.mark.parametrize("content, expected", [
    (b'[{"data": {"text": "a"}}, {"data": {"text": "b"}', "The file is not a valid JSON array"),
    (b'[{"data": {"text": "a"}}, {"data": {text: "b"}}]', "The file is not a valid JSON array"),
    (b'{"data": {"text": "a"}}', "must hold a JSON array"),
    (b"", "The file holds no tasks."),
    (b"[]", "The file holds no tasks."),
])
def test_malformed_json_is_refused_with_a_clear_error(team, content, expected):
    before = counts()

    with pytest.raises(ValidationError) as refused:
        import_(team, upload("tasks.json", content))

    assert expected in refused.value.message
    assert "\n" not in refused.value.message and "b'" not in refused.value.message
    assert counts() == before


def test_malformed_jsonl_lines_are_row_errors(team):
    content = b'{"data": {"text": "a"}}\n{"data": {"text": "b"}\n[1, 2]\n{"data": {"text": NaN}}\n'

    with pytest.raises(ValidationError) as refused:
        import_(team, upload("tasks.jsonl", content))

    assert set(refused.value.errors) == {"2", "3", "4"}
    assert refused.value.errors["2"][0].startswith("Not valid JSON")
    assert refused.value.errors["3"] == ["Each task must be a JSON object."]
    assert refused.value.errors["4"][0].startswith("Not valid JSON")
    assert Task.objects.count() == 1  # the team's own task


def test_csv_rows_with_too_many_cells_or_bad_json_are_row_errors(team):
    content = b'text,gold_answer\nok,\n"a",{bad json}\ntoo,,many\n'

    with pytest.raises(ValidationError) as refused:
        import_(team, upload("tasks.csv", content))

    assert refused.value.errors["2"][0].startswith("Column 'gold_answer' is not valid JSON")
    assert refused.value.errors["3"] == ["The row has more cells than the header."]


def test_an_unknown_format_is_refused(team):
    with pytest.raises(ValidationError) as refused:
        import_(team, upload("tasks.xml", b"<tasks/>"), fmt="xml")

    assert refused.value.errors == {"format": ["Unknown format."]}


def test_only_managers_import(team):
    before = counts()

    with pytest.raises(PermissionDeniedError):
        tasks_import(project=team.project, actor=team.annotators[0], source=[{"data": {"text": "x"}}])

    assert counts() == before
    manager_result = tasks_import(project=team.project, actor=team.manager, source=[{"data": {"text": "x"}}])
    assert manager_result.created == 1
    assert Membership.objects.filter(user=team.manager, role=Membership.Role.MANAGER).exists()


# --- history and events -----------------------------------------------------------------------------------------


def test_bulk_import_writes_history_and_one_event(team):
    # when a manager imports three tasks (one a duplicate of an existing one)
    factories.tasks(team.batch, 1, external_id="old")
    rows = [{"data": {"text": "a"}, "external_id": "old"}, {"data": {"text": "b"}, "external_id": "h-2"},
            {"data": {"text": "c"}, "priority": 2}]

    result = tasks_import(project=team.project, actor=team.manager, source=upload("h.jsonl", jsonl(rows)),
                          filename="h.jsonl")

    # then every created task has one "created" history row naming the manager, with the imported values
    created = Task.objects.filter(batch=result.batch)
    assert created.count() == 2
    history = HistoricalTask.objects.filter(id__in=created.values("pk"))
    assert history.count() == 2
    assert {(h.history_type, h.history_user_id, h.history_change_reason) for h in history} == {
        ("+", team.manager.pk, "imported")}
    assert {h.id: (h.data, h.priority, h.batch_id, h.status) for h in history} == {
        t.pk: (t.data, t.priority, t.batch_id, t.status) for t in created}
    assert list(Task.objects.get(external_id="h-2").history.values_list("history_type", flat=True)) == ["+"]

    # and one "imported" event tells what happened
    event = TaskEvent.objects.get(type=TaskEvent.Type.IMPORTED)
    assert (event.project, event.batch, event.actor) == (team.project, result.batch, team.manager)
    assert event.payload == {"created": 2, "skipped": 1, "format": "jsonl", "file": "h.jsonl",
                             "batches": [result.batch.pk]}
    assert result.batch.name.endswith(" h.jsonl")


@pytest.mark.slow
def test_a_100k_row_jsonl_file_imports_with_history(team, tmp_path):
    # given a 100,000-row JSONL file on disk, every 1000th row a gold task
    path = tmp_path / "big.jsonl"
    with path.open("w", encoding="utf-8") as out:
        for i in range(100_000):
            row = {"data": {"text": f"item number {i}"}, "external_id": f"big-{i}"}
            if i % 1000 == 0:
                row.update(is_gold=True, gold_answer={"label": "cat"})
            out.write(json.dumps(row) + "\n")

    # when it is imported from the open file
    with path.open("rb") as source:
        result = tasks_import(project=team.project, actor=team.admin, source=source, fmt="jsonl")

    # then all rows are tasks with one history row each, and one event
    assert (result.created, result.skipped) == (100_000, 0)
    imported = Task.objects.filter(batch=result.batch)
    assert imported.count() == 100_000
    assert imported.filter(is_gold=True).count() == 100
    history = HistoricalTask.objects.filter(batch_id=result.batch.pk, history_type="+", history_user=team.admin)
    assert history.count() == 100_000
    assert history.values("id").distinct().count() == 100_000
    assert TaskEvent.objects.get(type=TaskEvent.Type.IMPORTED).payload["created"] == 100_000
