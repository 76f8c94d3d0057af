from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "apps.core"
    label = "core"
    verbose_name = "Core"

    def ready(self):
        from django.db.models.signals import post_migrate

        from apps.core.audit import append_only_triggers_install

        post_migrate.connect(append_only_triggers_install, dispatch_uid="core.append_only_triggers")
