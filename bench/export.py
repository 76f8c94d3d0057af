"""Time a JSONL export through the REST API on a real server, and print one JSON line.

    .venv/bin/python bench/export.py --tasks 1000000 --repeat 3

It creates (if missing) and migrates the PostgreSQL database labelportal_bench2 and, once, a classification project
of --tasks accepted tasks, each with one submitted assignment and one current annotation by one of three
annotators, written by INSERT … SELECT (test data: no history or events). It then starts gunicorn (2 sync workers,
production settings) and GETs /api/v1/projects/{id}/export/?format=jsonl as the admin, reading the stream to the
end and counting its lines; tasks/s = tasks ÷ the time from the request to the last byte. Peak RSS is the
high-water mark (VmHWM) of the gunicorn workers after the export, on a server started afresh for each run.
--format json|csv exports in another format.
"""

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from api_import import Gunicorn, admin_token, database_prepare, machine  # noqa: E402

ANNOTATORS = ("bench-annotator-1", "bench-annotator-2", "bench-annotator-3")


def project_with_accepted_tasks(admin, n):
    """The bench project of `n` accepted tasks, created the first time (a few minutes for a million)."""
    from django.db import connection, transaction

    from apps.projects.models import Batch, Membership, Project
    from apps.projects.services import membership_add, project_create
    from apps.tasks.models import Task

    slug = f"bench-export-{n}"
    project = Project.objects.filter(slug=slug).first()
    if project is not None and Task.objects.filter(project=project, status="accepted").count() == n:
        return project, False
    if project is not None:
        raise SystemExit(f"project {slug} exists but is incomplete; drop the database {connection.settings_dict['NAME']}")
    from django.contrib.auth import get_user_model

    annotators = [get_user_model().objects.get_or_create(username=name)[0] for name in ANNOTATORS]
    started = time.perf_counter()
    with transaction.atomic():
        project = project_create(actor=admin, name=f"Export bench {n}", slug=slug, task_type="classification",
                                 label_schema={"labels": [{"value": "positive"}, {"value": "negative"},
                                                          {"value": "neutral"}]},
                                 guideline_text="Label the sentiment of the review.")
        for user in annotators:
            membership_add(project=project, user=user, role=Membership.Role.ANNOTATOR)
        batch = Batch.objects.create(project=project, name="Bench", status=Batch.Status.COMPLETED)
        guideline = project.current_guideline
        ids = {"project": project.pk, "batch": batch.pk, "n": n, "guideline": guideline.pk,
               "version": guideline.version, "annotators": [user.pk for user in annotators]}
        with connection.cursor() as cursor:
            cursor.execute("""
                INSERT INTO tasks_task (created_at, updated_at, external_id, data, status, priority, is_gold,
                                        final_result, accepted_at, random_key, batch_id, project_id,
                                        extra_annotations)
                SELECT now(), now(), 'export-' || g,
                       jsonb_build_object('text', 'Review ' || g || ': the delivery was on time and the box was intact.'),
                       'accepted', 0, false,
                       jsonb_build_object('label', (ARRAY['positive', 'negative', 'neutral'])[1 + g %% 3]),
                       now(), random(), %(batch)s, %(project)s, 0
                FROM generate_series(1, %(n)s) AS g""", ids)
            cursor.execute("""
                INSERT INTO tasks_assignment (created_at, updated_at, status, assigned_at, started_at, submitted_at,
                                              rework_count, reason, annotator_id, task_id)
                SELECT now(), now(), 'submitted', now(), now(), now(), 0, '',
                       (%(annotators)s::int[])[1 + t.id %% 3], t.id
                FROM tasks_task t WHERE t.project_id = %(project)s""", ids)
            cursor.execute("""
                INSERT INTO tasks_annotation (version, source, result, notes, lead_time_seconds, guideline_version,
                                              status, needs_review, is_current, submitted_at, annotator_id,
                                              author_id, guideline_id, assignment_id, task_id)
                SELECT 1, 'annotator', t.final_result, '', 5 + a.id %% 50, %(version)s, 'submitted', false, true,
                       now(), a.annotator_id, a.annotator_id, %(guideline)s, a.id, a.task_id
                FROM tasks_assignment a JOIN tasks_task t ON t.id = a.task_id
                WHERE t.project_id = %(project)s""", ids)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE tasks_task")
        cursor.execute("VACUUM ANALYZE tasks_assignment")
        cursor.execute("VACUUM ANALYZE tasks_annotation")
    print(f"created {n} accepted tasks in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    return project, True


def export_once(project, token, fmt, n):
    server = Gunicorn()
    try:
        connection = server.connection()
        started = time.perf_counter()
        connection.request("GET", f"/api/v1/projects/{project.pk}/export/?format={fmt}",
                           headers={"Authorization": f"Token {token}"})
        response = connection.getresponse()
        if response.status != 200:
            raise SystemExit(f"export answered {response.status}: {response.read(500)!r}")
        first_byte = time.perf_counter() - started
        lines = size = 0
        head = tail = b""
        while chunk := response.read(1 << 20):
            lines += chunk.count(b"\n")
            size += len(chunk)
            head = head or chunk[:4096]
            tail = (tail + chunk)[-4096:]
        seconds = time.perf_counter() - started
        peaks = server.peak_rss_kib()
    finally:
        server.stop()
    if fmt == "jsonl":
        if lines != n:
            raise SystemExit(f"expected {n} lines, got {lines}")
        first, last = json.loads(head.split(b"\n")[0]), json.loads(tail.rstrip(b"\n").rsplit(b"\n", 1)[-1])
        for record in (first, last):
            if record["status"] != "accepted" or len(record["provenance"]["annotations"]) != 1:
                raise SystemExit(f"unexpected record: {record}")
    return {"seconds": seconds, "first_byte_s": first_byte, "peak_kib": max(peaks.values()), "mb": size / 2**20}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=1, help="exports, each from a fresh server")
    parser.add_argument("--format", default="jsonl", choices=["jsonl", "json", "csv"])
    args = parser.parse_args()

    database_prepare()
    admin, token = admin_token()
    project, created = project_with_accepted_tasks(admin, args.tasks)
    load = os.getloadavg()[0]
    runs = [export_once(project, token, args.format, args.tasks) for _ in range(args.repeat)]
    median = sorted(runs, key=lambda run: run["seconds"])[len(runs) // 2]
    print(json.dumps({
        "bench": "export",
        "format": args.format,
        "tasks": args.tasks,
        "seconds": round(median["seconds"], 3),
        "tasks_per_s": round(args.tasks / median["seconds"]),
        "first_byte_s": round(median["first_byte_s"], 3),
        "worker_peak_rss_mb": round(max(run["peak_kib"] for run in runs) / 1024, 1),
        "body_mb": round(median["mb"], 1),
        "runs_seconds": [round(run["seconds"], 3) for run in runs],
        "runs_spread": round(statistics.pstdev(run["seconds"] for run in runs), 3),
        "data_created_now": created,
        "load_average_1m": round(load, 2),
        "server": "gunicorn -w 2 (sync), labelportal.settings.prod",
        **machine(),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
