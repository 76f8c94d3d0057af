"""Time the configurable sanity rules on a million annotations and print one JSON line.

    psql -h 127.0.0.1 -U postgres -c "CREATE DATABASE labelportal_h3"
    cd /work/main
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/labelportal_h3 .venv/bin/python bench/sanity.py

The data is bench/metrics.py's (made on the first run by INSERT … SELECT: a classification project, 5 labels, 20
annotators, overlap 3, `--tasks` tasks, 1,000,002 current annotations by default, none with notes). The project
gets two rules: "label_e may not be used" and "label_d needs a note" (so about 40 % of the current annotations
break one: a heavy case for the report).

Timed:
- the engine: `project_quality_compute` with and without the rules (the difference is the rules' database
  query), and `annotations_breaking_rules` alone;
- the report: `sanity_report` (counts per rule in one pass, the first 50 offenders per rule, the pass rate), and
  the whole CSV (`sanity_report_csv`, streamed: lines, seconds and the process's peak memory);
- at submit: `submission_check` of one result (the rules' query and the checks), `--checks` times;
- with `--boxes N`: a bounding-box project of N tasks with one annotation each (0 to 4 boxes of car, person or
  other, no notes), rules "at least 1 box" and "other needs a note": `sanity_report` there, where the schema's
  rules (boxes inside the image…) are checked in Python over the streamed results.
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.import_tasks import peak_reset, rss_kib, setup_django  # noqa: E402
from bench.metrics import make_data, timing  # noqa: E402


def make_boxes(n_tasks):
    """The box project (see the module docstring), made once."""
    from django.contrib.auth import get_user_model
    from django.db import connection, transaction

    from apps.projects.models import Batch, Project
    from apps.projects.services import project_create

    slug = f"bench-sanity-boxes-{n_tasks}"
    project = Project.objects.filter(slug=slug).first()
    if project is not None:
        return project
    User = get_user_model()
    admin, _ = User.objects.get_or_create(username="bench-admin", defaults={"is_staff": True, "is_superuser": True})
    annotators = [User.objects.get_or_create(username=f"bench-s-annotator-{i:02d}")[0].pk for i in range(20)]
    with transaction.atomic():
        project = project_create(actor=admin, name=f"Sanity bench {n_tasks}", slug=slug, task_type="bounding_boxes",
                                 label_schema={"labels": [{"value": v} for v in ("car", "person", "other")]},
                                 overlap=1, review_mode="none", guideline_text="Box every vehicle.")
        batch = Batch.objects.create(project=project, name="Bench", status=Batch.Status.ACTIVE)
        ids = {"project": project.pk, "batch": batch.pk, "n": n_tasks, "annotators": annotators,
               "guideline": project.current_guideline_id}
        with connection.cursor() as cursor:
            cursor.execute("SELECT setseed(0.17)")
            cursor.execute("""
                INSERT INTO tasks_task (created_at, updated_at, external_id, data, status, priority, is_gold,
                                        random_key, batch_id, project_id, extra_annotations)
                SELECT now(), now(), 'b-' || g, jsonb_build_object('image', '/static/x.png', 'width', 640,
                       'height', 480), 'accepted', 0, false, random(), %(batch)s, %(project)s, 0
                FROM generate_series(1, %(n)s) AS g""", ids)
            cursor.execute("""
                INSERT INTO tasks_assignment (created_at, updated_at, status, assigned_at, started_at, submitted_at,
                                              rework_count, reason, annotator_id, task_id)
                SELECT now(), now(), 'submitted', now(), now(), now(), 0, '',
                       (%(annotators)s::int[])[1 + t.id %% 20], t.id
                FROM tasks_task t WHERE t.project_id = %(project)s""", ids)
            cursor.execute("""
                INSERT INTO tasks_annotation (version, source, result, notes, lead_time_seconds, guideline_version,
                                              status, needs_review, is_current, submitted_at, annotator_id,
                                              author_id, guideline_id, assignment_id, task_id)
                SELECT 1, 'annotator', jsonb_build_object('boxes', COALESCE((
                           SELECT jsonb_agg(jsonb_build_object('x', 0.1 * i, 'y', 0.1, 'w', 0.05, 'h', 0.2,
                                  'label', (ARRAY['car', 'person', 'other'])[1 + floor(random() * 3)::int]))
                           FROM generate_series(1, floor(random() * 5)::int + 0 * a.id) AS i), '[]'::jsonb)),
                       '', 20, 1, 'submitted', false, true, now(), a.annotator_id, a.annotator_id, %(guideline)s,
                       a.id, a.task_id
                FROM tasks_assignment a JOIN tasks_task t ON t.id = a.task_id WHERE t.project_id = %(project)s""",
                           ids)
        with connection.cursor() as cursor:
            for table in ("tasks_task", "tasks_assignment", "tasks_annotation"):
                cursor.execute(f"ANALYZE {table}")
    return project


def timed(function, *args, **kwargs):
    started = time.perf_counter()
    value = function(*args, **kwargs)
    return value, round(time.perf_counter() - started, 3)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=333_334)
    parser.add_argument("--checks", type=int, default=500)
    parser.add_argument("--boxes", type=int, default=0, help="Also time the report on a box project of N tasks.")
    args = parser.parse_args()
    setup_django()

    from django.db import connection

    from apps.core.audit import acting_as
    from apps.quality import engine, sanity
    from apps.quality.models import SanityRule
    from apps.tasks.models import Annotation, Task

    if connection.vendor != "postgresql":
        raise SystemExit("run it on PostgreSQL: DATABASE_URL=postgres://postgres@127.0.0.1:5432/labelportal_h3")
    project, created = make_data(args.tasks)
    result = {"database": connection.settings_dict["NAME"], "tasks": args.tasks, "data_created_now": created,
              "annotations": Annotation.objects.filter(task__project=project).count(),
              "load_average_1m": os.getloadavg()[0]}
    with acting_as(None):
        SanityRule.objects.filter(project=project).delete()
        computed, result["compute_without_rules_s"] = timed(engine.project_quality_compute, project)
        result["sanity_pass_rate_without_rules"] = computed["quality"]["figures"]["sanity_pass_rate"]
        SanityRule.objects.create(project=project, kind="label_forbidden", label="label_e")
        SanityRule.objects.create(project=project, kind="label_needs_note", label="label_d")

        ids, result["breaking_ids_s"] = timed(sanity.annotations_breaking_rules, project)
        result["breaking_annotations"] = len(ids)
        del ids
        computed, result["compute_with_rules_s"] = timed(engine.project_quality_compute, project)
        result["sanity_pass_rate_with_rules"] = computed["quality"]["figures"]["sanity_pass_rate"]
        del computed

        report, result["report_s"] = timed(sanity.sanity_report, project, limit=50)
        result["report"] = {"current": report["current"], "breaking": report["breaking"],
                            "pass_rate": report["pass_rate"],
                            "counts": {finding.key: finding.count for finding in report["findings"]}}

        peak_reset()
        started, lines, size = time.perf_counter(), 0, 0
        for chunk in sanity.sanity_report_csv(project):
            lines += chunk.count("\n")
            size += len(chunk)
        result["csv_s"] = round(time.perf_counter() - started, 3)
        result["csv_lines"], result["csv_mb"] = lines, round(size / 1e6, 1)
        result["csv_peak_rss_mb"] = round((rss_kib("VmHWM") or 0) / 1024, 1)

        task = Task.objects.filter(project=project).select_related("project").first()
        durations = []
        for _ in range(args.checks):
            started = time.perf_counter()
            sanity.submission_check(task.project, task.data, {"label": "label_a"}, "")
            durations.append(time.perf_counter() - started)
        result["submission_check"] = timing(durations)

        if args.boxes:
            boxes = make_boxes(args.boxes)
            SanityRule.objects.filter(project=boxes).delete()
            SanityRule.objects.create(project=boxes, kind="min_items", count=1)
            SanityRule.objects.create(project=boxes, kind="label_needs_note", label="other")
            report, seconds = timed(sanity.sanity_report, boxes, limit=50)
            result["boxes"] = {"tasks": args.boxes, "report_s": seconds, "current": report["current"],
                               "breaking": report["breaking"],
                               "counts": {finding.key: finding.count for finding in report["findings"]}}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
