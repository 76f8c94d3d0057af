"""URLs of the people dashboards."""

urlpatterns = []
