"""Admin forms for tasks: task edits checked against the project's task type and schema, clarification answers."""

from django import forms
from django.utils.translation import gettext_lazy as _

from apps.projects.label_schema import result_validate, task_data_validate

from .models import Clarification, Task


class TaskForm(forms.ModelForm):
    """Edits a task's data, gold answer and prediction with the same checks an import applies."""

    class Meta:
        model = Task
        fields = "__all__"

    def clean(self):
        cleaned = super().clean()
        project = self.instance.project if self.instance.project_id else None
        if project is None:
            return cleaned
        data = cleaned.get("data", self.instance.data)
        if "data" in self.fields and "data" in cleaned:
            for message in task_data_validate(project.task_type, data):
                self.add_error("data", message)
        is_gold = cleaned.get("is_gold", self.instance.is_gold)
        gold_answer = cleaned.get("gold_answer", self.instance.gold_answer)
        if "gold_answer" in self.fields:
            if is_gold and gold_answer is None:
                self.add_error("gold_answer", _("A gold task needs a gold answer."))
            elif gold_answer is not None:
                for message in result_validate(project.task_type, project.label_schema, data, gold_answer):
                    self.add_error("gold_answer", message)
        prediction = cleaned.get("prediction")
        if "prediction" in self.fields and prediction is not None:
            for message in result_validate(project.task_type, project.label_schema, data, prediction):
                self.add_error("prediction", message)
        score = cleaned.get("prediction_score")
        if score is not None and not 0 <= score <= 1:
            self.add_error("prediction_score", _("The model's confidence is a number between 0 and 1."))
        return cleaned


class ClarificationAnswerForm(forms.ModelForm):
    """A manager's answer to an open clarification; saved through clarification_answer."""

    answer = forms.CharField(label=_("Answer"), widget=forms.Textarea(attrs={"rows": 5, "cols": 80}),
                             help_text=_("The annotator sees this answer and can resume the task."))

    class Meta:
        model = Clarification
        fields = "__all__"

    def clean(self):
        cleaned = super().clean()
        if "answer" in self.fields and self.instance.pk and self.instance.status != Clarification.Status.OPEN:
            raise forms.ValidationError(_("This clarification was already answered."))
        return cleaned
