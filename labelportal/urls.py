"""URL configuration: portal pages, the admin, the API under /api/v1/, and (in development) media files."""

from django.conf import settings
from django.conf.urls.static import static
from django.contrib import admin
from django.urls import include, path

from apps.core import views as core_views

urlpatterns = [
    path("", core_views.home, name="home"),
    path("admin/", admin.site.urls),
    path("api/v1/", include(("labelportal.api_urls", "api"))),
    path("accounts/", include("django.contrib.auth.urls")),
    path("accounts/profile/", core_views.profile, name="profile"),
]

if settings.DEBUG:
    urlpatterns += static(settings.MEDIA_URL, document_root=settings.MEDIA_ROOT)
