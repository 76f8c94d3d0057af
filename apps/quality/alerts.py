"""What an alert says, in the reader's language, and the bell that counts a manager's unread alerts.

An alert stores its text once, in English (`Alert.message`: webhooks, logs and the API's `message` read it), and the
parameters of that text as data (`Alert.details`). `alert_text` renders the text again from the kind and the
details with gettext, so that each reader (the portal, the API's `text`, each e-mail) gets it in the active
language. An alert raised before details existed keeps its stored message.

Details per kind (what `gates._alert_raise(details=...)` is given):
- gate_breach: {"metric", "comparator", "threshold", "value", "n", "batch" (name, or None for the project)}
- throughput_dip: {"day" (ISO date), "submitted", "trailing_mean", "ratio"}
- outlier_annotator: {"annotator_id", "username", "flags": [...]}; an annotator paused automatically for low gold
  accuracy: {"annotator_id", "username", "project" (name), "paused": True, "flag": "low_gold",
  "gold_accuracy" (optional)}
- low_agreement_task: {"task_id", "external_id", "agreement", "threshold", "routing" (optional:
  "extra_annotator" or "senior_review")}
"""

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db.models import Exists, F, Func, OuterRef, Subquery
from django.urls import reverse
from django.utils.formats import number_format
from django.utils.translation import gettext as _, ngettext

from apps.core.permissions import MANAGE
from apps.projects.models import QualityGate
from apps.projects.selectors import project_list

from .models import Alert, AlertRead

LIVE = (Alert.State.OPEN, Alert.State.ACKNOWLEDGED)


def _number(value, decimals):
    """A figure as the reader's locale writes it (0.667 / 0,667); a missing one as a dash."""
    if value is None:
        return "–"
    return number_format(round(float(value), decimals), decimal_pos=decimals)


def _threshold(value):
    # Thresholds are typed by a person (0.8, 0.75, 12): as short as they were written.
    return _number(value, 3).rstrip("0").rstrip(".,") if value is not None else "–"


def flag_label(flag):
    """The outlier flags of METRICS.md "Annotator", as a person reads them."""
    labels = {"slow": _("slow"), "fast_and_inaccurate": _("fast and inaccurate"),
              "low_gold": _("low gold accuracy"), "low_agreement": _("low agreement")}
    return labels.get(flag, flag)


def _gate_text(details):
    metric = QualityGate.Metric(details["metric"]).label if details.get("metric") in QualityGate.Metric.values \
        else details.get("metric", "")
    comparator = QualityGate.Comparator(details["comparator"]).label \
        if details.get("comparator") in QualityGate.Comparator.values else details.get("comparator", "")
    n = int(details.get("n") or 0)
    values = {"metric": metric, "value": _number(details.get("value"), 3), "comparator": comparator,
              "threshold": _threshold(details.get("threshold")), "n": n, "batch": details.get("batch")}
    if details.get("batch"):
        return ngettext(
            "Quality gate breached on batch “%(batch)s”: %(metric)s is %(value)s, required %(comparator)s "
            "%(threshold)s (over %(n)d sample).",
            "Quality gate breached on batch “%(batch)s”: %(metric)s is %(value)s, required %(comparator)s "
            "%(threshold)s (over %(n)d samples).", n) % values
    return ngettext(
        "Quality gate breached on the project: %(metric)s is %(value)s, required %(comparator)s %(threshold)s "
        "(over %(n)d sample).",
        "Quality gate breached on the project: %(metric)s is %(value)s, required %(comparator)s %(threshold)s "
        "(over %(n)d samples).", n) % values


def _throughput_text(details):
    submitted = int(details.get("submitted") or 0)
    return ngettext(
        "Throughput dip: %(submitted)d submission on %(day)s (UTC), below %(ratio)s%% of the trailing 7-day mean "
        "(%(mean)s a day).",
        "Throughput dip: %(submitted)d submissions on %(day)s (UTC), below %(ratio)s%% of the trailing 7-day mean "
        "(%(mean)s a day).", submitted) % {
        "submitted": submitted, "day": details.get("day", ""),
        "ratio": _number(100 * float(details.get("ratio", 0.5)), 0), "mean": _number(details.get("trailing_mean"), 1)}


def _outlier_text(details):
    values = {"id": details.get("annotator_id"), "username": details.get("username") or "",
              "project": details.get("project") or ""}
    if details.get("paused"):
        if details.get("gold_accuracy") is not None:
            return _("Annotator #%(id)s (%(username)s) was paused on the project “%(project)s”: their gold "
                     "accuracy (%(accuracy)s) is too low.") % {**values,
                                                                "accuracy": _number(details["gold_accuracy"], 3)}
        return _("Annotator #%(id)s (%(username)s) was paused on the project “%(project)s”: their gold accuracy "
                 "is too low.") % values
    flags = ", ".join(str(flag_label(flag)) for flag in details.get("flags") or [])
    return _("Annotator #%(id)s (%(username)s) is far from the team: %(flags)s (robust z-score beyond 3 over at "
             "least 20 tasks).") % {**values, "flags": flags}


def _low_agreement_text(details):
    values = {"task": details.get("task_id"), "external_id": details.get("external_id") or "",
              "agreement": _number(details.get("agreement"), 3), "threshold": _threshold(details.get("threshold"))}
    if values["external_id"]:
        text = _("Task #%(task)s (“%(external_id)s”) has low agreement: %(agreement)s, below the project's threshold "
                 "of %(threshold)s.") % values
    else:
        text = _("Task #%(task)s has low agreement: %(agreement)s, below the project's threshold of "
                 "%(threshold)s.") % values
    routing = {"extra_annotator": _("It gets one more annotator."),
               "senior_review": _("It goes to a senior reviewer.")}.get(details.get("routing"))
    return f"{text} {routing}" if routing else text


RENDERERS = {
    Alert.Kind.GATE_BREACH: _gate_text,
    Alert.Kind.THROUGHPUT_DIP: _throughput_text,
    Alert.Kind.OUTLIER_ANNOTATOR: _outlier_text,
    Alert.Kind.LOW_AGREEMENT_TASK: _low_agreement_text,
}


def alert_text_render(kind, details, fallback=""):
    """The text of an alert of `kind` with `details`, in the active language; `fallback` without details."""
    renderer = RENDERERS.get(kind)
    if not details or renderer is None:
        return fallback
    try:
        return renderer(details)
    except (KeyError, TypeError, ValueError):  # details of an unexpected shape: the English text still says it
        return fallback


def alert_text(alert):
    """What the alert says, in the active language (its stored English message for alerts without details)."""
    return alert_text_render(alert.kind, alert.details, alert.message)


def alert_portal_url(alert):
    """The alert in the portal, as an absolute address for e-mails (PORTAL_URL, else the development server)."""
    base = getattr(settings, "PORTAL_URL", "") or "http://127.0.0.1:8000"
    return f"{base.rstrip('/')}{reverse('quality:alerts')}?alert={alert.pk}"


# --- the bell --------------------------------------------------------------------------------------------------------

def alert_bell(user):
    """{"manages": does the user manage any project, "unread": their live alerts without a read receipt}, in one
    query over the projects they manage (admins: every project); nothing is asked for anonymous users."""
    if user is None or not user.is_authenticated or not user.is_active:
        return {"manages": False, "unread": 0}
    # One row (the user's own, by primary key) carrying two figures: how many projects they manage, and the sum
    # over those projects of their live alerts (index alert_project_state, one range per project) without the
    # user's receipt (index alert_read_once). Per project, because the permission filter hides from the database
    # how few projects pass it: joined to the alerts it would read them all.
    managed = project_list(user=user, perm=MANAGE).order_by()
    unread_of_project = (Alert.objects.filter(project=OuterRef("pk"), state__in=LIVE)
                         .exclude(Exists(AlertRead.objects.filter(alert=OuterRef("pk"), user=user))))
    unread = Subquery(managed.annotate(total=Func(_count(unread_of_project), function="SUM")).values("total"))
    figures = (get_user_model().objects.filter(pk=user.pk).annotate(projects=_count(managed), unread=unread)
               .values("projects", "unread").first() or {"projects": 0, "unread": 0})
    return {"manages": figures["projects"] > 0, "unread": int(figures["unread"] or 0)}  # SUM: a decimal on PostgreSQL


def _count(queryset):
    """COUNT(*) of a queryset as a scalar subquery (no GROUP BY: COUNT as a plain function over the rows)."""
    return Subquery(queryset.order_by().annotate(n=Func(F("pk"), function="COUNT")).values("n"))
