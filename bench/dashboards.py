"""Server time and query count of each dashboard page on a 1,000,000-task project; prints a Markdown table.

    psql -h 127.0.0.1 -U postgres -c "CREATE DATABASE labelportal_h1"
    cd /work/main
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/labelportal_h1 .venv/bin/python bench/dashboards.py

The first run migrates the database and makes the data by INSERT … SELECT (test data: no history rows): a
classification project with `--tasks` tasks (default 1,000,000) in 20 batches, 40 annotators, 3 reviewers, overlap
2, 2 % gold. Half of the tasks were worked on over the last 8 weeks (weekdays, office hours, some Saturdays): 40 %
accepted, 10 % in review, each with two annotations, their `submitted`/`accepted` events and a review (with its
decision event) for one in five; a gate per metric and a few open alerts. Then the workers' figures are computed once, as the workers would
(`progress_snapshot_write`, `quality_recompute_full`; their times are printed), and 8 weeks of snapshot history
are written: a progress and a quality snapshot every 10 minutes, and a quality snapshot per batch every hour
(some 40,000 rows), so that the daily series read a long history. Later runs reuse the data.

Timed, in-process through Django's test client (server time without the network), `--repeat` requests per page
after two warm-up requests: p50, p95 and the number of queries. The pages are listed in PAGES (url name, who
asks, arguments, query string); a page whose URL name is not (yet) defined is reported as missing, so the list
takes the people dashboards (apps/dashboards/people_urls.py) as soon as they exist.
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.import_tasks import setup_django  # noqa: E402
from bench.metrics import percentile  # noqa: E402

SLUG = "bench-dashboards"
N_BATCHES = 20
N_ANNOTATORS = 40
DAYS = 56

# (label, url name, user key, url kwargs (names resolved from `ids`), query string). Users: manager, admin, annotator.
PAGES = [
    ("project dashboard", "dashboards:project", "manager", {"project_id": "project"}, ""),
    ("project dashboard, one batch", "dashboards:project", "manager", {"project_id": "project"}, "?batch={batch}"),
    ("project dashboard, 56 days", "dashboards:project", "manager", {"project_id": "project"},
     "?date_from={from56}"),
    ("project dashboard JSON", "dashboards:project", "manager", {"project_id": "project"}, "?format=json"),
    ("project dashboard CSV (heatmap)", "dashboards:project", "manager", {"project_id": "project"},
     "?format=csv&table=heatmap"),
    ("project dashboard (admin)", "dashboards:project", "admin", {"project_id": "project"}, ""),
    ("admin index", "admin:index", "admin", {}, ""),
    ("team view", "people:team", "manager", {"project_id": "project"}, ""),
    ("annotator detail", "people:annotator", "manager", {"project_id": "project", "user_id": "annotator"}, ""),
    ("my stats", "people:my-stats", "annotator", {"project_id": "project"}, ""),
    ("API metrics (reference)", "api:project-metrics", "manager", {"project_id": "project"}, ""),
]


# Each review's decision event, as the review services record it (the worker's review latency reads these).
DECISION_EVENTS_SQL = """
    INSERT INTO tasks_taskevent (project_id, batch_id, task_id, assignment_id, type, actor_id, at, payload)
    SELECT t.project_id, t.batch_id, t.id, an.assignment_id,
           CASE r.decision WHEN 'approve' THEN 'approved' WHEN 'reject' THEN 'rejected' ELSE 'fixed' END,
           r.reviewer_id, r.decided_at, jsonb_build_object('annotation', an.id, 'review', r.id)
    FROM {review_table} r JOIN tasks_annotation an ON an.id = r.annotation_id JOIN tasks_task t ON t.id = an.task_id
    WHERE t.project_id = %(project)s"""


def make_data(n_tasks):
    """The bench project (see the module docstring), made once; returns (project, created)."""
    from django.contrib.auth import get_user_model
    from django.db import connection, transaction

    from apps.projects.models import Batch, Membership, Project
    from apps.projects.services import gate_create, membership_add, project_create
    from apps.quality.models import Alert, ErrorType, Review

    slug = f"{SLUG}-{n_tasks}"
    project = Project.objects.filter(slug=slug).first()
    if project is not None:
        return project, False
    User = get_user_model()
    admin, _ = User.objects.get_or_create(username="bench-admin", defaults={"is_staff": True, "is_superuser": True})
    started = time.perf_counter()
    with transaction.atomic():
        project = project_create(actor=admin, name=f"Dashboard bench {n_tasks:,}", slug=slug,
                                 task_type="classification", overlap=2, review_mode="sample", review_sample_rate=0.2,
                                 label_schema={"labels": [{"value": v} for v in ("a", "b", "c", "d")]},
                                 guideline_text="Pick the label.")
        annotators = [User.objects.get_or_create(username=f"bench-d-annotator-{i:02d}")[0] for i in range(N_ANNOTATORS)]
        reviewers = [User.objects.get_or_create(username=f"bench-d-reviewer-{i}")[0] for i in range(3)]
        manager = User.objects.get_or_create(username="bench-d-manager", defaults={"is_staff": True})[0]
        for user in annotators:
            membership_add(project=project, user=user, role=Membership.Role.ANNOTATOR)
        for user in reviewers:
            membership_add(project=project, user=user, role=Membership.Role.REVIEWER)
        membership_add(project=project, user=manager, role=Membership.Role.MANAGER)
        batches = [Batch.objects.create(project=project, name=f"Bench batch {i:02d}", status=Batch.Status.ACTIVE)
                   for i in range(N_BATCHES)]
        for metric, threshold in (("agreement", 0.6), ("gold_accuracy", 0.85), ("acceptance_rate", 0.9),
                                  ("rework_rate", 0.15)):
            gate_create(project=project, actor=None, metric=metric, comparator="lte" if metric == "rework_rate"
                        else "gte", threshold=threshold, min_samples=100)
        for i in range(8):
            Alert.objects.create(project=project, batch=batches[i], kind="outlier_annotator", severity="warning",
                                 message=f"Annotator {i} is an outlier")
        guideline = project.current_guideline
        ids = {"project": project.pk, "n": n_tasks, "days": DAYS, "guideline": guideline.pk,
               "version": guideline.version, "batches": [b.pk for b in batches],
               "annotators": [u.pk for u in annotators], "reviewers": [u.pk for u in reviewers],
               "labels": ["a", "b", "c", "d"],
               "error_types": list(ErrorType.objects.filter(project=project).order_by("code")
                                   .values_list("pk", flat=True)[:3])}
        review_table = Review._meta.db_table
        error_table = Review.error_types.through._meta.db_table
        with connection.cursor() as cursor:
            cursor.execute("SELECT setseed(0.17)")
            # g % 10: 0-3 accepted, 4 in review, 5-9 open (the first half of the project has been worked on)
            cursor.execute("""
                INSERT INTO tasks_task (created_at, updated_at, external_id, data, status, priority, is_gold,
                                        gold_answer, random_key, batch_id, project_id, extra_annotations,
                                        accepted_at)
                SELECT now() - interval '60 days', now(), 'd-' || g, jsonb_build_object('text', 'Item ' || g),
                       CASE WHEN g %% 10 < 4 THEN 'accepted' WHEN g %% 10 = 4 THEN 'in_review' ELSE 'open' END,
                       0, g %% 50 = 0,
                       CASE WHEN g %% 50 = 0 THEN jsonb_build_object('label', (%(labels)s::text[])[1 + g %% 4]) END,
                       random(), (%(batches)s::int[])[1 + g %% 20], %(project)s, 0, NULL
                FROM generate_series(1, %(n)s) AS g""", ids)
            # when each worked task was submitted: a day of the last 8 weeks (weekend days moved to Friday, but
            # every 12th stays on its Saturday), an office hour from 06 to 17 UTC
            cursor.execute("""
                CREATE TEMP TABLE bench_done ON COMMIT DROP AS
                SELECT t.id, t.batch_id, t.status, g, CASE WHEN EXTRACT(ISODOW FROM s) = 7
                                                               OR (EXTRACT(ISODOW FROM s) = 6 AND g %% 12 <> 0)
                                                          THEN s - (EXTRACT(ISODOW FROM s) - 5) * interval '1 day'
                                                          ELSE s END AS at
                FROM (SELECT id, batch_id, status, substr(external_id, 3)::int AS g FROM tasks_task
                      WHERE project_id = %(project)s AND status IN ('accepted', 'in_review')) t
                CROSS JOIN LATERAL (SELECT date_trunc('day', now())
                                           - ((g::bigint * 7919) %% %(days)s) * interval '1 day'
                                           + (6 + (g * 31) %% 12) * interval '1 hour'
                                           + ((g * 13) %% 3600) * interval '1 second' AS s) AS draw""", ids)
            cursor.execute("""
                INSERT INTO tasks_assignment (created_at, updated_at, status, assigned_at, started_at, submitted_at,
                                              rework_count, reason, annotator_id, task_id)
                SELECT d.at, d.at, CASE WHEN d.status = 'accepted' THEN 'approved' ELSE 'submitted' END,
                       d.at - interval '40 seconds', d.at - interval '30 seconds', d.at + o * interval '3 minutes',
                       0, '', (%(annotators)s::int[])[1 + (d.g + o * 17) %% 40], d.id
                FROM bench_done d CROSS JOIN (VALUES (0), (1)) AS offsets(o)""", ids)
            cursor.execute("""
                INSERT INTO tasks_annotation (version, source, result, notes, lead_time_seconds, guideline_version,
                                              status, needs_review, is_current, submitted_at, annotator_id,
                                              author_id, guideline_id, assignment_id, task_id)
                SELECT 1, 'annotator', jsonb_build_object('label', (%(labels)s::text[])[
                           1 + CASE WHEN random() < 0.85 THEN t.g %% 4 ELSE floor(random() * 4)::int END]),
                       '', round((10 + random() * 30)::numeric, 1), %(version)s,
                       CASE WHEN a.status = 'approved' THEN 'approved' ELSE 'submitted' END,
                       a.status <> 'approved' AND a.id %% 5 = 0, true, a.submitted_at, a.annotator_id,
                       a.annotator_id, %(guideline)s, a.id, a.task_id
                FROM tasks_assignment a JOIN bench_done t ON t.id = a.task_id""", ids)
            cursor.execute("""
                INSERT INTO tasks_taskevent (project_id, batch_id, task_id, assignment_id, type, actor_id, at, payload)
                SELECT %(project)s, t.batch_id, a.task_id, a.id, 'submitted', a.annotator_id, a.submitted_at, '{}'
                FROM tasks_assignment a JOIN bench_done t ON t.id = a.task_id""", ids)
            cursor.execute("""
                INSERT INTO tasks_taskevent (project_id, batch_id, task_id, assignment_id, type, actor_id, at, payload)
                SELECT %(project)s, t.batch_id, t.id, NULL, 'accepted', NULL, t.at + interval '2 hours', '{}'
                FROM bench_done t WHERE t.status = 'accepted'""", ids)
            cursor.execute("UPDATE tasks_task SET accepted_at = d.at + interval '2 hours' FROM bench_done d "
                           "WHERE tasks_task.id = d.id AND d.status = 'accepted'")
            cursor.execute(f"""
                INSERT INTO {review_table} (decision, comment, started_at, decided_at, annotation_id, reviewer_id)
                SELECT CASE WHEN r < 0.88 THEN 'approve' WHEN r < 0.95 THEN 'reject' ELSE 'fix' END, '',
                       an.submitted_at + interval '10 minutes',
                       an.submitted_at + interval '10 minutes' + random() * interval '6 hours',
                       an.id, (%(reviewers)s::int[])[1 + an.id %% 3]
                FROM tasks_annotation an JOIN bench_done t ON t.id = an.task_id
                CROSS JOIN LATERAL (SELECT random() + 0 * an.id AS r) AS draw
                WHERE t.status = 'accepted' AND an.id %% 5 = 0""", ids)
            cursor.execute(DECISION_EVENTS_SQL.format(review_table=review_table), ids)
            cursor.execute(f"""
                INSERT INTO {error_table} (review_id, errortype_id)
                SELECT r.id, (%(error_types)s::int[])[1 + r.id %% 3]
                FROM {review_table} r JOIN tasks_annotation an ON an.id = r.annotation_id
                JOIN bench_done t ON t.id = an.task_id WHERE r.decision IN ('reject', 'fix')""", ids)
    with connection.cursor() as cursor:
        for table in ("tasks_task", "tasks_assignment", "tasks_annotation", "tasks_taskevent", review_table,
                      error_table):
            cursor.execute(f"VACUUM ANALYZE {table}")
    print(f"created the bench project ({n_tasks:,} tasks) in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return project, True


def figures_and_history(project):
    """The workers' figures, once (timed), then DAYS days of snapshot history before them."""
    from django.db import connection

    from apps.quality import services

    started = time.perf_counter()
    progress = services.progress_snapshot_write(project_id=project.pk)
    progress_seconds = time.perf_counter() - started
    started = time.perf_counter()
    services.quality_recompute_full(project_id=project.pk)
    quality_seconds = time.perf_counter() - started
    print(f"worker: progress snapshot {progress_seconds:.1f} s, full quality pass {quality_seconds:.1f} s",
          file=sys.stderr)
    params = {"project": project.pk, "days": DAYS, "at": progress.computed_at}
    with connection.cursor() as cursor:
        # Every 10 minutes a progress and a quality snapshot like the latest, the accepted count and the agreement
        # growing towards today's; every hour a quality snapshot per batch.
        cursor.execute("""
            INSERT INTO quality_metricsnapshot (project_id, batch_id, annotator_id, task_id, scope, kind, values,
                                                computed_at)
            SELECT s.project_id, s.batch_id, NULL, NULL, s.scope, s.kind,
                   CASE WHEN s.kind = 'progress'
                        THEN jsonb_set(jsonb_set(s.values, '{by_status,accepted}',
                                                 to_jsonb(round((s.values #>> '{by_status,accepted}')::int * f))),
                                       '{by_status,open}',
                                       to_jsonb((s.values #>> '{by_status,open}')::int
                                                + round((s.values #>> '{by_status,accepted}')::int * (1 - f))))
                        ELSE jsonb_set(s.values, '{agreement,value}',
                                       to_jsonb(0.45 + 0.25 * f + 0.03 * sin(extract(epoch FROM ts) / 7200)))
                   END, ts
            FROM quality_metricsnapshot s
            CROSS JOIN LATERAL generate_series(%(at)s - %(days)s * interval '1 day', %(at)s - interval '10 minutes',
                                               CASE WHEN s.scope = 'batch' THEN interval '1 hour'
                                                    ELSE interval '10 minutes' END) AS ts
            CROSS JOIN LATERAL (SELECT 1 - extract(epoch FROM (%(at)s - ts)) / (%(days)s * 86400.0) AS f) AS frac
            WHERE s.project_id = %(project)s AND s.kind IN ('progress', 'quality')
              AND s.scope IN ('project', 'batch') AND s.computed_at >= %(at)s - interval '1 hour'""", params)
        print(f"history: {cursor.rowcount:,} snapshots", file=sys.stderr)
        cursor.execute("VACUUM ANALYZE quality_metricsnapshot")


def time_pages(project, repeat):
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext
    from django.urls import NoReverseMatch, reverse
    from django.utils import timezone

    User = get_user_model()
    users = {"manager": User.objects.get(username="bench-d-manager"), "admin": User.objects.get(username="bench-admin"),
             "annotator": User.objects.get(username="bench-d-annotator-00")}
    ids = {"project": project.pk, "annotator": users["annotator"].pk,
           "batch": project.batches.order_by("pk").values_list("pk", flat=True)[3],
           "from56": (timezone.now().date() - timezone.timedelta(days=DAYS - 1)).isoformat()}
    rows = []
    for label, name, who, kwargs, query in PAGES:
        try:
            path = reverse(name, kwargs={key: ids[value] for key, value in kwargs.items()})
        except NoReverseMatch:
            rows.append(f"| {label} | `{name}` | — | not there (yet) | | |")
            continue
        path += query.format(**ids)
        client = Client()
        client.force_login(users[who])
        for _ in range(2):
            client.get(path)
        times = []
        for _ in range(repeat):
            started = time.perf_counter()
            response = client.get(path)
            times.append((time.perf_counter() - started) * 1000)
        with CaptureQueriesContext(connection) as context:
            client.get(path)
        rows.append(f"| {label} | `{path}` | {response.status_code} | {statistics.median(times):.1f} | "
                    f"{percentile(times, 95):.1f} | {len(context)} |")
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=40, help="timed requests per page")
    args = parser.parse_args()
    setup_django()
    from django.conf import settings
    from django.db import connection

    if connection.vendor != "postgresql":
        sys.exit("bench/dashboards.py needs PostgreSQL: set DATABASE_URL")
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]
    project, created = make_data(args.tasks)
    if created:
        figures_and_history(project)
    print("| page | path | status | p50 ms | p95 ms | queries |")
    print("|---|---|---|---|---|---|")
    print("\n".join(time_pages(project, args.repeat)))


if __name__ == "__main__":
    main()
