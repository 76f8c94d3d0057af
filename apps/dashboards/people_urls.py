"""URLs of the people dashboards: the team view and an annotator's detail (managers), my stats (annotators)."""

from django.urls import path

from . import people_views

app_name = "people"

urlpatterns = [
    path("projects/<int:project_id>/team/", people_views.team, name="team"),
    path("projects/<int:project_id>/team/<int:user_id>/", people_views.annotator, name="annotator"),
    path("projects/<int:project_id>/my-stats/", people_views.my_stats, name="my-stats"),
]
