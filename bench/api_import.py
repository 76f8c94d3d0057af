"""Time an import through the REST API on a real server, and print one JSON line.

    .venv/bin/python bench/api_import.py --rows 100000 --repeat 3

It creates (if missing) and migrates the PostgreSQL database labelportal_bench2, makes an admin with a token and a
fresh classification project, writes a JSONL file of --rows tasks, starts gunicorn (2 sync workers, production
settings, Celery eager as without Redis) and POSTs the file as a multipart upload to
/api/v1/projects/{id}/import/, timing from the first byte sent to the response. tasks/s = rows ÷ that time. Peak
RSS is the high-water mark (VmHWM) of the gunicorn workers, read from /proc after the request; gunicorn is started
afresh for each run, so it is the peak of a worker that served one import. With --repeat N the line reports the
median run.
"""

import argparse
import http.client
import json
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATABASE = "labelportal_bench2"
DATABASE_URL = f"postgres://postgres@127.0.0.1:5432/{DATABASE}"


# --- shared with bench/export.py ----------------------------------------------------------------------------------


def database_prepare(url=DATABASE_URL):
    """Create the database if it is missing, point Django at it and migrate it."""
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as admin:
        if not admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            admin.execute(f'CREATE DATABASE "{name}"')
    os.environ["DATABASE_URL"] = url
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "labelportal.settings.test")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)


def admin_token():
    """The bench admin's API token (the user and the token are created once)."""
    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token

    admin, _ = get_user_model().objects.get_or_create(username="bench-admin",
                                                      defaults={"is_staff": True, "is_superuser": True})
    return admin, Token.objects.get_or_create(user=admin)[0].key


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def listening_wait(process, port, stop, timeout=60):
    """Wait until the gunicorn `process` accepts connections on `port`; if it exits or never listens, `stop()` and
    end the bench. Returns the deadline, for what the caller waits for next."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"gunicorn exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return deadline
        except OSError:
            time.sleep(0.2)
    stop()
    raise SystemExit(f"gunicorn did not start listening within {timeout} s")


class Gunicorn:
    """`gunicorn labelportal.wsgi` with production settings on 127.0.0.1, for one run."""

    def __init__(self, workers=2, timeout=600):
        self.port = free_port()
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "labelportal.settings.prod", "DATABASE_URL": DATABASE_URL,
               "SECRET_KEY": secrets.token_urlsafe(50), "ALLOWED_HOSTS": "127.0.0.1",
               "SECURE_SSL_REDIRECT": "false", "LOG_LEVEL": "WARNING"}
        # --timeout: a sync worker does not tell the arbiter it is alive while it serves one long request; with the
        # default 30 s a long export or import would be killed mid-way.
        self.command = [str(ROOT / ".venv/bin/gunicorn"), "labelportal.wsgi", "-b", f"127.0.0.1:{self.port}",
                        "-w", str(workers), "--timeout", str(timeout), "--log-level", "warning"]
        self.process = subprocess.Popen(self.command, cwd=ROOT, env=env)
        listening_wait(self.process, self.port, self.stop)
        self.workers_wait(workers)

    def worker_pids(self):
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return [int(pid) for pid in children.read_text().split()]

    def workers_wait(self, workers):
        deadline = time.monotonic() + 60
        while len(self.worker_pids()) < workers and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1)  # let them finish importing Django

    def peak_rss_kib(self):
        """{pid: VmHWM} of each worker, in KiB."""
        peaks = {}
        for pid in self.worker_pids():
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peaks[pid] = int(line.split()[1])
        return peaks

    def connection(self, timeout=900):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # graceful: the master stops its workers
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def machine():
    """What the figures were measured on."""
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "?")
    memory_kib = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                      if line.startswith("MemTotal:"))
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        postgres = cursor.fetchone()[0]
    return {"nproc": os.cpu_count(), "ram_gib": round(memory_kib / 2**20, 1), "cpu": cpu, "postgresql": postgres,
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}


# --- the import -----------------------------------------------------------------------------------------------------


def jsonl_write(path, rows):
    with open(path, "w", encoding="utf-8") as out:
        for i in range(rows):
            out.write(json.dumps({"data": {"text": f"Review {i}: the delivery was on time and the box was intact."},
                                  "external_id": f"api-{i}"}) + "\n")


def project_fresh(admin):
    from apps.projects.services import project_create

    stamp = uuid.uuid4().hex[:10]
    return project_create(actor=admin, name=f"API import {stamp}", slug=f"api-import-{stamp}",
                          task_type="classification",
                          label_schema={"labels": [{"value": "positive"}, {"value": "negative"}]})


def multipart_post(connection, url, token, path):
    """POST the file as `file` in multipart/form-data, streamed from disk; (status, body, seconds)."""
    boundary = uuid.uuid4().hex
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{path.name}\"\r\n"
            f"Content-Type: application/x-ndjson\r\n\r\n").encode()
    tail = f"\r\n--{boundary}--\r\n".encode()

    def body():
        yield head
        with open(path, "rb") as source:
            while chunk := source.read(1 << 20):
                yield chunk
        yield tail

    headers = {"Authorization": f"Token {token}", "Content-Type": f"multipart/form-data; boundary={boundary}",
               "Content-Length": str(len(head) + path.stat().st_size + len(tail)), "Accept": "application/json"}
    started = time.perf_counter()
    connection.request("POST", url, body=body(), headers=headers)
    response = connection.getresponse()
    payload = response.read()
    return response.status, payload, time.perf_counter() - started


def import_once(path, rows, admin, token):
    from apps.tasks.models import Task

    project = project_fresh(admin)
    server = Gunicorn()
    try:
        idle = server.peak_rss_kib()
        status, payload, seconds = multipart_post(server.connection(), f"/api/v1/projects/{project.pk}/import/",
                                                  token, path)
        peaks = server.peak_rss_kib()
    finally:
        server.stop()
    if status != 201 or json.loads(payload)["created"] != rows:
        raise SystemExit(f"import answered {status}: {payload[:500]!r}")
    created = Task.objects.filter(project=project).count()
    if created != rows:
        raise SystemExit(f"expected {rows} tasks, found {created}")
    return {"seconds": seconds, "peak_kib": max(peaks.values()), "idle_kib": max(idle.values())}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=1, help="imports, each into a fresh project and a fresh server")
    args = parser.parse_args()

    database_prepare()
    admin, token = admin_token()
    with tempfile.TemporaryDirectory(prefix="labelportal-bench-") as workdir:
        path = Path(workdir) / "tasks.jsonl"
        jsonl_write(path, args.rows)
        file_mb = path.stat().st_size / 2**20
        load = os.getloadavg()[0]
        runs = [import_once(path, args.rows, admin, token) for _ in range(args.repeat)]
    median = sorted(runs, key=lambda run: run["seconds"])[len(runs) // 2]
    print(json.dumps({
        "bench": "api_import",
        "rows": args.rows,
        "seconds": round(median["seconds"], 3),
        "tasks_per_s": round(args.rows / median["seconds"]),
        "worker_peak_rss_mb": round(max(run["peak_kib"] for run in runs) / 1024, 1),
        "worker_idle_rss_mb": round(median["idle_kib"] / 1024, 1),
        "runs_seconds": [round(run["seconds"], 3) for run in runs],
        "runs_spread": round(statistics.pstdev(run["seconds"] for run in runs), 3),
        "file_mb": round(file_mb, 1),
        "load_average_1m": round(load, 2),
        "server": "gunicorn -w 2 (sync), labelportal.settings.prod",
        **machine(),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
