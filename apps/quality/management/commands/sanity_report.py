"""`manage.py sanity_report <project>`: the current annotations that break the project's sanity rules, as CSV or
JSON (see apps/quality/sanity.py), streamed to standard output or a file."""

from django.core.management.base import BaseCommand, CommandError

from apps.projects.models import Project
from apps.quality import sanity


class Command(BaseCommand):
    help = ("Report the current annotations of a project that break its sanity rules: the label schema's and the "
            "active rules set in the admin. One line per rule and offending annotation (CSV), or per rule its count "
            "and offending annotations (JSON). Streamed: memory stays flat on a big project.")

    def add_arguments(self, parser):
        parser.add_argument("project", help="The project's slug or id.")
        parser.add_argument("--format", choices=["csv", "json"], default="csv")
        parser.add_argument("--output", "-o", help="Write to this file instead of standard output.")

    def handle(self, *args, project, format, output=None, **options):
        found = Project.objects.filter(slug=project).first()
        if found is None and project.isdigit():
            found = Project.objects.filter(pk=int(project)).first()
        if found is None:
            raise CommandError(f"No project “{project}” (give its slug or id).")
        chunks = sanity.sanity_report_csv(found) if format == "csv" else sanity.sanity_report_json(found)
        if output:
            with open(output, "w", encoding="utf-8", newline="") as target:
                for chunk in chunks:
                    target.write(chunk)
        else:
            for chunk in chunks:
                self.stdout.write(chunk, ending="")
