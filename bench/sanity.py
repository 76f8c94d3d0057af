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
- at submit: `submission_check` of one result (the rules' query and the checks), `--checks` times.
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


def timed(function, *args, **kwargs):
    started = time.perf_counter()
    value = function(*args, **kwargs)
    return value, round(time.perf_counter() - started, 3)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=333_334)
    parser.add_argument("--checks", type=int, default=500)
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
    print(json.dumps(result))


if __name__ == "__main__":
    main()
