"""Time low-agreement routing (apps/quality/routing.py) on a big project and print one JSON line.

    psql -h 127.0.0.1 -U postgres -c "CREATE DATABASE labelportal_bench_h4"
    cd /work/main
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/labelportal_bench_h4 .venv/bin/python bench/routing.py

The first run migrates the database and makes the data by INSERT … SELECT (test data: no history rows): a
classification project (overlap 2, review everything, threshold 0.5, one more annotator up to 3) with `--tasks`
tasks in review (default 1,000,000), each with its task agreement snapshot as the engine writes it; `--low-share`
of them (default 1 %) have agreement 0 over 2 annotations, the others 1. Later runs reset the routing state.

Timed:
- the first full pass (`low_agreement_tasks_evaluate` without `since`): every low task routed and alerted;
- a steady full pass: the same again, nothing new to do (the cost the beat's full pass pays every 10 minutes);
- the incremental pass after events, `--events` times: `--touched` task snapshots written now (one of them of a
  task that just became low), then `low_agreement_tasks_evaluate(since=…)` as the worker calls it.
"""

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.import_tasks import setup_django  # noqa: E402

SLUG = "bench-routing"


def make_data(n_tasks, low_share):
    from django.contrib.auth import get_user_model
    from django.db import connection

    from apps.projects.models import Batch, Project
    from apps.projects.services import project_create

    slug = f"{SLUG}-{n_tasks}"
    project = Project.objects.filter(slug=slug).first()
    if project is not None:
        return project
    admin, _ = get_user_model().objects.get_or_create(username="bench-admin",
                                                      defaults={"is_staff": True, "is_superuser": True})
    project = project_create(actor=admin, name=slug, slug=slug, task_type="classification",
                             label_schema={"labels": ["cat", "dog"]}, overlap=2, review_mode="all",
                             low_agreement_threshold=0.5, low_agreement_routing="extra_annotator", max_overlap=3)
    batch = Batch.objects.create(project=project, name="all", status=Batch.Status.ACTIVE)
    every = max(1, round(1 / low_share))
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO tasks_task (project_id, batch_id, data, status, priority, is_gold, extra_annotations, "
            "random_key, created_at, updated_at) SELECT %s, %s, jsonb_build_object('text', 'item ' || i), "
            "'in_review', 0, false, 0, random(), now(), now() FROM generate_series(1, %s) AS i",
            [project.pk, batch.pk, n_tasks])
        cursor.execute(
            "INSERT INTO quality_metricsnapshot (project_id, batch_id, task_id, scope, kind, values, computed_at) "
            "SELECT project_id, batch_id, id, 'task', 'agreement', jsonb_build_object("
            "'batch', batch_id, 'contribution', jsonb_build_object('counts', "
            "CASE WHEN id %% %s = 0 THEN '[1, 1]'::jsonb ELSE '[2, 0]'::jsonb END), "
            "'agreement', jsonb_build_object('value', CASE WHEN id %% %s = 0 THEN 0.0 ELSE 1.0 END, 'n', 2), "
            "'generation', 1), now() - interval '1 hour' FROM tasks_task WHERE project_id = %s",
            [every, every, project.pk])
        cursor.execute("ANALYZE tasks_task; ANALYZE quality_metricsnapshot; ANALYZE quality_alert")
    return project


def reset(project):
    """Back to no routing: no alerts, no task routed (the routed events of earlier runs stay: append-only)."""
    from django.db.models import Q

    from apps.quality.models import Alert
    from apps.tasks.models import Task

    Alert.objects.filter(project=project).delete()
    Task.objects.filter(project=project).filter(~Q(status="in_review") | Q(routed_at__isnull=False)).update(
        extra_annotations=0, routed_at=None, status="in_review")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=1_000_000)
    parser.add_argument("--low-share", type=float, default=0.01)
    parser.add_argument("--events", type=int, default=50)
    parser.add_argument("--touched", type=int, default=10)
    args = parser.parse_args()
    setup_django()
    from django.db import connection
    from django.utils import timezone

    from apps.quality.models import MetricSnapshot
    from apps.quality.routing import low_agreement_tasks_evaluate

    project = make_data(args.tasks, args.low_share)
    reset(project)
    started = time.perf_counter()
    first = low_agreement_tasks_evaluate(project)
    first_s = time.perf_counter() - started
    started = time.perf_counter()
    steady = low_agreement_tasks_evaluate(project)
    steady_s = time.perf_counter() - started

    ids = list(MetricSnapshot.objects.filter(project=project, scope="task", values__agreement__value=1.0)
               .values_list("pk", flat=True)[:args.events * args.touched])
    random.seed(4)
    random.shuffle(ids)
    timings, routed = [], 0
    for event in range(args.events):
        touched = ids[event * args.touched:(event + 1) * args.touched]
        since = timezone.now()
        MetricSnapshot.objects.filter(pk__in=touched).update(computed_at=timezone.now())
        with connection.cursor() as cursor:  # one of them became low
            cursor.execute("UPDATE quality_metricsnapshot SET values = jsonb_set(values, '{agreement,value}', "
                           "'0.0') WHERE id = %s", [touched[0]])
        started = time.perf_counter()
        result = low_agreement_tasks_evaluate(project, since=since)
        timings.append((time.perf_counter() - started) * 1000)
        routed += len(result["routed"])
    timings.sort()
    print(json.dumps({
        "tasks": args.tasks, "low_tasks": len(first["routed"]), "alerts_raised": len(first["raised"]),
        "first_full_pass_s": round(first_s, 2), "steady_full_pass_s": round(steady_s, 2),
        "steady_routed": len(steady["routed"]), "incremental_events": args.events,
        "incremental_routed": routed, "incremental_p50_ms": round(statistics.median(timings), 1),
        "incremental_p99_ms": round(timings[min(len(timings) - 1, int(len(timings) * 0.99))], 1),
    }))


if __name__ == "__main__":
    main()
