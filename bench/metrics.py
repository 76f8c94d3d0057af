"""Time the quality engine on a million annotations and print one JSON line.

    psql -h 127.0.0.1 -U postgres -c "CREATE DATABASE labelportal_bench4"
    cd /work/main
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/labelportal_bench4 .venv/bin/python bench/metrics.py

The first run migrates the database and makes the data by INSERT … SELECT (test data: no history rows or task
events): a classification project with 5 labels, 20 annotators, overlap 3, 10 batches and `--tasks` tasks
(default 333,334: 1,000,002 current annotations), 5 % of them gold. Each task has a true label; each annotator
gives it with their own accuracy (0.85; one at 0.45) and lead time (about 20 s; one about 80 s), so the figures
and the outlier flags have something to find. 1 % of the assignments were resubmitted once (an earlier version
stays), 20 % of the current annotations were reviewed (90 % approved, 5 % rejected, 5 % fixed, the last two with
an error type), and there are two project gates and a gate per batch. Later runs reuse the data.

Timed:
- full recompute: `quality_recompute_full` (every figure, the snapshots, gates and alerts), `--repeat` times; and
  its parts: the annotation stream alone, `project_quality_compute` (no writes);
- peak memory of the process during one full recompute (VmHWM, reset just before it through /proc/self/clear_refs);
- incremental update per event, `--events` times: an event (a resubmission of one assignment with another label,
  written as the service writes it: the old version superseded, a new current one) and then the update the worker
  makes for it: `task_quality_update` (the task's snapshot, and every figure of the project, its batch, the
  annotators and pairs involved) — its wall time, the worker's CPU time (time.process_time), the wall time of its
  statements (an execute wrapper: the database's share, waiting included) and their number; separately,
  `quality_events_apply` (find the touched task by id/time, then the same update) and `gates_evaluate`;
- at the end, every incrementally updated figure (agreement sums, quality figures, annotator rows, reviewers,
  pairwise matrix) is compared with a fresh full computation.

The machine is shared: wall times move with its load (reported as load_average_1m), the CPU times less so.
"""

import argparse
import cProfile
import gc
import io
import json
import os
import pstats
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.import_tasks import cpu_seconds, peak_reset, rss_kib, setup_django  # noqa: E402

LABELS = ["label_a", "label_b", "label_c", "label_d", "label_e"]
N_ANNOTATORS = 20
N_BATCHES = 10
SLUG = "bench-quality"


def make_data(n_tasks):
    """The bench project (see the module docstring), made once."""
    from django.contrib.auth import get_user_model
    from django.db import connection, transaction

    from apps.projects.models import Batch, Membership, Project
    from apps.projects.services import gate_create, membership_add, project_create
    from apps.quality.models import ErrorType, Review

    slug = f"{SLUG}-{n_tasks}"
    project = Project.objects.filter(slug=slug).first()
    if project is not None:
        return project, False
    User = get_user_model()
    admin, _ = User.objects.get_or_create(username="bench-admin", defaults={"is_staff": True, "is_superuser": True})
    started = time.perf_counter()
    with transaction.atomic():
        project = project_create(actor=admin, name=f"Quality bench {n_tasks}", slug=slug, task_type="classification",
                                 label_schema={"labels": [{"value": v} for v in LABELS]}, overlap=3,
                                 review_mode="sample", review_sample_rate=0.2, guideline_text="Pick the label.")
        annotators = [User.objects.get_or_create(username=f"bench-q-annotator-{i:02d}")[0]
                      for i in range(N_ANNOTATORS)]
        reviewers = [User.objects.get_or_create(username=f"bench-q-reviewer-{i}")[0] for i in range(2)]
        manager = User.objects.get_or_create(username="bench-q-manager", defaults={"email": "m@example.org"})[0]
        for user in annotators:
            membership_add(project=project, user=user, role=Membership.Role.ANNOTATOR)
        for user in reviewers:
            membership_add(project=project, user=user, role=Membership.Role.REVIEWER)
        membership_add(project=project, user=manager, role=Membership.Role.MANAGER)
        batches = [Batch.objects.create(project=project, name=f"Bench {i}", status=Batch.Status.IN_REVIEW)
                   for i in range(N_BATCHES)]
        gate_create(project=project, actor=None, metric="agreement", comparator="gte", threshold=0.5, min_samples=100)
        gate_create(project=project, actor=None, metric="gold_accuracy", comparator="gte", threshold=0.7,
                    min_samples=100)
        for batch in batches:
            gate_create(project=project, actor=None, metric="acceptance_rate", comparator="gte", threshold=0.8,
                        min_samples=50, batch=batch)
        guideline = project.current_guideline
        accuracy = [0.85] * N_ANNOTATORS
        accuracy[-1] = 0.45
        speed = [20.0] * N_ANNOTATORS
        speed[-2] = 80.0
        ids = {"project": project.pk, "n": n_tasks, "guideline": guideline.pk, "version": guideline.version,
               "batches": [b.pk for b in batches], "annotators": [u.pk for u in annotators],
               "reviewers": [u.pk for u in reviewers], "labels": LABELS, "accuracy": accuracy, "speed": speed,
               "error_types": list(ErrorType.objects.filter(project=project, code__in=["wrong_label", "boundary"])
                                   .order_by("code").values_list("pk", flat=True))}
        review_table = Review._meta.db_table
        error_table = Review.error_types.through._meta.db_table
        with connection.cursor() as cursor:
            cursor.execute("SELECT setseed(0.42)")
            cursor.execute("""
                CREATE TEMP TABLE bench_truth ON COMMIT DROP AS
                SELECT g, floor(random() * 5)::int AS truth FROM generate_series(1, %(n)s) AS g""", ids)
            cursor.execute("""
                INSERT INTO tasks_task (created_at, updated_at, external_id, data, status, priority, is_gold,
                                        gold_answer, random_key, batch_id, project_id, extra_annotations)
                SELECT now(), now(), 'q-' || g, jsonb_build_object('text', 'Item ' || g), 'in_review', 0,
                       g %% 20 = 0,
                       CASE WHEN g %% 20 = 0
                            THEN jsonb_build_object('label', (%(labels)s::text[])[1 + truth]) END,
                       random(), (%(batches)s::int[])[1 + g %% 10], %(project)s, 0
                FROM bench_truth""", ids)
            cursor.execute("""
                CREATE TEMP TABLE bench_task ON COMMIT DROP AS
                SELECT t.id, b.g, b.truth FROM tasks_task t
                JOIN bench_truth b ON t.external_id = 'q-' || b.g WHERE t.project_id = %(project)s""", ids)
            # three different annotators per task; submissions spread over the last 30 days
            cursor.execute("""
                INSERT INTO tasks_assignment (created_at, updated_at, status, assigned_at, started_at, submitted_at,
                                              rework_count, reason, annotator_id, task_id)
                SELECT now(), now(), 'submitted', s, s, s, 0, '', (%(annotators)s::int[])[1 + (t.g + o) %% 20], t.id
                FROM bench_task t CROSS JOIN (VALUES (0), (7), (13)) AS offsets(o)
                CROSS JOIN LATERAL (SELECT now() - interval '30 days' + (t.g * interval '7 seconds')
                                           + o * interval '1 minute' AS s) AS at""", ids)
            # version 1 of every assignment (superseded for 1 %), drawn with the annotator's accuracy
            cursor.execute("""
                INSERT INTO tasks_annotation (version, source, result, notes, lead_time_seconds, guideline_version,
                                              status, needs_review, is_current, submitted_at, annotator_id,
                                              author_id, guideline_id, assignment_id, task_id)
                SELECT 1, 'annotator',
                       jsonb_build_object('label', (%(labels)s::text[])[1 + CASE
                           WHEN random() < (%(accuracy)s::float8[])[k] THEN t.truth
                           ELSE (t.truth + 1 + floor(random() * 4)::int) %% 5 END]),
                       '', round(((%(speed)s::float8[])[k] * (0.5 + random()))::numeric, 1), %(version)s,
                       CASE WHEN a.id %% 100 = 0 THEN 'superseded' ELSE 'approved' END, false,
                       a.id %% 100 <> 0, a.submitted_at, a.annotator_id, a.annotator_id, %(guideline)s, a.id, a.task_id
                FROM tasks_assignment a JOIN bench_task t ON t.id = a.task_id
                CROSS JOIN LATERAL (SELECT array_position(%(annotators)s::int[], a.annotator_id) AS k) AS ak""",
                           ids)
            cursor.execute("""
                INSERT INTO tasks_annotation (version, source, result, notes, lead_time_seconds, guideline_version,
                                              status, needs_review, is_current, submitted_at, annotator_id,
                                              author_id, guideline_id, assignment_id, task_id)
                SELECT 2, 'annotator',
                       jsonb_build_object('label', (%(labels)s::text[])[1 + CASE
                           WHEN random() < (%(accuracy)s::float8[])[k] THEN t.truth
                           ELSE (t.truth + 1 + floor(random() * 4)::int) %% 5 END]),
                       '', round(((%(speed)s::float8[])[k] * (0.5 + random()))::numeric, 1), %(version)s,
                       'approved', false, true, a.submitted_at + interval '1 hour', a.annotator_id, a.annotator_id,
                       %(guideline)s, a.id, a.task_id
                FROM tasks_assignment a JOIN bench_task t ON t.id = a.task_id
                CROSS JOIN LATERAL (SELECT array_position(%(annotators)s::int[], a.annotator_id) AS k) AS ak
                WHERE a.id %% 100 = 0""", ids)
            cursor.execute("UPDATE tasks_assignment SET rework_count = 1 WHERE id %% 100 = 0 AND task_id IN "
                           "(SELECT id FROM bench_task)", ids)
            cursor.execute(f"""
                INSERT INTO {review_table} (decision, comment, started_at, decided_at, annotation_id, reviewer_id)
                SELECT CASE WHEN r < 0.90 THEN 'approve' WHEN r < 0.95 THEN 'reject' ELSE 'fix' END, '',
                       an.submitted_at + interval '5 minutes',
                       an.submitted_at + interval '5 minutes' + random() * interval '2 hours',
                       an.id, (%(reviewers)s::int[])[1 + an.id %% 2]
                FROM tasks_annotation an JOIN bench_task t ON t.id = an.task_id
                CROSS JOIN LATERAL (SELECT random() + 0 * an.id AS r) AS draw  -- per row, not once
                WHERE an.is_current AND an.id %% 5 = 0""", ids)
            cursor.execute(f"""
                INSERT INTO {error_table} (review_id, errortype_id)
                SELECT r.id, (%(error_types)s::int[])[1 + r.id %% 2]
                FROM {review_table} r JOIN tasks_annotation an ON an.id = r.annotation_id
                JOIN bench_task t ON t.id = an.task_id
                WHERE r.decision IN ('reject', 'fix')""", ids)
    with connection.cursor() as cursor:
        for table in ("tasks_task", "tasks_assignment", "tasks_annotation", review_table, error_table):
            cursor.execute(f"VACUUM ANALYZE {table}")
    print(f"created the bench project ({n_tasks} tasks) in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    return project, True


def percentile(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(round(q / 100 * len(ordered) + 0.5)) - 1))]


def timing(values):
    return {"n": len(values), "p50_ms": round(1000 * statistics.median(values), 2),
            "p99_ms": round(1000 * percentile(values, 99), 2), "max_ms": round(1000 * max(values), 2)}


class GCTimer:
    """gc.callbacks that add up the time of the cyclic garbage collector's passes, the full ones (generation 2)
    apart: a full pass walks every tracked object of the process."""

    def __init__(self):
        self.reset()
        self._started = None

    def reset(self):
        self.seconds, self.full_seconds, self.full_cpu, self.full = 0.0, 0.0, 0.0, 0

    def __call__(self, phase, info):
        if phase == "start":
            self._started, self._cpu = time.perf_counter(), time.process_time()
        elif self._started is not None:
            seconds = time.perf_counter() - self._started
            self.seconds += seconds
            if info["generation"] == 2:
                self.full_seconds += seconds
                self.full_cpu += time.process_time() - self._cpu
                self.full += 1
            self._started = None


class StatementTimer:
    """An execute wrapper (connection.execute_wrapper) that counts the statements and adds up their wall time."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.count, self.seconds = 0, 0.0

    def __call__(self, execute, sql, params, many, context):
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            self.seconds += time.perf_counter() - started
            self.count += 1


def resubmit(task_id, rng):
    """An event: one assignment of the task gets a new annotator version with another label (as
    assignment_resubmit writes it, without the lifecycle around it)."""
    from django.db import transaction

    from apps.tasks.models import Annotation

    with transaction.atomic():
        current = (Annotation.objects.select_for_update().filter(task_id=task_id, is_current=True)
                   .order_by("id")[rng.randrange(3)])
        current.is_current, current.status = False, Annotation.Status.SUPERSEDED
        current.save(update_fields=["is_current", "status"])
        label = rng.choice([v for v in LABELS if v != current.result.get("label")])
        version = current.assignment.annotations.order_by("-version").values_list("version", flat=True)[0] + 1
        Annotation.objects.create(task_id=task_id, assignment_id=current.assignment_id,
                                  annotator_id=current.annotator_id, author_id=current.annotator_id, version=version,
                                  result={"label": label}, lead_time_seconds=25.0)


def profile_write(path, profiles, slowest=5):
    """The cProfile of the `slowest` updates (by CPU time) one by one, then the others' summed, then every
    update's CPU time in order (to see when the slow ones come)."""
    profiles = sorted(profiles, key=lambda p: p[0], reverse=True)
    out = io.StringIO()
    for seconds, i, task_id, profiler in profiles[:slowest]:
        out.write(f"=== update {i} (task {task_id}): {1000 * seconds:.1f} ms CPU\n")
        pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(40)
    if len(profiles) > slowest:
        rest = pstats.Stats(profiles[slowest][3], stream=out)
        for _seconds, _i, _task, profiler in profiles[slowest + 1:]:
            rest.add(profiler)
        out.write(f"=== the other {len(profiles) - slowest} updates, summed\n")
        rest.sort_stats("tottime").print_stats(40)
    out.write("=== CPU ms per update, in order\n")
    out.write(" ".join(f"{1000 * p[0]:.0f}" for p in sorted(profiles, key=lambda p: p[1])) + "\n")
    Path(path).write_text(out.getvalue())


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=333_334)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--events", type=int, default=300)
    parser.add_argument("--profile", metavar="PATH",
                        help="cProfile every incremental update and write to PATH the profiles of the slowest ones "
                             "(by the worker's CPU time), the rest summed, and the CPU time of each update")
    parser.add_argument("--no-gc-freeze", dest="gc_freeze", action="store_false",
                        help="leave out the gc.freeze() after the setup and the full passes (the worker freezes its "
                             "start-up objects, labelportal/celery.py: a full collection then scans only the objects "
                             "made since; without it one costs 75-95 ms of CPU)")
    parser.add_argument("--skip-full", action="store_true",
                        help="time only the incremental updates (after one full recompute that makes the state)")
    args = parser.parse_args()
    os.environ.setdefault("QUALITY_BENCH", "1")
    setup_django()

    import random

    import numpy as np
    from django.db import connection

    from apps.core.audit import acting_as
    from apps.quality import engine, gates, services
    from apps.tasks.models import Annotation, Task

    if connection.vendor != "postgresql":
        raise SystemExit("run it on PostgreSQL: DATABASE_URL=postgres://postgres@127.0.0.1:5432/labelportal_bench4")
    project, created = make_data(args.tasks)
    annotations = Annotation.objects.filter(task__project=project).count()
    current = Annotation.objects.filter(task__project=project, is_current=True).count()
    result = {"database": connection.settings_dict["NAME"], "tasks": args.tasks, "annotations": annotations,
              "current_annotations": current, "data_created_now": created}
    backend_pid = None
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        backend_pid = cursor.fetchone()[0]
    result["load_average_1m"] = os.getloadavg()[0]

    with acting_as(None):
        labels = engine.project_labels(project)
        started = time.perf_counter()
        rows, _results, _lengths = engine._annotation_rows(project, labels)
        result["stream_s"] = round(time.perf_counter() - started, 3)
        result["stream_rows"] = len(rows)
        del rows
        started = time.perf_counter()
        engine.project_quality_compute(project)
        result["compute_only_s"] = round(time.perf_counter() - started, 3)

        runs, cpu = [], []
        for run in range(1 if args.skip_full else args.repeat):
            rss_before = rss_kib("VmRSS")
            reset = peak_reset()
            cpu_before, db_before = cpu_seconds(), cpu_seconds(backend_pid)
            started = time.perf_counter()
            services.quality_recompute_full(project_id=project.pk)
            runs.append(time.perf_counter() - started)
            db_after = cpu_seconds(backend_pid)
            cpu.append((cpu_seconds() - cpu_before, (db_after - db_before) if db_before is not None else None))
            if run == 0:
                result["peak_rss_mb"] = round(rss_kib("VmHWM") / 1024, 1)
                result["rss_before_mb"] = round(rss_before / 1024, 1)
                result["peak_reset"] = reset
        result["full_recompute_s"] = [round(s, 3) for s in runs]
        result["full_recompute_median_s"] = round(statistics.median(runs), 3)
        result["full_python_cpu_s"] = [round(c[0], 2) for c in cpu]
        result["full_db_backend_cpu_s"] = [round(c[1], 2) if c[1] is not None else None for c in cpu]

        result["gc_tracked_objects"] = len(gc.get_objects())
        if args.gc_freeze:
            gc.collect()
            gc.freeze()
        result["gc_frozen_objects"] = gc.get_freeze_count()
        # window rebuilds (a median that left its window, engine.medians_refresh): from the full pass's wide windows,
        # from the rows per kind; the updates with one and their wall times
        rebuilds, rebuilt_now = {}, []

        def counted(kind, values_of):
            def wrapper(*args, **kwargs):
                rebuilds[kind] = rebuilds.get(kind, 0) + 1
                rebuilt_now.append(kind)
                return values_of(*args, **kwargs)
            return wrapper

        for kind in ("lead", "speed", "latency"):  # from the rows (the median left the full pass's wide window)
            name = f"_{kind}_values"
            if hasattr(engine, name):
                setattr(engine, name, counted(f"{kind}_from_rows", getattr(engine, name)))
        if hasattr(engine, "_window_from_band"):
            engine._window_from_band = counted("from_band", engine._window_from_band)
        rebuild_updates = []
        gc_timer = GCTimer()
        gc.callbacks.append(gc_timer)
        gc_pause, gc_full = [], []
        rng = random.Random(7)
        task_ids = list(Task.objects.filter(project=project).values_list("pk", flat=True))
        update, scan, judge, update_cpu, python_cpu, db_wall, statements = [], [], [], [], [], [], []
        timer = StatementTimer()
        profiles = []
        for i in range(args.events):
            task_id = rng.choice(task_ids)
            resubmit(task_id, rng)
            profiler = cProfile.Profile() if args.profile else None
            cpu_before, db_before = cpu_seconds(), cpu_seconds(backend_pid)
            process_before = time.process_time()
            timer.reset()
            gc_timer.reset()
            rebuilt_now.clear()
            with connection.execute_wrapper(timer):
                started = time.perf_counter()
                if profiler is not None:
                    profiler.enable()
                engine.task_quality_update(task_id)
                if profiler is not None:
                    profiler.disable()
                update.append(time.perf_counter() - started)
            python_cpu.append(time.process_time() - process_before)
            gc_pause.append(gc_timer.seconds)
            if rebuilt_now:
                rebuild_updates.append(update[-1])
            gc_full.append((gc_timer.full, gc_timer.full_seconds, gc_timer.full_cpu))
            if profiler is not None:
                profiles.append((python_cpu[-1], i, task_id, profiler))
            update_cpu.append(cpu_seconds() - cpu_before + (cpu_seconds(backend_pid) - db_before))
            db_wall.append(timer.seconds)
            statements.append(timer.count)
            if i % 3 == 0:  # the scan path the chained worker takes, for every third event
                resubmit(rng.choice(task_ids), rng)
                started = time.perf_counter()
                engine.quality_events_apply(project)
                scan.append(time.perf_counter() - started)
                started = time.perf_counter()
                gates.gates_evaluate(project)
                judge.append(time.perf_counter() - started)
        if args.profile:
            profile_write(args.profile, profiles)
        result["incremental_task_update"] = timing(update)
        # CPU seconds of this process and its PostgreSQL backend per update (clock ticks of 10 ms: a mean only)
        result["incremental_task_update_cpu_ms_mean"] = round(1000 * statistics.mean(update_cpu), 2)
        # the worker's own CPU per update (time.process_time), and the time spent waiting for PostgreSQL's answers
        # (wall time of the statements, measured around each execute: the database's share, load included)
        result["incremental_python_cpu"] = timing(python_cpu)
        result["incremental_db_wall"] = timing(db_wall)
        # the garbage collector's passes inside the updates: all of them, and the full ones (count, wall time each)
        result["incremental_gc"] = {**timing(gc_pause), "full_collections": sum(n for n, _s, _c in gc_full),
                                    "full_ms": [round(1000 * s, 1) for n, s, _c in gc_full if n],
                                    "full_cpu_ms": [round(1000 * c, 1) for n, _s, c in gc_full if n]}
        gc.callbacks.remove(gc_timer)
        result["gc_tracked_objects_after"] = len(gc.get_objects())
        result["incremental_window_rebuilds"] = {**rebuilds, "updates": len(rebuild_updates),
                                                 "their_ms": [round(1000 * s, 1) for s in rebuild_updates]}
        result["incremental_statements"] = {"min": min(statements), "max": max(statements),
                                            "mean": round(statistics.mean(statements), 1)}
        result["incremental_events_apply"] = timing(scan)
        result["gates_evaluate"] = timing(judge)
        state = engine._state_row(project).values
        full = engine.project_quality_compute(project)
        quality = engine.snapshot_latest(project, engine.QUALITY).values
        agreement = engine.snapshot_latest(project, engine.AGREEMENT).values
        annotators = engine.snapshot_latest(project, engine.ANNOTATORS).values
        figures = ("agreement", "fleiss_kappa", "gold_accuracy", "acceptance_rate", "rework_rate", "sanity_pass_rate",
                   "samples", "figures", "error_types", "error_types_by_label", "submitted", "tasks_annotated")
        result["incremental_equals_full"] = {
            "agreement_sums": state["project"] == full["state"]["project"] and state["batches"] == full["state"][
                "batches"],
            "quality_figures": all(quality[name] == full["quality"][name] for name in figures),
            "annotators": annotators["annotators"] == full["annotators"]["annotators"],
            "reviewers": annotators["reviewers"] == full["annotators"]["reviewers"],
            "pairwise": agreement["pairwise"] == full["agreement"]["pairwise"],
        }
        result["figures"] = {"agreement": quality["agreement"], "fleiss_kappa": quality["fleiss_kappa"],
                             "gold_accuracy": quality["gold_accuracy"], "acceptance_rate": quality["acceptance_rate"],
                             "rework_rate": quality["rework_rate"],
                             "dawid_skene": {key: agreement["consensus"][key] for key in
                                             ("mean_confidence", "low_confidence", "differs_from_majority",
                                              "iterations", "converged")} if agreement.get("consensus") else None,
                             "flagged": {row["username"]: row["flags"] for row in annotators["annotators"]
                                         if row["flags"]}}
    result["numpy"] = np.__version__
    print(json.dumps(result))


if __name__ == "__main__":
    main()
