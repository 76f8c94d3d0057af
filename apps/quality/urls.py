from django.urls import path

from . import views

app_name = "quality"

urlpatterns = [
    path("projects/<int:project_id>/review/", views.review, name="review"),
    path("alerts/", views.alerts, name="alerts"),
    path("alerts/<int:alert_id>/acknowledge/", views.alert_acknowledge, name="alert-acknowledge"),
    path("alerts/<int:alert_id>/resolve/", views.alert_resolve, name="alert-resolve"),
]
