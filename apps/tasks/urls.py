from django.urls import path

from . import views

app_name = "tasks"

urlpatterns = [
    path("projects/<int:project_id>/label/", views.label, name="label"),
    path("assignments/<int:assignment_id>/resume/", views.assignment_resume, name="assignment-resume"),
]
