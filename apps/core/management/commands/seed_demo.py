"""`manage.py seed_demo`: the demo team, three projects and a few working days of history (see apps/core/demo.py)."""

import argparse

from django.core.management.base import BaseCommand, CommandError, DjangoHelpFormatter

from apps.core import demo


def _credentials_table():
    rows = demo.credentials()
    width = max(len(username) for username, *_ in rows)
    pwidth = max(len(password) for _u, password, *_ in rows)
    return "\n".join(f"  {username:<{width}}  {password:<{pwidth}}  {role} — {name}"
                     for username, password, role, name in rows)


class _HelpFormatter(DjangoHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Keep the credentials table of the help as written."""


class Command(BaseCommand):
    help = (
        "Create the LabelPortal demo: an admin, a manager, 2 reviewers and 6 annotators (with annotator profiles),\n"
        "three projects — product-review sentiment (classification), news entities in four languages (text\n"
        "spans) and street scenes (bounding boxes on SVG frames drawn into MEDIA_ROOT/demo/) — with batches,\n"
        "gold tasks, guidelines, quality gates, and the last working days of history replayed through the\n"
        "services: assignments, submissions, reviews, rejections and resubmissions, clarifications, skips.\n\n"
        "Safe to run again: when the demo is there, nothing changes. Everything is written in one transaction.\n"
        "Demo accounts (username, password):\n" + _credentials_table()
    )

    def create_parser(self, prog_name, subcommand, **kwargs):
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        parser.formatter_class = _HelpFormatter
        return parser

    def add_arguments(self, parser):
        parser.add_argument("--small", action="store_true",
                            help="A smaller demo (about a quarter of the tasks, 3 days of history), for tests.")

    def handle(self, *args, small=False, verbosity=1, **options):
        conflicts = demo.demo_conflicts()
        if conflicts:
            raise CommandError(
                "Some demo projects exist but not all of them (%s): the slugs are taken by other projects. "
                "Remove them or use a fresh database; nothing was changed." % ", ".join(conflicts))
        log = self.stdout.write if verbosity >= 1 else None
        try:
            result = demo.demo_seed(small=small, log=log)
        except demo.DemoRefused as refusal:
            raise CommandError(f"{refusal} Nothing was changed.") from refusal
        if not result.created:
            self.stdout.write("Demo data already present; nothing changed.")
            if result.images_written:
                self.stdout.write(f"(Redrew {result.images_written} missing demo image(s) in MEDIA_ROOT/demo/.)")
            return
        if verbosity < 1:
            return
        counts = result.counts
        self.stdout.write(self.style.SUCCESS(
            f"Demo created in {result.seconds:.1f} s: history from {result.first_day:%a %d %b} to today."))
        for slug, project in counts["projects"].items():
            statuses = ", ".join(f"{n} {status}" for status, n in sorted(project["by_status"].items()))
            batches = ", ".join(f"{name} ({status})" for name, status in project["batches"].items())
            self.stdout.write(f"  {project['name']} [{slug}]: {project['tasks']} tasks — {statuses}\n"
                              f"      batches: {batches}")
        self.stdout.write(
            f"  {counts['assignments']} assignments, {counts['annotations']} annotation versions, "
            f"{counts['reviews']} reviews, {counts['clarifications']} clarifications, {counts['events']} task events "
            f"over {counts['event_days']} days; {result.images_written} image(s) written to MEDIA_ROOT/demo/.")
        self.stdout.write("\nDemo accounts (username, password):\n" + _credentials_table())
        if result.kept_users:
            self.stdout.write("These users existed already and were used as they are (their passwords were not "
                              "changed): " + ", ".join(result.kept_users))
        self.stdout.write("\nOpen http://127.0.0.1:8000/admin/ and log in with any of them.")
