from django.apps import AppConfig


class AnnotatorsConfig(AppConfig):
    name = "apps.annotators"
    label = "annotators"
    verbose_name = "Annotators"
