"""The project dashboard (portal): charts first, each with its table; `?format=json` and `?format=csv&table=`.

For the project's managers, and admins. Outsiders get 404 (the project is not revealed), members without the
manager role 403 — as every portal page decides it (apps.tasks.views._project_or_404).
"""


from django.contrib.auth.decorators import login_required
from django.http import HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils import timezone
from django.utils.translation import gettext as _
from rest_framework.utils.encoders import JSONEncoder

from apps.core.csv_tools import csv_response
from apps.core.permissions import MANAGE
from apps.tasks.views import _project_or_404

from .project_figures import DashboardFilterForm, dashboard_tables, project_dashboard

FORMATS = ("html", "json", "csv")
def _bad_request(request, fmt, project, form, message, errors):
    if fmt == "json":
        return JsonResponse({"detail": message, "errors": errors}, status=400)
    if fmt == "csv":
        return HttpResponse(message, status=400, content_type="text/plain; charset=utf-8")
    return render(request, "dashboards/project.html", {"project": project, "form": form, "error": message},
                  status=400)


@login_required
def project_dashboard_view(request, project_id):
    project = _project_or_404(request.user, project_id, MANAGE)
    fmt = request.GET.get("format", "html")
    form = DashboardFilterForm(request.GET, project=project, today=timezone.now().date())
    if fmt not in FORMATS:
        return _bad_request(request, "json", project, form, _("Unknown format: choose html, json or csv."),
                            {"format": [_("Choose html, json or csv.")]})
    if not form.is_valid():
        return _bad_request(request, fmt, project, form, _("Some filters are not valid; nothing was filtered."),
                            form.errors_as_dict())
    data = project_dashboard(project=project, batch=form.cleaned_data["batch"],
                             date_from=form.cleaned_data["date_from"], date_to=form.cleaned_data["date_to"])
    if fmt == "json":
        # The API's encoder: its timestamps read exactly as `GET /projects/{id}/metrics/` writes them.
        return JsonResponse(data, encoder=JSONEncoder, json_dumps_params={"ensure_ascii": False})
    tables = dashboard_tables(data)
    if fmt == "csv":
        name = request.GET.get("table", "")
        if name not in tables:
            message = _("Unknown table: choose one of %(tables)s.") % {"tables": ", ".join(tables)}
            return _bad_request(request, fmt, project, form, message, {"table": [message]})
        return csv_response(f"{project.slug}-{name}.csv", tables[name]["columns"], tables[name]["rows"])
    query = request.GET.copy()
    query.pop("format", None)
    query.pop("table", None)
    return render(request, "dashboards/project.html", {
        "project": project, "form": form, "data": data, "tables": tables,
        "chart_data": {key: data[key] for key in ("progress", "throughput", "burndown", "quality", "review",
                                                  "filters")},
        "query": query.urlencode(),
    })
