"""The dashboards: the project dashboard (project_urls) and the people pages — team view, annotator detail and
my stats (people_urls)."""

from django.urls import include, path

urlpatterns = [
    path("", include("apps.dashboards.project_urls")),
    path("", include("apps.dashboards.people_urls")),
]
