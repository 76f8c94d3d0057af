"""The quality engine: figures of a project built through the services, stored as snapshots, served by the API,
and the incremental figures equal to a full recompute."""

from unittest import mock

import krippendorff
import numpy as np
import pytest
from django.test import override_settings
from django.utils import timezone
from hypothesis import HealthCheck, given, settings, strategies as st
from sklearn.metrics import cohen_kappa_score
from statsmodels.stats.inter_rater import fleiss_kappa

from apps.projects.models import Membership, Project
from apps.quality import engine, metrics, services as quality_services
from apps.quality.models import ErrorType, MetricSnapshot, Review
from apps.tasks import services
from apps.tasks.models import Annotation, Task
from tests import factories
from tests.api.conftest import client_for

pytestmark = pytest.mark.django_db

LABELS = ["bird", "cat", "dog"]  # sorted: the codes of the engine
# Current labels of annotators a0, a1, a2 on tasks t0..t9 once everything is done (a2 reworked t1 from dog to cat).
CURRENT = [
    ("cat", "cat", "cat"),
    ("cat", "cat", "cat"),
    ("dog", "dog", "dog"),
    ("dog", "dog", "cat"),
    ("bird", "bird", "bird"),
    ("bird", "cat", "bird"),
    ("cat", "cat", "cat"),
    ("dog", "dog", "dog"),
    ("cat", "dog", "bird"),
    ("bird", "bird", "bird"),
]
GOLD = {0: "cat", 3: "cat"}  # t0 and t3 are gold tasks with these answers
LEAD = (10.0, 20.0, 40.0)  # every submission's lead time per annotator; a2's resubmission took 30 s


class Crew:
    """3 annotators, a reviewer and a manager on a classification project (overlap 3, review everything) with 10
    tasks, 2 of them gold, done through the services: reviews approve everything except a2's first answer on t1
    (rejected as wrong_label, resubmitted as cat, approved) and a1's dog on t8 (fixed to bird)."""

    def __init__(self):
        self.admin = factories.UserFactory(username="admin", is_staff=True, is_superuser=True)
        self.project = factories.project(actor=self.admin, slug="crew", overlap=3, review_mode="all")
        self.manager = factories.member(self.project, Membership.Role.MANAGER, "boss")
        self.reviewer = factories.member(self.project, Membership.Role.REVIEWER, "rev")
        self.annotators = [factories.member(self.project, Membership.Role.ANNOTATOR, f"a{i}") for i in range(3)]
        self.batch = factories.batch(self.project, name="B1")
        self.tasks = []
        for i in range(10):
            gold = {"is_gold": True, "gold_answer": {"label": GOLD[i]}} if i in GOLD else {}
            self.tasks.extend(factories.tasks(self.batch, 1, data={"text": f"t{i}"}, **gold))
        first = {i: list(row) for i, row in enumerate(CURRENT)}
        first[1][2] = "dog"
        self.annotations = {}
        for i, task in enumerate(self.tasks):
            for j, annotator in enumerate(self.annotators):
                assignment = services.assignment_assign(task=task, annotator=annotator)
                self.annotations[i, j] = services.assignment_submit(
                    assignment=assignment, actor=annotator, result={"label": first[i][j]}, lead_time_seconds=LEAD[j])
        for (i, j), annotation in sorted(self.annotations.items()):
            if i in GOLD:
                continue
            if (i, j) == (1, 2):
                services.review_reject(annotation=annotation, reviewer=self.reviewer, error_types=["wrong_label"],
                                       comment="Look again.")
                again = services.assignment_resubmit(assignment=annotation.assignment, actor=self.annotators[2],
                                                     result={"label": "cat"}, lead_time_seconds=30.0)
                services.review_approve(annotation=again, reviewer=self.reviewer)
            elif (i, j) == (8, 1):
                services.review_fix(annotation=annotation, reviewer=self.reviewer, corrected_result={"label": "bird"},
                                    error_types=["wrong_label"])
            else:
                services.review_approve(annotation=annotation, reviewer=self.reviewer)


@pytest.fixture
def crew():
    return Crew()


@pytest.fixture
def computed(crew):
    quality_services.quality_recompute_full(project_id=crew.project.pk)
    return crew


def latest(project, kind, scope="project", **filters):
    return (MetricSnapshot.objects.filter(project=project, kind=kind, scope=scope, **filters)
            .order_by("-computed_at").first())


def reliability_data():
    """Coders × units, as the krippendorff package takes them."""
    return np.array([[LABELS.index(row[j]) for row in CURRENT] for j in range(3)], dtype=float)


# --- known figures ------------------------------------------------------------------------------------------------

def test_project_agreement_is_krippendorff_alpha_fleiss_and_cohen_of_the_current_annotations(computed):
    values = latest(computed.project, "agreement").values
    expected_alpha = krippendorff.alpha(reliability_data=reliability_data(), level_of_measurement="nominal")
    assert values["overall"]["metric"] == "krippendorff_alpha"
    assert values["overall"]["value"] == pytest.approx(expected_alpha, abs=1e-12)
    assert values["overall"]["n"] == 10
    # Fleiss' kappa over the 10 tasks with exactly 3 answers, against statsmodels
    counts = np.array([[row.count(label) for label in LABELS] for row in CURRENT])
    assert values["fleiss_kappa"]["value"] == pytest.approx(fleiss_kappa(counts), abs=1e-12)
    assert values["fleiss_kappa"]["n"] == 10
    # per label: the label-vs-rest alpha of the same matrix
    per_label = metrics.agreement_per_label_alpha(reliability_data().T, LABELS)
    assert values["per_label"] == {label: {"value": pytest.approx(per_label[label]["value"], abs=1e-12), "n": 10}
                                   for label in LABELS}
    # pairwise Cohen's kappa on the 10 shared tasks, against scikit-learn
    pairwise = values["pairwise"]
    assert pairwise["annotators"] == ["a0", "a1", "a2"]
    kappa = cohen_kappa_score([row[0] for row in CURRENT], [row[2] for row in CURRENT])
    assert pairwise["matrix"][0][2] == pytest.approx(kappa) and pairwise["matrix"][2][0] == pytest.approx(kappa)
    assert pairwise["matrix"][1][1] is None and pairwise["n"][0][1] == 10


def test_quality_snapshot_holds_gold_reviews_rework_sanity_and_error_types(computed):
    values = latest(computed.project, "quality", scope="project").values
    assert values["agreement"]["n"] == 10
    # gold: t0 (cat) everybody right, t3 (cat) only a2 → 4 of 6
    assert values["gold_accuracy"] == pytest.approx(4 / 6)
    assert values["samples"]["gold_accuracy"] == 6
    # 25 decided reviews: 23 approvals, a reject, a fix
    assert values["acceptance_rate"] == pytest.approx(23 / 25) and values["samples"]["acceptance_rate"] == 25
    # 30 assignments submitted, one resubmitted
    assert values["rework_rate"] == pytest.approx(1 / 30) and values["samples"]["rework_rate"] == 30
    assert values["sanity_pass_rate"] == 1.0 and values["samples"]["sanity_pass_rate"] == 30
    assert values["error_types"] == {"wrong_label": 2}
    assert values["error_types_by_label"] == {"dog": {"wrong_label": 2}}  # a2's dog on t1, a1's dog on t8
    assert values["figures"]["gold_accuracy"] == {"value": pytest.approx(4 / 6), "n": 6}


def test_annotator_figures(computed):
    rows = {row["username"]: row for row in latest(computed.project, "annotators").values["annotators"]}
    assert sorted(rows) == ["a0", "a1", "a2"]
    a0, a1, a2 = rows["a0"], rows["a1"], rows["a2"]
    assert (a0["submitted"], a1["submitted"], a2["submitted"]) == (10, 10, 10)
    assert (a0["median_lead_time_seconds"], a1["median_lead_time_seconds"], a2["median_lead_time_seconds"]) \
        == (10.0, 20.0, 40.0)
    assert (a0["acceptance_rate"], a1["acceptance_rate"], a2["acceptance_rate"]) == (1.0, 7 / 8, 8 / 9)
    assert (a0["rework_rate"], a1["rework_rate"], a2["rework_rate"]) == (0.0, 0.0, 0.1)
    assert (a0["gold_accuracy"], a1["gold_accuracy"], a2["gold_accuracy"]) == (0.5, 0.5, 1.0)
    # agreeing others ÷ others over the 10 tasks (the reviewer's fix of a1's t8 is not a1's work)
    assert (a0["agreement"], a1["agreement"], a2["agreement"]) == (16 / 20, 15 / 20, 15 / 20)
    # each task's median lead time (20 s) ÷ own: 2, 1 and 0.5 (a2's 30 s rework gives 0.67 once)
    assert (a0["difficulty_adjusted_speed"], a1["difficulty_adjusted_speed"], a2["difficulty_adjusted_speed"]) \
        == (2.0, 1.0, 0.5)
    assert a0["flags"] == a1["flags"] == a2["flags"] == []  # fewer than 20 observations: nobody is flagged
    assert a2["error_types"] == {"wrong_label": 1} and a1["error_types"] == {"wrong_label": 1}
    reviewers = latest(computed.project, "annotators").values["reviewers"]
    assert [(r["username"], r["reviewed"]) for r in reviewers] == [("rev", 25)]
    assert reviewers[0]["median_review_latency_seconds"] >= 0


@pytest.mark.usefixtures("small_team_distribution")
def test_team_distribution_is_quartiles_without_names(computed):
    # (this crew of three gets a spread only with the minimum lowered to 3: see the next test)
    distribution = latest(computed.project, "annotators").values["distribution"]
    assert distribution["gold_accuracy"] == {"n": 3, "p25": 0.5, "median": 0.5, "p75": 0.75}
    assert distribution["submitted"]["median"] == 10
    assert "a0" not in str(distribution)


def test_three_annotators_get_no_team_spread_by_default(computed):
    distribution = latest(computed.project, "annotators").values["distribution"]
    assert engine.DISTRIBUTION_MIN_TEAM == 5
    assert distribution["gold_accuracy"] == {"n": 3, "p25": None, "median": None, "p75": None}


def test_batch_snapshot_has_the_gate_figures_of_its_batch(computed):
    batch = latest(computed.project, "quality", scope="batch", batch=computed.batch).values
    project = latest(computed.project, "quality", scope="project").values
    assert set(batch["figures"]) == {"gold_accuracy", "acceptance_rate", "rework_rate", "sanity_pass_rate"}
    assert batch["figures"] == project["figures"]  # one batch: the same figures
    assert batch["agreement"] == project["agreement"]


def test_the_reviewer_s_fix_is_the_task_s_final_result_not_the_annotator_s_work(computed):
    task = computed.tasks[8]
    task.refresh_from_db()
    assert task.final_result == {"label": "bird"}
    snapshot = MetricSnapshot.objects.get(project=computed.project, scope="task", task=task)
    assert snapshot.values["contribution"]["counts"] == [1, 1, 1]  # bird, cat, dog: a1's own dog counts
    assert snapshot.values["consensus"]["tied"] is True


def test_sanity_pass_rate_follows_the_rules_as_they_stand(computed):
    # given the schema loses the label "bird" (9 of the 30 current annotations use it)
    Project.objects.filter(pk=computed.project.pk).update(
        label_schema={"labels": [{"value": "cat"}, {"value": "dog"}], "options": {}})
    quality_services.quality_recompute_full(project_id=computed.project.pk)
    values = latest(computed.project, "quality", scope="project").values
    assert values["sanity_pass_rate"] == pytest.approx(21 / 30)


def test_mean_pairwise_score_for_multilabel(db):
    project = factories.project(slug="multi", task_type="multilabel", overlap=2, review_mode="none")
    people = [factories.member(project, Membership.Role.ANNOTATOR, f"m{i}") for i in range(2)]
    tasks = factories.tasks(factories.batch(project), 2)
    answers = [(["cat", "dog"], ["cat"]), (["bird"], ["bird"])]
    for task, pair in zip(tasks, answers):
        for person, labels in zip(people, pair):
            assignment = services.assignment_assign(task=task, annotator=person)
            services.assignment_submit(assignment=assignment, actor=person, result={"labels": labels})
    quality_services.quality_recompute_full(project_id=project.pk)
    values = latest(project, "quality", scope="project").values
    assert values["agreement"] == {"metric": "mean_pairwise_jaccard", "value": pytest.approx(0.75), "n": 2}
    agreement = latest(project, "agreement").values
    assert agreement["pairwise"]["matrix"] == [[None, pytest.approx(0.75)], [pytest.approx(0.75), None]]


def test_an_empty_project_has_null_figures_not_zeros(db):
    project = factories.project(slug="empty")
    quality_services.quality_recompute_full(project_id=project.pk)
    values = latest(project, "quality", scope="project").values
    assert values["agreement"] == {"metric": "krippendorff_alpha", "value": None, "n": 0}
    assert values["gold_accuracy"] is None and values["acceptance_rate"] is None and values["rework_rate"] is None
    assert latest(project, "annotators").values["annotators"] == []


# --- the API reads the snapshots ---------------------------------------------------------------------------------

@pytest.mark.usefixtures("small_team_distribution")
def test_api_serves_the_computed_figures(computed):
    project = computed.project
    metrics_body = client_for(computed.manager).get(f"/api/v1/projects/{project.pk}/metrics/").json()
    quality = metrics_body["quality"]
    assert quality["agreement"]["metric"] == "krippendorff_alpha" and quality["agreement"]["n"] == 10
    assert quality["gold_accuracy"] == pytest.approx(4 / 6)
    assert quality["acceptance_rate"] == pytest.approx(23 / 25) and quality["rework_rate"] == pytest.approx(1 / 30)
    assert quality["error_types"] == {"wrong_label": 2}

    annotators = client_for(computed.manager).get(f"/api/v1/projects/{project.pk}/annotators/").json()
    row = annotators["results"][0]
    assert {"submitted", "median_lead_time_seconds", "acceptance_rate", "rework_rate", "gold_accuracy", "agreement",
            "difficulty_adjusted_speed", "flags"} <= set(row)
    assert [r["username"] for r in annotators["results"]] == ["a0", "a1", "a2"]

    me = client_for(computed.annotators[2]).get("/api/v1/me/metrics/", {"project": project.pk})
    assert me.json()["me"]["username"] == "a2" and me.json()["me"]["gold_accuracy"] == 1.0
    assert me.json()["team"]["gold_accuracy"]["median"] == 0.5
    assert "a0" not in me.content.decode() and "a1" not in me.content.decode()

    agreement = client_for(computed.manager).get(f"/api/v1/projects/{project.pk}/agreement/").json()
    assert agreement["overall"]["n"] == 10 and set(agreement["per_label"]) == set(LABELS)
    assert agreement["pairwise"]["annotators"] == ["a0", "a1", "a2"]
    # a reviewer sees the matrix without who is who
    anonymous = client_for(computed.reviewer).get(f"/api/v1/projects/{project.pk}/agreement/").json()
    assert anonymous["pairwise"]["annotators"] == ["Annotator 1", "Annotator 2", "Annotator 3"]
    assert anonymous["pairwise"]["matrix"] == agreement["pairwise"]["matrix"]


# --- after events -------------------------------------------------------------------------------------------------

def test_transitions_chain_a_full_pass_then_incremental_updates(db, django_capture_on_commit_callbacks):
    project = factories.project(slug="chained", overlap=2, review_mode="none")
    people = [factories.member(project, Membership.Role.ANNOTATOR, f"c{i}") for i in range(2)]
    tasks = factories.tasks(factories.batch(project), 2)

    def submit(task, person, label):
        with django_capture_on_commit_callbacks(execute=True):
            assignment = services.assignment_assign(task=task, annotator=person)
            services.assignment_submit(assignment=assignment, actor=person, result={"label": label})

    # the first event of a project: a full pass (there is nothing to update incrementally)
    submit(tasks[0], people[0], "cat")
    first = latest(project, "quality", scope="project")
    assert first.values["computed"] == "full" and first.values["agreement"]["n"] == 0
    # within the debounce, events update the agreement incrementally
    submit(tasks[0], people[1], "cat")
    submit(tasks[1], people[0], "cat")
    submit(tasks[1], people[1], "dog")
    values = latest(project, "quality", scope="project").values
    assert values["computed"] == "incremental"
    assert values["full_computed_at"] == first.values["full_computed_at"]
    expected = metrics.agreement_krippendorff_alpha(np.array([[1, 1], [1, 2]], dtype=float))
    assert values["agreement"] == {"metric": "krippendorff_alpha", "value": pytest.approx(expected["value"]),
                                   "n": 2}
    # with no debounce, the next event makes a full pass again
    with override_settings(QUALITY_RECOMPUTE_DEBOUNCE_SECONDS=0):
        assert quality_services.quality_refresh(project_id=project.pk) == "full"


# --- incremental = full -------------------------------------------------------------------------------------------

@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.integers(0, 4), min_size=3, max_size=3), min_size=1, max_size=30),
       st.lists(st.tuples(st.integers(0, 29), st.lists(st.integers(0, 4), min_size=3, max_size=3)), max_size=30),
       st.integers(2, 4))
def test_sums_updated_task_by_task_equal_the_sums_of_all_tasks(initial, changes, overlap):
    # given label counts of tasks (3 labels), then changes of single tasks
    counts = [list(c) for c in initial]
    state = engine.stats_from_counts(np.array(counts), overlap)
    for position, new in changes:
        if position >= len(counts):
            continue
        engine.stats_add(state, {"counts": counts[position]}, -1, overlap=overlap)
        engine.stats_add(state, {"counts": new}, 1, overlap=overlap)
        counts[position] = list(new)
    # then the updated sums are exactly those of the final counts
    assert state == engine.stats_from_counts(np.array(counts), overlap)
    # and alpha from them is Krippendorff's alpha of the coincidences (metrics.py, checked against the package)
    figures = engine.agreement_from_stats("classification", state, ["a", "b", "c"], overlap)
    matrix = np.array([[j for j in range(3) for _ in range(c[j])] + [np.nan] * (12 - sum(c)) for c in counts])
    expected = metrics.agreement_krippendorff_alpha(matrix)
    assert figures["overall"]["n"] == expected["n"]
    assert (figures["overall"]["value"] is None) == (expected["value"] is None)
    if expected["value"] is not None:
        assert figures["overall"]["value"] == pytest.approx(expected["value"], abs=1e-9)
    per_label = metrics.agreement_per_label_alpha(matrix, ["a", "b", "c"])
    for label in ("a", "b", "c"):
        if per_label[label]["value"] is None:
            assert figures["per_label"][label]["value"] is None
        else:
            assert figures["per_label"][label]["value"] == pytest.approx(per_label[label]["value"], abs=1e-9)
    exact = np.array([c for c in counts if sum(c) == overlap])
    kappa = metrics.agreement_fleiss_kappa(exact if len(exact) else np.zeros((0, 3)), overlap=overlap)
    if kappa["value"] is None:
        assert figures["fleiss_kappa"]["value"] is None
    else:
        assert figures["fleiss_kappa"]["value"] == pytest.approx(kappa["value"], abs=1e-9)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([1.0, 2.0, 2.5, 3.0, 7.0, 10.0]), max_size=30),
       st.lists(st.tuples(st.booleans(), st.sampled_from([0.5, 1.0, 2.0, 2.5, 3.0, 7.0, 12.0])), max_size=40),
       st.integers(0, 3))
def test_a_median_window_tells_the_median_exactly_or_says_it_cannot(initial, moves, half):
    # given a window around the median of some values, then values added and removed (only values present)
    values = sorted(initial)
    window = engine.window_of(values, half)
    for add, value in moves:
        if not add and value not in values:
            continue
        values = sorted(values + [value]) if add else values[:values.index(value)] + values[values.index(value) + 1:]
        window = engine.window_move(window, value, 1 if add else -1)
        if window is None:
            break
        # then the window, while it can tell, tells the median of all the values, as the full pass takes it
        known, median = engine.window_median(window)
        assert engine.window_size(window) == len(values)
        if known:
            expected = engine._median_from_rows(values)
            assert median == expected


EVENT = st.one_of(
    # a submission (a resubmission when the assignment exists): task, annotator, label, lead time
    st.tuples(st.just("submit"), st.integers(0, 5), st.integers(0, 3), st.sampled_from(["cat", "dog", "bird"]),
              st.sampled_from([None, 5.0, 10.0, 20.0, 40.0])),
    # a review decision on one current annotation of a task: task, which annotation, decision, reviewer
    st.tuples(st.just("review"), st.integers(0, 5), st.integers(0, 3),
              st.sampled_from(["approve", "reject", "fix", "escalate"]), st.integers(0, 1)),
)
QUALITY_FIGURES = ("agreement", "fleiss_kappa", "gold_accuracy", "acceptance_rate", "rework_rate",
                   "sanity_pass_rate", "samples", "figures", "error_types")


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(before=st.lists(EVENT, max_size=12), after=st.lists(EVENT, min_size=1, max_size=14),
       margin=st.sampled_from([0, 3600]), half=st.sampled_from([0, 1, 48]))
def test_incremental_updates_after_events_equal_a_full_recompute(db, before, after, margin, half):
    # given a project with some submissions and reviews and a full recompute (a margin of 0: every task is
    # rebuilt from the rows up to the watermark; of an hour: the full pass recorded every task's contribution in
    # its snapshot), medians kept in windows of 0, 1 or 48 values either side (0 and 1: they soon fall back to
    # the rows)
    project = factories.project(slug="prop", overlap=4, review_mode="none")  # room for all four annotators
    people = [factories.member(project, Membership.Role.ANNOTATOR) for _ in range(4)]
    reviewers = [factories.member(project, Membership.Role.REVIEWER) for _ in range(2)]
    wrong = ErrorType.objects.get(project=project, code="wrong_label")
    batches = [factories.batch(project, name="P1"), factories.batch(project, name="P2")]
    tasks = [factories.tasks(batches[i % 2], 1, **({"is_gold": True, "gold_answer": {"label": "cat"}}
                                                  if i % 3 == 0 else {}))[0] for i in range(6)]
    assignments = {}

    def submit(task_index, person_index, label, lead):
        key = (task_index, person_index)
        person = people[person_index]
        if key not in assignments:
            assignments[key] = services.assignment_assign(task=tasks[task_index], annotator=person)
            services.assignment_submit(assignment=assignments[key], actor=person, result={"label": label},
                                       lead_time_seconds=lead)
        else:  # another version of the same assignment, as a resubmission writes it
            assignment = assignments[key]
            Annotation.objects.filter(assignment=assignment, is_current=True).update(is_current=False,
                                                                                    status="superseded")
            version = assignment.annotations.count() + 1
            Annotation.objects.create(task=tasks[task_index], assignment=assignment, annotator=person, author=person,
                                      version=version, result={"label": label}, lead_time_seconds=lead)

    def review(task_index, which, decision, reviewer_index):
        current = list(Annotation.objects.filter(task=tasks[task_index], is_current=True).order_by("id"))
        if not current:
            return
        decided = Review.objects.create(annotation=current[which % len(current)], reviewer=reviewers[reviewer_index],
                                        decision=decision, decided_at=timezone.now())
        if decision in ("reject", "fix"):
            decided.error_types.add(wrong)

    def apply(event):
        kind, task_index, *rest = event
        (submit if kind == "submit" else review)(task_index, *rest)
        return tasks[task_index].pk

    for event in before:
        apply(event)
    with override_settings(QUALITY_COMMIT_MARGIN_SECONDS=margin), mock.patch.object(engine, "WINDOW_HALF", half):
        engine.project_quality_recompute(project.pk)
        # when events follow, each updating its task alone
        for event in after:
            engine.task_quality_update(apply(event))
        incremental = engine._state_row(project).values
        published = latest(project, "agreement").values
        quality = latest(project, "quality").values
        annotators = latest(project, "annotators").values
        batch_published = {b.pk: latest(project, "quality", scope="batch", batch=b).values for b in batches}
        # then the sums and every figure are those a full recompute finds
        full = engine.project_quality_compute(project)
    assert incremental["project"] == full["state"]["project"]
    for b in batches:
        assert incremental["batches"].get(str(b.pk), engine.stats_empty("classification", 3)) \
            == full["state"]["batches"][str(b.pk)]
        assert {name: batch_published[b.pk][name] for name in QUALITY_FIGURES} \
            == {name: full["batches"][b.pk][name] for name in QUALITY_FIGURES}
    assert published["overall"] == full["agreement"]["overall"]
    assert published["per_label"] == full["agreement"]["per_label"]
    assert published["fleiss_kappa"] == full["agreement"]["fleiss_kappa"]
    assert published["pairwise"] == full["agreement"]["pairwise"]
    figures = QUALITY_FIGURES + ("error_types_by_label", "submitted", "annotators", "tasks_annotated")
    assert {name: quality[name] for name in figures} == {name: full["quality"][name] for name in figures}
    for name in ("annotators", "reviewers", "distribution"):
        assert annotators[name] == full["annotators"][name]


def test_events_found_by_the_scan_update_their_tasks(crew):
    # given a full pass, then a new task done by two annotators without anyone calling the engine
    engine.project_quality_recompute(crew.project.pk)
    task = factories.tasks(crew.batch, 1)[0]
    for annotator, label in zip(crew.annotators, ["dog", "dog", "dog"]):
        assignment = services.assignment_assign(task=task, annotator=annotator)
        services.assignment_submit(assignment=assignment, actor=annotator, result={"label": label})
    # when the events are applied
    assert engine.quality_events_apply(crew.project) >= 1
    # then the agreement counts the eleventh task, as a full recompute does
    published = latest(crew.project, "agreement").values["overall"]
    assert published["n"] == 11
    assert published == engine.project_quality_compute(crew.project)["agreement"]["overall"]
    assert MetricSnapshot.objects.get(scope="task", task=task).values["consensus"]["label"] == "dog"


def test_a_changed_label_schema_waits_for_the_full_pass(computed):
    Project.objects.filter(pk=computed.project.pk).update(
        label_schema={"labels": [{"value": "cat"}, {"value": "dog"}, {"value": "bird"}, {"value": "fish"}],
                      "options": {}})
    project = Project.objects.get(pk=computed.project.pk)
    assert engine.task_quality_update(computed.tasks[0].pk) is None
    assert engine.full_recompute_due(project)
    assert Task.objects.count() == 10


def test_a_review_found_by_the_scan_moves_acceptance_and_the_reviewer_s_figures(crew):
    # given a full pass, then a new task done by the three annotators and one of them approved, one rejected
    engine.project_quality_recompute(crew.project.pk)
    task = factories.tasks(crew.batch, 1)[0]
    done = []
    for annotator, label in zip(crew.annotators, ["dog", "dog", "cat"]):
        assignment = services.assignment_assign(task=task, annotator=annotator)
        done.append(services.assignment_submit(assignment=assignment, actor=annotator, result={"label": label}))
    services.review_approve(annotation=done[0], reviewer=crew.reviewer)
    services.review_reject(annotation=done[2], reviewer=crew.reviewer, error_types=["wrong_label"], comment="Look again.")
    # when the events are applied
    engine.quality_events_apply(crew.project)
    # then 27 decisions count, 24 approvals, 3 wrong labels, as a full recompute finds
    values = latest(crew.project, "quality").values
    assert values["computed"] == "incremental"
    assert values["samples"]["acceptance_rate"] == 27 and values["acceptance_rate"] == pytest.approx(24 / 27)
    assert values["error_types"] == {"wrong_label": 3}
    full = engine.project_quality_compute(crew.project)
    assert {k: values[k] for k in ("figures", "error_types", "error_types_by_label")} \
        == {k: full["quality"][k] for k in ("figures", "error_types", "error_types_by_label")}
    annotators = latest(crew.project, "annotators").values
    assert annotators["annotators"] == full["annotators"]["annotators"]
    assert annotators["reviewers"] == full["annotators"]["reviewers"]
    assert annotators["reviewers"][0]["reviewed"] == 27


# --- Dawid–Skene ----------------------------------------------------------------------------------------------------

def test_the_full_pass_fits_dawid_skene_as_metrics_does(crew):
    # given every task's rows after the margin (so the full pass writes every task's snapshot)
    with override_settings(QUALITY_COMMIT_MARGIN_SECONDS=3600):
        engine.project_quality_recompute(crew.project.pk)
    # then the fit is metrics' EM on the tasks × annotators matrix of current labels
    matrix = reliability_data().T
    fit = metrics.consensus_dawid_skene(matrix, 3, max_iter=engine.DAWID_SKENE_MAX_ITER, tol=engine.DAWID_SKENE_TOL)
    summary = latest(crew.project, "agreement").values["consensus"]
    assert summary["method"] == "dawid_skene" and summary["n"] == 10
    assert summary["labels"] == dict(zip(LABELS, np.bincount(fit["labels"], minlength=3).tolist()))
    assert summary["iterations"] == fit["iterations"] and summary["converged"] == fit["converged"]
    assert summary["mean_confidence"] == pytest.approx(fit["confidence"].mean())
    # the majority vote and Dawid–Skene agree on the 9 tasks with a majority; t8 (one vote each) is decided by the
    # annotators' estimated reliability
    assert summary["differs_from_majority"] <= 1
    model = engine._state_row(crew.project).values["dawid_skene"]
    assert model["annotator_ids"] == [a.pk for a in crew.annotators]
    assert np.allclose(model["confusion"], fit["confusion"]) and np.allclose(model["priors"], fit["priors"])
    # and each task's snapshot holds its label and posterior confidence
    for i, task in enumerate(crew.tasks):
        consensus = MetricSnapshot.objects.get(scope="task", task=task).values["consensus"]
        assert consensus["dawid_skene"] == LABELS[fit["labels"][i]]
        assert consensus["confidence"] == pytest.approx(fit["confidence"][i], abs=1e-12)


def test_an_update_scores_its_task_with_the_last_fit(crew):
    # given a full pass, then a new task labelled dog, dog, cat
    engine.project_quality_recompute(crew.project.pk)
    model = engine._state_row(crew.project).values["dawid_skene"]
    task = factories.tasks(crew.batch, 1)[0]
    for annotator, label in zip(crew.annotators, ["dog", "dog", "cat"]):
        assignment = services.assignment_assign(task=task, annotator=annotator)
        services.assignment_submit(assignment=assignment, actor=annotator, result={"label": label})
    # when its update runs
    engine.task_quality_update(task.pk)
    # then its posterior is one E-step with the full pass's matrices, which stay as they were
    posterior = metrics.dawid_skene_posterior(np.array([[2.0, 2.0, 1.0]]), model["confusion"], model["priors"])[0]
    consensus = MetricSnapshot.objects.get(scope="task", task=task).values["consensus"]
    assert consensus["label"] == "dog" and consensus["dawid_skene"] == LABELS[int(posterior.argmax())]
    assert consensus["confidence"] == pytest.approx(posterior.max(), abs=1e-12)
    assert engine._state_row(crew.project).values["dawid_skene"] == model


def test_a_hand_checked_dawid_skene_posterior():
    # one annotator whose confusion says: true "a" → says "a" 0.9, "b" 0.1; true "b" → says "b" 0.8, "a" 0.2;
    # priors 0.5/0.5. Saying "a": P(a) = 0.9·0.5 / (0.9·0.5 + 0.2·0.5) = 0.45 / 0.55 = 9/11
    model = {"annotator_ids": [7], "confusion": [[[0.9, 0.1], [0.2, 0.8]]], "priors": [0.5, 0.5]}
    posterior = engine._dawid_skene_posterior(model, np.array([[0.0, 1.0]]), np.array([7, 8]), 2)
    assert posterior[0] == pytest.approx([9 / 11, 2 / 11])  # annotator 8 is unknown to the model: no evidence
