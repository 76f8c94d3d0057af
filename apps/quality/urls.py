from django.urls import path

from . import views

app_name = "quality"

urlpatterns = [
    path("projects/<int:project_id>/review/", views.review, name="review"),
]
