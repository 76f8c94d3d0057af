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


def cpu_seconds(pid=None):
    """User + system CPU seconds of this process, or of process `pid` (the PostgreSQL backend) read from /proc
    when the server runs on this machine; None when it cannot be read."""
    if pid is None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
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


def import_once(path, rows, profile=None, into_existing=False):
    """One timed import into a fresh project; returns the run's figures. With `into_existing` the project
    already holds tasks with other external ids, so every chunk is checked against the database."""
    from django.contrib.auth import get_user_model
    from django.db import connection

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
    if into_existing:
        tasks_import(project=project, actor=admin, fmt="jsonl",
                     source=[{"data": {"text": f"earlier {i}"}, "external_id": f"earlier-{i}"} for i in range(1000)])
    profiler = None
    if profile:
        import cProfile

        profiler = cProfile.Profile()
    backend = None
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            backend = cursor.fetchone()[0]
    rss_before = rss_kib("VmRSS")
    reset = peak_reset()
    cpu_before, db_cpu_before = cpu_seconds(), cpu_seconds(backend) if backend else None
    with open(path, "rb") as source:
        started = time.perf_counter()
        if profiler:
            profiler.enable()
        result = tasks_import(project=project, actor=admin, source=source, fmt="jsonl", filename=path.name)
        if profiler:
            profiler.disable()
        seconds = time.perf_counter() - started
    cpu = cpu_seconds() - cpu_before
    db_cpu_after = cpu_seconds(backend) if backend else None
    db_cpu = db_cpu_after - db_cpu_before if db_cpu_after is not None and db_cpu_before is not None else None
    peak_kib = rss_kib("VmHWM") if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if profiler:
        profiler.dump_stats(profile)
    earlier = 1000 if into_existing else 0
    history_rows = Task.history.filter(project_id=project.pk, history_type="+").count() - earlier
    if result.created != rows or history_rows != rows:
        raise SystemExit(f"expected {rows} tasks and history rows, got {result.created} and {history_rows}")
    return {"seconds": seconds, "cpu": cpu, "db_cpu": db_cpu, "peak_kib": peak_kib, "peak_scope": "import" if reset else "process",
            "rss_before_kib": rss_before, "history_rows": history_rows}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--gold-every", type=int, default=1000, help="every n-th row is a gold task (0: none)")
    parser.add_argument("--repeat", type=int, default=1, help="imports, each into a fresh project; the median counts")
    parser.add_argument("--into-existing", action="store_true",
                        help="import into a project that already has 1,000 tasks with external ids")
    parser.add_argument("--file", help="write the JSONL file here (default: a temporary file, removed afterwards)")
    parser.add_argument("--profile", help="write cProfile stats of the (last) import to this file")
    args = parser.parse_args()

    setup_django()
    from django.db import connection

    with tempfile.TemporaryDirectory(prefix="labelportal-bench-") as workdir:
        path = Path(args.file) if args.file else Path(workdir) / "tasks.jsonl"
        jsonl_write(path, args.rows, args.gold_every)
        load = os.getloadavg()[0]
        runs = [import_once(path, args.rows, args.profile, args.into_existing) for _ in range(args.repeat)]
        file_mb = path.stat().st_size / 2**20
    median = sorted(runs, key=lambda run: run["seconds"])[len(runs) // 2]
    database = connection.vendor
    if database == "postgresql":
        database += f" {connection.cursor().connection.info.server_version}"
    print(json.dumps({
        "rows": args.rows,
        "into_existing": args.into_existing,
        "history_rows": median["history_rows"],
        "seconds": round(median["seconds"], 3),
        "tasks_per_s": round(args.rows / median["seconds"]),
        "peak_rss_mb": round(max(run["peak_kib"] for run in runs) / 1024, 1),
        "peak_scope": median["peak_scope"],
        "rss_before_mb": round(median["rss_before_kib"] / 1024, 1) if median["rss_before_kib"] else None,
        "runs_seconds": [round(run["seconds"], 3) for run in runs],
        # CPU time is steadier than wall time on a shared machine: the importer's and the database backend's
        "python_cpu_s": round(median["cpu"], 2),
        "db_backend_cpu_s": round(median["db_cpu"], 2) if median["db_cpu"] is not None else None,
        "runs_spread": round(statistics.pstdev(run["seconds"] for run in runs), 3),
        "file_mb": round(file_mb, 1),
        "load_average_1m": round(load, 2),
        "database": database,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
