"""Annotators asking for their next task and submitting it, over HTTP, on a million-task project; one JSON line per run.

    .venv/bin/python bench/next_task.py --annotators 8 --seconds 60
    .venv/bin/python bench/next_task.py --annotators 32 --seconds 60

It creates (if missing) and migrates the PostgreSQL database labelportal_bench3 and, once, a classification project
(overlap 2, review_mode none) of --tasks tasks: rows written by INSERT … SELECT into a draft batch (test data: no
per-task "imported" history), then the batch is released through the service `batch_activate`, which opens every
task in one UPDATE and writes their history rows (INSERT … SELECT). 32 annotators are members with API tokens.

It then starts gunicorn with the production settings (labelportal.settings.prod, no REDIS_URL unless --redis, so
Celery runs eagerly inside the request) and runs --annotators client threads, each a distinct annotator on its own
keep-alive connection (http.client), doing `POST /api/v1/projects/{id}/next/` then
`POST /api/v1/assignments/{id}/submit/` with {"result": {"label": …}} for --seconds. A thread finishes the cycle it
is in when the time is up. Latencies are from sending the request to having read the whole answer.

Afterwards it asks the database: tasks with more than `overlap` assignments that were not skipped or expired, and
annotators with two assignments on one task (both must be 0); assignments and annotations written during the run.
CPU seconds of the client, the gunicorn workers and the bench database's PostgreSQL backends are read from /proc:
the client competes with the server for the same two cores.
"""

import argparse
import http.client
import json
import os
import random
import secrets
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from api_import import database_prepare, free_port, listening_wait, machine  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DATABASE = "labelportal_bench3"
DATABASE_URL = f"postgres://postgres@127.0.0.1:5432/{DATABASE}"
ANNOTATORS = 32
WARMUP_CYCLES = 2  # per annotator, before the clock starts
LABELS = ("positive", "negative", "neutral")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# --- data ---------------------------------------------------------------------------------------------------------


def bench_project(n):
    """The bench project of `n` tasks and its annotators' tokens, created the first time (about a minute)."""
    from django.contrib.auth import get_user_model
    from django.db import connection, transaction
    from rest_framework.authtoken.models import Token

    from apps.projects.models import Batch, Membership, Project
    from apps.projects.services import batch_activate, membership_add, project_create
    from apps.tasks.models import Task

    admin, _ = get_user_model().objects.get_or_create(username="bench-admin",
                                                      defaults={"is_staff": True, "is_superuser": True})
    annotators = [get_user_model().objects.get_or_create(username=f"bench-annotator-{i:02d}")[0]
                  for i in range(ANNOTATORS)]
    tokens = [Token.objects.get_or_create(user=user)[0].key for user in annotators]
    slug = f"bench-next-{n}"
    project = Project.objects.filter(slug=slug).first()
    if project is not None:
        if Task.objects.filter(project=project).count() != n or project.batches.get().status != Batch.Status.ACTIVE:
            raise SystemExit(f"project {slug} is incomplete; drop the database {DATABASE}")
        return project, tokens, False
    started = time.perf_counter()
    with transaction.atomic():
        project = project_create(actor=admin, name=f"Next-task bench {n}", slug=slug, task_type="classification",
                                 label_schema={"labels": [{"value": label} for label in LABELS]},
                                 guideline_text="Label the sentiment of the review.", overlap=2, review_mode="none")
        for user in annotators:
            membership_add(project=project, user=user, role=Membership.Role.ANNOTATOR)
        batch = Batch.objects.create(project=project, name="Bench")
        with connection.cursor() as cursor:
            cursor.execute("""
                INSERT INTO tasks_task (created_at, updated_at, external_id, data, status, priority, is_gold,
                                        random_key, extra_annotations, batch_id, project_id)
                SELECT now(), now(), 'next-' || g,
                       jsonb_build_object('text', 'Review ' || g || %(text)s),
                       'new', 0, false, random(), 0, %(batch)s, %(project)s
                FROM generate_series(1, %(n)s) AS g""",
                           {"batch": batch.pk, "project": project.pk, "n": n,
                            "text": ": the delivery was on time and the box was intact."})
    created = time.perf_counter()
    batch_activate(batch=batch, actor=admin)
    activated = time.perf_counter()
    with connection.cursor() as cursor:
        for table in ("tasks_task", "tasks_historicaltask", "tasks_assignment", "tasks_annotation", "tasks_taskevent"):
            cursor.execute(f"VACUUM ANALYZE {table}")
    print(f"created {n} tasks in {created - started:.1f} s, batch_activate {activated - created:.1f} s, "
          f"vacuum {time.perf_counter() - activated:.1f} s", file=sys.stderr)
    return project, tokens, True


def integrity_check(project, since_assignment_id):
    """What the database says after a run: double assignments (must be 0) and what the run wrote."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("""
            SELECT count(*) FROM (
                SELECT a.task_id FROM tasks_assignment a JOIN tasks_task t ON t.id = a.task_id
                WHERE t.project_id = %s AND a.status NOT IN ('skipped', 'expired')
                GROUP BY a.task_id HAVING count(*) > %s) over_overlap""", [project.pk, project.overlap])
        over_overlap = cursor.fetchone()[0]
        cursor.execute("""
            SELECT count(*) FROM (
                SELECT a.task_id FROM tasks_assignment a JOIN tasks_task t ON t.id = a.task_id
                WHERE t.project_id = %s GROUP BY a.task_id, a.annotator_id HAVING count(*) > 1) twice""",
                       [project.pk])
        twice = cursor.fetchone()[0]
        cursor.execute("""
            SELECT count(*), count(*) FILTER (WHERE a.status = 'submitted'),
                   (SELECT count(*) FROM tasks_annotation n WHERE n.assignment_id > %(since)s)
            FROM tasks_assignment a WHERE a.id > %(since)s""", {"since": since_assignment_id})
        assignments, submitted, annotations = cursor.fetchone()
    return {"tasks_over_overlap": over_overlap, "annotator_twice_on_a_task": twice,
            "assignments_written": assignments, "assignments_submitted": submitted,
            "annotations_written": annotations}


def tables_vacuum():
    """What autovacuum keeps up in production, before a run: autovacuum is off on the machine of the README figures.
    Without it every run leaves the dead versions of the rows it changed (each task's status changes two or three
    times, and status is indexed), and the next run's candidate reads walk them: CPU per cycle grew from run to run.
    Also fresh planner statistics (plans made for an empty assignment table would go on being used as it grows).
    Needs a superuser for CHECKPOINT (the bench connects as postgres)."""
    from django.db import connection

    with connection.cursor() as cursor:
        for table in ("tasks_task", "tasks_assignment", "tasks_annotation", "tasks_taskevent"):
            cursor.execute(f"VACUUM ANALYZE {table}")
        cursor.execute("CHECKPOINT")  # the pages the vacuum dirtied are written now, not during the run
    os.sync()  # and whatever else the machine has yet to write (a test suite just before): commits wait behind it


def last_assignment_id():
    from apps.tasks.models import Assignment

    return Assignment.objects.order_by("-id").values_list("id", flat=True).first() or 0


# --- the server -----------------------------------------------------------------------------------------------------


def cpu_seconds(pid):
    """utime + stime of a process, from /proc (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def children_of(pid):
    try:
        return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def machine_cpu_seconds():
    """CPU seconds the whole machine spent busy (every core), from /proc/stat: what the bench's processes do not
    account for is other work on the machine."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / CLOCK_TICKS


def database_backends():
    """PIDs of the PostgreSQL backends connected to the bench database (their process title names it)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                title = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if b"postgres: " in title and f" {DATABASE} ".encode() in title:
                pids.append(int(entry.name))
    return pids


class CpuMeter(threading.Thread):
    """CPU seconds that a changing set of processes spent from now until stop(): sampled every half second, so that
    a process that exits meanwhile (a database connection closed and opened again) still counts, up to its last
    sample."""

    def __init__(self, pids):
        super().__init__(daemon=True)
        self.pids, self.stopped = pids, threading.Event()
        self.start_cpu = {pid: cpu_seconds(pid) for pid in pids()}
        self.last_cpu = dict(self.start_cpu)
        self.start()

    def sample(self):
        for pid in self.pids():
            self.last_cpu[pid] = max(self.last_cpu.get(pid, 0.0), cpu_seconds(pid))

    def run(self):
        while not self.stopped.wait(0.5):
            self.sample()

    def stop(self):
        self.stopped.set()
        self.join()
        self.sample()
        return sum(cpu - self.start_cpu.get(pid, 0.0) for pid, cpu in self.last_cpu.items())


class Server:
    """gunicorn with production settings on 127.0.0.1 (and a Celery worker when REDIS_URL is given)."""

    def __init__(self, *, workers, threads, conn_max_age, redis_url=None, worker_connections=None):
        self.port = free_port()
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "labelportal.settings.prod", "DATABASE_URL": DATABASE_URL,
               "SECRET_KEY": secrets.token_urlsafe(50), "ALLOWED_HOSTS": "127.0.0.1",
               "SECURE_SSL_REDIRECT": "false", "LOG_LEVEL": "WARNING", "CONN_MAX_AGE": str(conn_max_age)}
        env.pop("REDIS_URL", None)
        if redis_url:
            # A queue of its own, so that no other worker on the same Redis takes these tasks (or this worker theirs).
            env.update(REDIS_URL=redis_url, CELERY_QUEUE="bench-next-task")
        self.command = [str(ROOT / ".venv/bin/gunicorn"), "labelportal.wsgi", "-b", f"127.0.0.1:{self.port}",
                        "-w", str(workers), "--timeout", "120", "--log-level", "warning",
                        "--backlog", "2048"]
        if threads > 1:
            # gthread keeps connections alive and serves several requests per process while others wait on
            # PostgreSQL; the sync worker closes the connection after each answer.
            self.command += ["-k", "gthread", "--threads", str(threads), "--keep-alive", "30"]
            if worker_connections:
                # At most this many kept-alive connections per process: without a cap the first process to wake
                # accepts every client's connection and serves them all on one core while the other idles.
                self.command += ["--worker-connections", str(worker_connections)]
        self.process = subprocess.Popen(self.command, cwd=ROOT, env=env)
        self.worker = None
        if redis_url:
            self.worker = subprocess.Popen(
                [str(ROOT / ".venv/bin/celery"), "-A", "labelportal", "worker", "--concurrency", "1",
                 "-Q", "bench-next-task", "--without-gossip", "--without-mingle", "--without-heartbeat",
                 "--loglevel", "WARNING"],
                cwd=ROOT, env=env)
        deadline = listening_wait(self.process, self.port, self.stop)
        while len(self.worker_pids()) < workers and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1)  # let the workers finish importing Django

    def worker_pids(self):
        """The gunicorn worker processes."""
        return children_of(self.process.pid)

    def celery_pids(self):
        """The Celery worker: its main process and the pool's child, which runs the tasks."""
        return [self.worker.pid] + children_of(self.worker.pid) if self.worker is not None else []

    def connection(self):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)

    def stop(self):
        for process in (self.process, self.worker):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


# --- the client -----------------------------------------------------------------------------------------------------


class Annotator(threading.Thread):
    """One annotator: next → submit, on one keep-alive connection, until the deadline."""

    def __init__(self, server, token, project_id, start_line, go):
        super().__init__(daemon=True)
        self.server, self.project_id, self.start_line, self.go = server, project_id, start_line, go
        self.deadline = 0
        self.headers = {"Authorization": f"Token {token}", "Content-Type": "application/json",
                        "Accept": "application/json"}
        self.next_ms, self.submit_ms, self.errors = [], [], []
        self.cycles = self.warmup_cycles = self.nothing_left = 0

    def post(self, connection, path, body):
        started = time.perf_counter()
        try:
            connection.request("POST", path, body=json.dumps(body), headers=self.headers)
            response = connection.getresponse()
            payload = response.read()
        except (OSError, http.client.HTTPException) as error:
            connection.close()
            return None, repr(error).encode(), (time.perf_counter() - started) * 1000
        return response.status, payload, (time.perf_counter() - started) * 1000

    def cycle(self, connection, timed=True):
        """next → submit once; False when the engine said nothing is left. Every non-2xx answer is an error."""
        status, payload, ms = self.post(connection, f"/api/v1/projects/{self.project_id}/next/", {})
        if timed:
            self.next_ms.append(ms)
        if status == 204:
            self.nothing_left += 1
            return False
        if status != 200:
            self.errors.append(("next", status, payload[:300].decode(errors="replace")))
            return True
        assignment = json.loads(payload)["assignment"]["id"]
        status, payload, ms = self.post(connection, f"/api/v1/assignments/{assignment}/submit/",
                                        {"result": {"label": random.choice(LABELS)}})
        if timed:
            self.submit_ms.append(ms)
        if status != 201:
            self.errors.append(("submit", status, payload[:300].decode(errors="replace")))
        elif timed:
            self.cycles += 1
        else:
            self.warmup_cycles += 1
        return True

    def run(self):
        connection = self.server.connection()
        try:
            for _ in range(WARMUP_CYCLES):  # the server's first requests (lazy imports, caches) are not timed
                self.cycle(connection, timed=False)
            self.start_line.wait()  # everyone warmed up
            self.go.wait()  # the clock runs and the deadline is set
            while time.monotonic() < self.deadline and self.cycle(connection):
                pass
        finally:
            connection.close()


def percentile(values, p):
    """Nearest-rank percentile."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))]


def latency(values):
    return {f"p{p}": round(percentile(values, p), 1) for p in (50, 95, 99)} | {"max": round(max(values), 1)} \
        if values else {}


def run(server, project, tokens, annotators, seconds):
    start_line, go = threading.Barrier(annotators + 1), threading.Event()
    clients = [Annotator(server, token, project.pk, start_line, go) for token in tokens[:annotators]]
    for client in clients:
        client.start()
    start_line.wait()  # all warmed up
    server_cpu, database_cpu = CpuMeter(server.worker_pids), CpuMeter(database_backends)
    celery_cpu = CpuMeter(server.celery_pids)
    client_cpu, busy = time.process_time(), machine_cpu_seconds()
    started = time.monotonic()
    for client in clients:
        client.deadline = started + seconds
    go.set()
    for client in clients:
        client.join()
    elapsed = time.monotonic() - started
    client_cpu, busy = time.process_time() - client_cpu, machine_cpu_seconds() - busy
    server_cpu, database_cpu, celery_cpu = server_cpu.stop(), database_cpu.stop(), celery_cpu.stop()
    cycles = sum(client.cycles for client in clients)
    errors = [error for client in clients for error in client.errors]
    return {
        "annotators": annotators,
        "seconds": round(elapsed, 2),
        "cycles": cycles,
        "cycles_per_s": round(cycles / elapsed, 1),
        "next_ms": latency([ms for client in clients for ms in client.next_ms]),
        "submit_ms": latency([ms for client in clients for ms in client.submit_ms]),
        "errors": len(errors),
        "error_samples": errors[:5],
        "nothing_left_answers": sum(client.nothing_left for client in clients),
        "warmup_cycles": sum(client.warmup_cycles for client in clients),
        "cpu_s": {"client": round(client_cpu, 1), "gunicorn_workers": round(server_cpu, 1),
                  "celery_worker": round(celery_cpu, 1), "postgres_backends": round(database_cpu, 1),
                  "machine_busy": round(busy, 1), "available": round(elapsed * os.cpu_count(), 1)},
        "cpu_ms_per_cycle": {name: round(seconds * 1000 / max(cycles, 1), 1) for name, seconds in (
            ("client", client_cpu), ("gunicorn", server_cpu), ("celery", celery_cpu), ("postgres", database_cpu))},
    }


# --- diagnostics: the SQL plans, and CPU per cycle without HTTP -------------------------------------------------------


def explain(project):
    """--explain: EXPLAIN (ANALYZE, BUFFERS) of every SELECT that a next-task call and a submission make, for an
    annotator of the bench project (who then holds that work: bench data). Prints each plan and a JSON line that
    names any sequential scan of the task or assignment tables (there must be none)."""
    from unittest import mock

    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from apps.tasks.next_task import next_task_assign
    from apps.tasks.services import assignment_submit

    annotator = get_user_model().objects.get(username=f"bench-annotator-{ANNOTATORS - 1:02d}")
    # The progress recompute a transition asks for is left out: a worker's job, once per window (see README).
    with CaptureQueriesContext(connection) as queries, mock.patch("apps.quality.tasks.progress_recompute_soon"):
        assignment = next_task_assign(project=project, annotator=annotator)
        assignment_submit(assignment=assignment, actor=annotator, result={"label": LABELS[0]})
    selects = [query["sql"] for query in queries.captured_queries if query["sql"].startswith("SELECT")]
    scans, slowest = [], 0.0
    with connection.cursor() as cursor:
        for sql in selects:
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql)
            plan = [row[0] for row in cursor.fetchall()]
            milliseconds = float(plan[-1].split(":")[1].split()[0])
            slowest = max(slowest, milliseconds)
            scans += [line.strip() for line in plan if "Seq Scan on tasks_" in line]
            print(f"--- {milliseconds:.3f} ms: {sql[:300]}\n" + "\n".join(plan), flush=True)
    print(json.dumps({"bench": "next_task_explain", "tasks": project.tasks.count(), "selects": len(selects),
                      "queries": len(queries.captured_queries), "slowest_ms": slowest,
                      "sequential_scans_of_task_tables": scans}))


def in_process(project, tokens, cycles, profile_path=None):
    """--in-process N: N next → submit cycles through the whole Django stack (the test client: middleware, token
    authentication, views, serializers; no HTTP, no gunicorn) by one annotator, and what they cost in CPU: this
    process and its PostgreSQL backend, from /proc. Load from elsewhere on the machine moves these figures far less
    than wall time. --profile FILE also writes a cProfile of the cycles."""
    import cProfile

    from django.db import connection
    from django.test import Client, override_settings
    from django.test.utils import CaptureQueriesContext

    client = Client(HTTP_AUTHORIZATION=f"Token {tokens[-1]}")

    def cycle():
        response = client.post(f"/api/v1/projects/{project.pk}/next/", {}, content_type="application/json")
        assert response.status_code == 200, response.content
        assignment = response.json()["assignment"]["id"]
        response = client.post(f"/api/v1/assignments/{assignment}/submit/", {"result": {"label": LABELS[0]}},
                               content_type="application/json")
        assert response.status_code == 201, response.content

    # The production window for progress figures (the test settings this process runs with recompute every time).
    with override_settings(PROGRESS_RECOMPUTE_WINDOW_SECONDS=10):
        for _ in range(3):
            cycle()  # warm: imports, permission cache, connection
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            backend = cursor.fetchone()[0]
        connection.queries_log.clear()  # a bounded deque: full after the warm cycles, it would count nothing
        with CaptureQueriesContext(connection) as queries:
            cycle()
        queries = len(queries)  # now: the log it slices is cleared at every request
        profiler = cProfile.Profile() if profile_path else None
        python, database, wall = time.process_time(), cpu_seconds(backend), time.perf_counter()
        if profiler:
            profiler.enable()
        for _ in range(cycles):
            cycle()
        if profiler:
            profiler.disable()
            profiler.dump_stats(profile_path)
        python, database = time.process_time() - python, cpu_seconds(backend) - database
        wall = time.perf_counter() - wall
    print(json.dumps({"bench": "next_task_in_process", "cycles": cycles, "queries_per_cycle": queries,
                      "python_cpu_ms_per_cycle": round(python / cycles * 1000, 2),
                      "postgres_cpu_ms_per_cycle": round(database / cycles * 1000, 2),
                      "wall_ms_per_cycle": round(wall / cycles * 1000, 2), "profiled": bool(profile_path),
                      "load_average_1m": round(os.getloadavg()[0], 2)}))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1_000_000)
    parser.add_argument("--annotators", type=int, nargs="+", default=[8, 32],
                        help="one run per value, in order, each on a fresh server")
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=3, help="gthread threads per worker (1: sync workers)")
    parser.add_argument("--conn-max-age", type=int, default=600, help="CONN_MAX_AGE of the server")
    parser.add_argument("--worker-connections", type=int, default=None,
                        help="gthread: kept-alive connections per process (default: annotators ÷ workers, rounded "
                             "up, so that the clients spread over the processes; 0: gunicorn's default of 1000)")
    parser.add_argument("--redis", default=None, help="REDIS_URL: Celery tasks go to a worker instead of eager")
    parser.add_argument("--explain", action="store_true", help="print the plans of the engine's reads instead")
    parser.add_argument("--in-process", type=int, metavar="N", help="N cycles without HTTP, with their CPU cost")
    parser.add_argument("--profile", metavar="FILE", help="with --in-process: write a cProfile of the cycles")
    args = parser.parse_args()
    if max(args.annotators) > ANNOTATORS:
        parser.error(f"at most {ANNOTATORS} annotators")

    if args.explain or args.in_process:
        os.environ["CONN_MAX_AGE"] = "60"  # one connection for the whole run, as a gunicorn thread keeps it
    database_prepare(DATABASE_URL)
    project, tokens, created = bench_project(args.tasks)
    if args.explain:
        explain(project)
        return 0
    if args.in_process:
        in_process(project, tokens, args.in_process, args.profile)
        return 0
    for annotators in args.annotators:
        tables_vacuum()
        since = last_assignment_id()
        load = os.getloadavg()[0]
        server = Server(workers=args.workers, threads=args.threads, conn_max_age=args.conn_max_age,
                        redis_url=args.redis,
                        worker_connections=(-(-annotators // args.workers) if args.worker_connections is None
                                            else args.worker_connections))
        try:
            result = run(server, project, tokens, annotators, args.seconds)
        finally:
            server.stop()
        print(json.dumps({
            "bench": "next_task",
            "tasks": args.tasks,
            **result,
            **integrity_check(project, since),
            "data_created_now": created,
            "load_average_1m": round(load, 2),
            "server": " ".join(server.command[1:2] + server.command[4:]) + f" CONN_MAX_AGE={args.conn_max_age}"
                      + (" REDIS_URL + celery worker" if args.redis else " (Celery eager)"),
            **machine(),
        }), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
