"""Review policy, seen from the reviewer's queue: `none` queues nothing and accepts a task as soon as its required
annotations are in and pass the sanity rules; `all` queues every submission; `sample` queues about the project's
rate of them (seeded draws, so the tests are repeatable; within a binomial tolerance, for several seeds). Gold is scored, never queued."""

import math
import random

import pytest

from apps.projects.models import Project
from apps.quality.models import Review
from apps.quality.tasks import quality_recompute
from apps.tasks import services
from apps.tasks.models import Annotation, Assignment, Task
from apps.tasks.review_queue import review_queue
from tests import factories

from .world import Desk, client, fresh, give, submit

pytestmark = pytest.mark.django_db


def submit_api(annotator, assignment, result):
    return client(annotator).post(f"/api/v1/assignments/{assignment.pk}/submit/", {"result": result},
                                  format="json")


def test_review_none_accepts_a_task_once_its_required_annotations_are_in_and_pass_the_sanity_rules():
    # given a text-span project reviewing nothing, with two annotators per task
    desk = Desk(task_type="text_spans", review_mode="none", overlap=2)
    first, second = desk.annotators[:2]
    a1, a2 = give(desk.task, first), give(desk.task, second)

    # when the first submits spans breaking a sanity rule (two PER spans overlapping), it is refused
    overlapping = {"spans": [{"start": 0, "end": 12, "label": "PER"}, {"start": 4, "end": 12, "label": "PER"}]}
    refused = submit_api(first, a1, overlapping)
    assert refused.status_code == 400, refused.json()
    assert not Annotation.objects.exists() and fresh(a1).status == "assigned"

    # when they submit valid spans, the task still waits for the second annotator
    ada = {"spans": [{"start": 0, "end": 12, "label": "PER"}]}
    assert submit_api(first, a1, ada).status_code == 201
    assert fresh(desk.task).status == "in_progress" and desk.task.final_result is None

    # when the second annotator's valid spans are in, the task is accepted with its final result stored
    both = {"spans": [{"start": 0, "end": 12, "label": "PER"}, {"start": 17, "end": 32, "label": "PER"}]}
    assert submit_api(second, a2, both).status_code == 201
    task = fresh(desk.task)
    assert task.status == "accepted" and task.accepted_at is not None
    # a tie, with no gold work to tell the annotators apart: the smallest canonical JSON text (METRICS.md, Consensus)
    assert task.final_result == both
    # and nothing ever reached a reviewer
    assert not Annotation.objects.filter(needs_review=True).exists()
    for reviewer in (desk.junior, desk.senior, desk.lead):
        assert client(reviewer).post(f"/api/v1/projects/{desk.project.pk}/review/next/").status_code == 204


def binomial_bounds(n, p, sds=4):
    """The counts within `sds` standard deviations of a binomial(n, p)'s mean: a correct sampler lands outside
    them with probability below 1e-4 (normal approximation), a sampler off by a few points of rate does not."""
    mean, sd = n * p, math.sqrt(n * p * (1 - p))
    return math.floor(mean - sds * sd), math.ceil(mean + sds * sd)


@pytest.mark.parametrize("mode, rate, seed", [
    ("none", 0.2, 7),
    ("all", 0.2, 7),
    *(("sample", 0.3, seed) for seed in (7, 11, 2024)),
])
def test_the_queue_holds_what_the_policy_reviews_and_the_rest_is_accepted(monkeypatch, mode, rate, seed):
    # given 120 tasks of a project with the review mode, and the policy's draws from a seeded generator of its
    # own (repeatable, and no other code's random numbers change them)
    n = 120
    desk = Desk(review_mode=mode, review_sample_rate=rate, n_tasks=n, n_annotators=1)
    annotator = desk.annotators[0]
    assignments = Assignment.objects.bulk_create(
        [Assignment(task=task, annotator=annotator, status="in_progress") for task in desk.tasks])
    monkeypatch.setattr(services, "random", random.Random(seed))

    # when every task is submitted
    submitted = [services.assignment_submit(assignment=a, actor=annotator, result={"label": "dog"})
                 for a in assignments]

    # then the reviewer's queue holds exactly the submissions the policy picked, oldest first
    queued = [a.pk for a in review_queue(project=desk.project, reviewer=desk.junior)]
    picked = [a.pk for a in submitted if a.needs_review]
    assert queued == picked
    low, high = {"none": (0, 0), "all": (n, n)}.get(mode) or binomial_bounds(n, rate)
    assert low <= len(queued) <= high
    # and every other task is accepted with its result; the queued ones wait in review
    assert Task.objects.filter(status="in_review").count() == len(queued)
    accepted = Task.objects.filter(status="accepted")
    assert accepted.count() == n - len(queued)
    assert all(result == {"label": "dog"} for result in accepted.values_list("final_result", flat=True))


@pytest.mark.parametrize("rate", [0.05, 0.3, 0.5, 0.9])
def test_the_sample_policy_reviews_its_rate_of_first_submissions_over_many_draws(monkeypatch, rate):
    # given a project sampling `rate` of the submissions, and 20 000 first submissions per seed, for three seeds
    n = 20_000
    task = Task(project=Project(review_mode=Project.ReviewMode.SAMPLE, review_sample_rate=rate), is_gold=False)
    counts = []
    for seed in (1, 2, 3):
        monkeypatch.setattr(services, "random", random.Random(seed))
        counts.append(sum(services._needs_review(task, resubmission=False) for _ in range(n)))

    # then each count is within the binomial tolerance of n × rate (4 standard deviations: ± 0.6 points of rate
    # at 0.3), and so is their total over 3n
    low, high = binomial_bounds(n, rate)
    assert all(low <= count <= high for count in counts), (counts, low, high)
    low, high = binomial_bounds(3 * n, rate)
    assert low <= sum(counts) <= high
    # while a resubmission is always reviewed, and gold never is
    assert services._needs_review(task, resubmission=True)
    assert not services._needs_review(Task(project=task.project, is_gold=True), resubmission=False)


def test_gold_is_scored_not_queued_and_reviewers_cannot_reach_it():
    # given a project reviewing everything, a plain task and a gold one, both answered
    desk = Desk(review_mode="all", n_tasks=1)
    gold = factories.tasks(desk.batch, 1, is_gold=True, gold_answer={"label": "dog"})[0]
    plain = submit(desk.task, desk.annotators[0])
    gold_answers = [submit(gold, annotator, {"label": label})
                    for annotator, label in zip(desk.annotators, ("dog", "cat", "dog"))]

    # then no gold answer waits for a review: only the plain submission is queued, even for the lead
    assert not any(a.needs_review for a in gold_answers)
    assert list(review_queue(project=desk.project, reviewer=desk.lead)) == [plain]
    # a reviewer cannot decide on one (they may not even learn the task exists: 404)
    response = client(desk.lead).post(f"/api/v1/annotations/{gold_answers[0].pk}/review/",
                                      {"decision": "approve"}, format="json")
    assert response.status_code == 404
    assert fresh(gold_answers[0]).status == "submitted"
    # the gold task stays open to more annotators and is never accepted by the overlap
    assert fresh(gold).status == "in_progress"
    # and the answers are scored against the gold answer by the quality workers' pass, without anyone's decision
    assert not Review.objects.filter(annotation__in=gold_answers).exists()
    quality_recompute.delay(desk.project.pk)  # the full pass (beat; at most a debounce after events)
    metrics = client(desk.manager).get(f"/api/v1/projects/{desk.project.pk}/metrics/").json()
    assert metrics["quality"]["gold_accuracy"] == pytest.approx(2 / 3)
    annotators = client(desk.manager).get(f"/api/v1/projects/{desk.project.pk}/annotators/").json()["results"]
    assert {row["username"]: row["gold_accuracy"] for row in annotators} == {"ann0": 1.0, "ann1": 0.0, "ann2": 1.0}
