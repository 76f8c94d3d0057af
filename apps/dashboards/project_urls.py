"""URLs of the project dashboards."""

urlpatterns = []
