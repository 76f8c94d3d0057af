"""URLs of the project dashboards."""

from django.urls import path

from . import project_views

app_name = "dashboards"

urlpatterns = [
    path("projects/<int:project_id>/dashboard/", project_views.project_dashboard_view, name="project"),
]
