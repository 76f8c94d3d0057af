"""URL configuration: portal pages, the admin, the API under /api/v1/, and (in development) media files."""

from django.conf import settings
from django.conf.urls.static import static
from django.contrib import admin
from django.urls import include, path
from django.views.i18n import JavaScriptCatalog

from apps.core import views as core_views
from apps.tasks import views as task_views

urlpatterns = [
    # First: the annotation loop's requests are API calls, and resolving walks the patterns in order.
    path("api/v1/", include(("labelportal.api_urls", "api"))),
    path("", task_views.home, name="home"),
    path("", include("apps.tasks.urls")),
    path("", include("apps.quality.urls")),
    path("", include("apps.dashboards.urls")),
    path("i18n/", include("django.conf.urls.i18n")),
    path("jsi18n/", JavaScriptCatalog.as_view(), name="javascript-catalog"),
    path("admin/", admin.site.urls),
    path("accounts/", include("django.contrib.auth.urls")),
    path("accounts/profile/", core_views.profile, name="profile"),
]

if settings.DEBUG:
    urlpatterns += static(settings.MEDIA_URL, document_root=settings.MEDIA_ROOT)
