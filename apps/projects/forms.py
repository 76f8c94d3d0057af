"""Admin forms for projects: the label schema editor, the task import upload and the gate override reason."""

import json
import os

from django import forms
from django.forms.fields import InvalidJSONInput
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext_lazy as _

from .label_schema import TaskType
from .models import Project

LABEL_SCHEMA_EXAMPLES = {
    TaskType.CLASSIFICATION: {
        "labels": [{"value": "cat", "name": "Cat", "hotkey": "1", "color": "#e6194b"},
                   {"value": "dog", "name": "Dog", "hotkey": "2"}],
    },
    TaskType.MULTILABEL: {
        "labels": ["news", "sports", "politics"],
        "options": {"min_labels": 1, "max_labels": 2},
    },
    TaskType.TEXT_SPANS: {
        "labels": [{"value": "PER", "name": "Person"}, {"value": "ORG", "name": "Organisation"}],
        "options": {"max_spans": 50},
    },
    TaskType.BOUNDING_BOXES: {
        "labels": [{"value": "car", "color": "#4363d8"}, {"value": "person"}],
        "options": {"min_boxes": 1},
    },
}


def label_schema_help():
    examples = format_html_join(
        "", "<li><b>{}</b>: <code>{}</code></li>",
        ((label, json.dumps(LABEL_SCHEMA_EXAMPLES[value], ensure_ascii=False)) for value, label in TaskType.choices),
    )
    return format_html(
        "{}<ul>{}</ul>{}",
        _("A JSON object with a non-empty 'labels' list (a classification needs at least two). Each label is a "
          "string or an object with 'value' (required; letters, digits, spaces, _ . - : /), and optional 'name', "
          "'hotkey' (one character) and 'color' (#rrggbb); missing hotkeys and colours are filled in. Examples:"),
        examples,
        _("'options' may hold min_/max_labels (multi-label), min_/max_spans (text spans) or min_/max_boxes "
          "(bounding boxes)."),
    )


class LabelSchemaField(forms.JSONField):
    """JSON shown indented, so a schema of twenty labels stays readable in the textarea."""

    def prepare_value(self, value):
        if isinstance(value, InvalidJSONInput):
            return value
        return json.dumps(value, ensure_ascii=False, indent=2, cls=self.encoder)


class ProjectForm(forms.ModelForm):
    """The project form: the label schema as a JSON textarea; Project.clean() validates it for the task type."""

    class Meta:
        model = Project
        fields = "__all__"
        field_classes = {"label_schema": LabelSchemaField}
        widgets = {
            "label_schema": forms.Textarea(attrs={"rows": 14, "cols": 90, "class": "vLargeTextField",
                                                  "style": "font-family: monospace"}),
        }
        error_messages = {
            "label_schema": {"invalid": _("This is not valid JSON. Check quotes, commas and brackets; "
                                          "keys and strings need double quotes.")},
        }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if "label_schema" in self.fields:
            self.fields["label_schema"].help_text = label_schema_help()

    def _update_errors(self, errors):
        # Project.clean() validates the schema against the task type. When the JSON did not parse or no task type
        # was chosen, its message would only repeat (or confuse) the error already shown on those fields.
        if hasattr(errors, "error_dict") and "label_schema" in errors.error_dict and (
                "label_schema" in self._errors or "task_type" in self._errors):
            errors.error_dict.pop("label_schema")
            if not errors.error_dict:
                return
        super()._update_errors(errors)


IMPORT_EXTENSIONS = (".json", ".jsonl", ".ndjson", ".csv")


class TaskImportForm(forms.Form):
    """Upload of a task file (JSON array, JSON Lines or CSV) into a project."""

    file = forms.FileField(
        label=_("Task file"),
        help_text=_('JSON (an array of tasks), JSON Lines (one task per line) or CSV. A task is '
                    '{"data": {...}, "external_id": "…", "batch": "name", "priority": 0, "is_gold": false, '
                    '"gold_answer": {...}, "prediction": {"result": {...}, "score": 0.4}}. In CSV, columns other '
                    'than those go into data (e.g. a "text" column). Rows whose external_id already exists are '
                    'skipped. One bad row and nothing is imported.'),
    )
    default_batch_name = forms.CharField(
        label=_("Default batch name"), required=False, max_length=200,
        help_text=_("Tasks without a 'batch' go into a new batch of this name. Empty: “Import <date> <file>”."),
    )

    def clean_file(self):
        upload = self.cleaned_data["file"]
        if os.path.splitext(upload.name or "")[1].lower() not in IMPORT_EXTENSIONS:
            raise forms.ValidationError(_("Upload a .json, .jsonl (or .ndjson) or .csv file."))
        return upload


class BatchOverrideForm(forms.Form):
    """The written reason a manager gives for completing batches despite breached quality gates."""

    reason = forms.CharField(
        label=_("Reason"), widget=forms.Textarea(attrs={"rows": 4, "cols": 80}),
        help_text=_("Why the batch may be completed despite its breached gate(s). It is kept with the batch."),
    )
