"""Time a bulk import through the import service, history included, and print one JSON line.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/labelportal_bench .venv/bin/python bench/import_tasks.py --rows 100000

It migrates the database if needed, creates a fresh classification project, writes a JSONL file (text, external_id,
every 1000th row a gold task), and times `tasks_import` on it: reading, validation, the task rows, their history
rows, the "imported" event and the on-commit progress refresh (run in-process: Celery is eager without Redis).
Peak RSS is the process's high-water mark during the import: reset just before it where Linux allows
(/proc/self/clear_refs), else ru_maxrss of the whole run. With --repeat N each run imports into a fresh project and
the line reports the median run (and every run's seconds).
"""

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def rss_kib(field):
    """VmRSS or VmHWM of this process in KiB, from /proc (None elsewhere)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def peak_reset():
    """Reset the peak-RSS mark so that it measures the import only; True when the kernel allowed it."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def jsonl_write(path, rows, gold_every):
    with open(path, "w", encoding="utf-8") as out:
        for i in range(rows):
            row = {"data": {"text": f"Review {i}: the delivery was on time and the box was intact."},
                   "external_id": f"bench-{i}"}
            if gold_every and i % gold_every == 0:
                row["is_gold"], row["gold_answer"] = True, {"label": "positive"}
            out.write(json.dumps(row) + "\n")


def setup_django():
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "labelportal.settings.test")  # DEBUG off: no query log
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import DEFAULT_DB_ALIAS, connections
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connections[DEFAULT_DB_ALIAS])
    if executor.migration_plan(executor.loader.graph.leaf_nodes()):
        call_command("migrate", verbosity=0, interactive=False)


def import_once(path, rows, profile=None):
    """One timed import into a fresh project; returns the run's figures."""
    from django.contrib.auth import get_user_model

    from apps.projects.services import project_create
    from apps.tasks.imports import tasks_import
    from apps.tasks.models import Task

    admin, _ = get_user_model().objects.get_or_create(username="bench-admin",
                                                      defaults={"is_staff": True, "is_superuser": True})
    stamp = f"{time.strftime('%Y%m%d-%H%M%S')}-{time.perf_counter_ns() % 10**6}"
    project = project_create(
        actor=admin, name=f"Bench {stamp}", slug=f"bench-{stamp}", task_type="classification",
        label_schema={"labels": [{"value": "positive"}, {"value": "negative"}, {"value": "neutral"}]},
    )
    profiler = None
    if profile:
        import cProfile

        profiler = cProfile.Profile()
    rss_before = rss_kib("VmRSS")
    reset = peak_reset()
    with open(path, "rb") as source:
        started = time.perf_counter()
        if profiler:
            profiler.enable()
        result = tasks_import(project=project, actor=admin, source=source, fmt="jsonl", filename=path.name)
        if profiler:
            profiler.disable()
        seconds = time.perf_counter() - started
    peak_kib = rss_kib("VmHWM") if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if profiler:
        profiler.dump_stats(profile)
    history_rows = Task.history.filter(project_id=project.pk, history_type="+").count()
    if result.created != rows or history_rows != rows:
        raise SystemExit(f"expected {rows} tasks and history rows, got {result.created} and {history_rows}")
    return {"seconds": seconds, "peak_kib": peak_kib, "peak_scope": "import" if reset else "process",
            "rss_before_kib": rss_before, "history_rows": history_rows}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--gold-every", type=int, default=1000, help="every n-th row is a gold task (0: none)")
    parser.add_argument("--repeat", type=int, default=1, help="imports, each into a fresh project; the median counts")
    parser.add_argument("--file", help="write the JSONL file here (default: a temporary file, removed afterwards)")
    parser.add_argument("--profile", help="write cProfile stats of the (last) import to this file")
    args = parser.parse_args()

    setup_django()
    from django.db import connection

    with tempfile.TemporaryDirectory(prefix="labelportal-bench-") as workdir:
        path = Path(args.file) if args.file else Path(workdir) / "tasks.jsonl"
        jsonl_write(path, args.rows, args.gold_every)
        load = os.getloadavg()[0]
        runs = [import_once(path, args.rows, args.profile) for _ in range(args.repeat)]
        file_mb = path.stat().st_size / 2**20
    median = sorted(runs, key=lambda run: run["seconds"])[len(runs) // 2]
    database = connection.vendor
    if database == "postgresql":
        database += f" {connection.cursor().connection.info.server_version}"
    print(json.dumps({
        "rows": args.rows,
        "history_rows": median["history_rows"],
        "seconds": round(median["seconds"], 3),
        "tasks_per_s": round(args.rows / median["seconds"]),
        "peak_rss_mb": round(max(run["peak_kib"] for run in runs) / 1024, 1),
        "peak_scope": median["peak_scope"],
        "rss_before_mb": round(median["rss_before_kib"] / 1024, 1) if median["rss_before_kib"] else None,
        "runs_seconds": [round(run["seconds"], 3) for run in runs],
        "runs_spread": round(statistics.pstdev(run["seconds"] for run in runs), 3),
        "file_mb": round(file_mb, 1),
        "load_average_1m": round(load, 2),
        "database": database,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
