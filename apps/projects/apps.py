from django.apps import AppConfig


class ProjectsConfig(AppConfig):
    name = "apps.projects"
    label = "projects"
    verbose_name = "Projects"

    def ready(self):
        from django.db.models.signals import post_migrate

        from apps.projects.services import managers_group_permissions_sync

        # Sent once per app: by the last one every model's permissions exist (auth creates them on post_migrate).
        post_migrate.connect(managers_group_permissions_sync, dispatch_uid="projects.managers_group_permissions")
