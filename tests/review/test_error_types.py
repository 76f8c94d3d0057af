"""The error typology: every new project starts with the default error types; a rejection names at least one of
the project's own active types; a code of another project's taxonomy is refused, and a refusal changes nothing."""

import pytest

from apps.quality.models import ErrorType, Review
from tests import factories

from .world import Desk, browser_client, client, fresh, snapshot, submit

pytestmark = pytest.mark.django_db

DEFAULTS = [
    ("wrong_label", "Wrong label"),
    ("missed_object", "Missed object"),
    ("extra_object", "Extra object"),
    ("boundary", "Boundary"),
    ("guideline_not_followed", "Guideline not followed"),
    ("data_problem", "Data problem"),
]


@pytest.mark.parametrize("task_type", ["classification", "multilabel", "text_spans", "bounding_boxes"])
def test_a_new_project_gets_the_default_error_types(task_type):
    project = factories.project(task_type=task_type)

    assert sorted(ErrorType.objects.filter(project=project).values_list("code", "name", "is_active")) == sorted(
        (code, name, True) for code, name in DEFAULTS)


def test_the_review_page_offers_the_project_s_active_error_types():
    desk = Desk(n_tasks=1)
    ErrorType.objects.create(project=desk.project, code="blurry", name="Blurry image")
    ErrorType.objects.filter(project=desk.project, code="data_problem").update(is_active=False)

    page = browser_client(desk.junior).get(f"/projects/{desk.project.pk}/review/")

    offered = [(e["code"], e["name"]) for e in page.context["config"]["errorTypes"]]
    assert sorted(offered) == sorted([*DEFAULTS[:5], ("blurry", "Blurry image")])


@pytest.fixture
def desk():
    """A submission waiting; another project has its own error type `blurry`."""
    desk = Desk(n_tasks=1)
    desk.annotation = submit(desk.task, desk.annotators[0])
    desk.other = factories.project(actor=desk.admin, slug="other")
    ErrorType.objects.create(project=desk.other, code="blurry", name="Blurry image")
    return desk


def reject(desk, **body):
    return client(desk.junior).post(f"/api/v1/annotations/{desk.annotation.pk}/review/",
                                    {"decision": "reject", **body}, format="json")


@pytest.mark.parametrize("body", [{}, {"error_types": []}, {"error_types": [], "comment": "Wrong"}])
def test_a_rejection_without_an_error_type_is_refused_and_changes_nothing(desk, body):
    before = snapshot()

    response = reject(desk, **body)

    assert response.status_code == 400
    assert response.json()["detail"] == "Choose at least one error type when rejecting."
    assert "error_types" in response.json()["errors"]
    assert snapshot() == before


@pytest.mark.parametrize("codes", [["blurry"], ["wrong_label", "blurry"], ["no_such_type"], ["data_problem"]])
def test_codes_of_another_project_unknown_or_retired_are_refused_and_change_nothing(desk, codes):
    ErrorType.objects.filter(project=desk.project, code="data_problem").update(is_active=False)
    before = snapshot()

    rejected = reject(desk, error_types=codes, comment="Look again")
    fixed = client(desk.junior).post(f"/api/v1/annotations/{desk.annotation.pk}/review/", {
        "decision": "fix", "corrected_result": {"label": "dog"}, "error_types": codes}, format="json")

    for response in (rejected, fixed):
        assert response.status_code == 400, response.json()
        assert codes[-1] in response.json()["detail"]
    assert snapshot() == before


@pytest.mark.parametrize("comment", [None, "", "   "])
def test_a_rejection_without_a_comment_is_refused_and_changes_nothing(desk, comment):
    # given a reviewer who picked an error type but wrote no comment (or only blanks)
    body = {"error_types": ["wrong_label"]} | ({} if comment is None else {"comment": comment})
    before = snapshot()

    response = reject(desk, **body)

    # then the API answers 400 naming the comment field, and nothing was written
    assert response.status_code == 400, response.json()
    assert response.json()["detail"] == "Write a comment for the annotator when rejecting."
    assert response.json()["errors"] == {"comment": ["This field is required."]}
    assert snapshot() == before
    assert fresh(desk.annotation).status == "submitted"


def test_the_reject_service_refuses_a_rejection_without_a_comment_too(desk):
    from apps.core.errors import ValidationError
    from apps.tasks import services

    before = snapshot()
    for comment in ("", "  \n "):
        with pytest.raises(ValidationError) as refused:
            services.review_reject(annotation=desk.annotation, reviewer=desk.junior, error_types=["wrong_label"],
                                   comment=comment)
        assert refused.value.errors == {"comment": ["This field is required."]}
    # without error types either, both fields are named
    with pytest.raises(ValidationError) as refused:
        services.review_reject(annotation=desk.annotation, reviewer=desk.junior, error_types=[], comment="")
    assert set(refused.value.errors) == {"error_types", "comment"}
    assert snapshot() == before


def test_a_rejection_records_the_project_s_own_error_types(desk):
    # the other project has the same default codes: the review must point at this project's rows
    response = reject(desk, error_types=["wrong_label", "boundary"], comment="Look again")

    assert response.status_code == 201
    assert sorted(response.json()["error_types"]) == ["boundary", "wrong_label"]
    review = Review.objects.get(annotation=desk.annotation)
    assert {e.project_id for e in review.error_types.all()} == {desk.project.pk}
    assert fresh(desk.annotation).status == "rejected"
