"""What a team lead knows about each annotator: seniority, skills, languages, capacity and working pattern."""

import datetime
import functools
import re
import zoneinfo

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils.translation import gettext_lazy as _

from apps.core.audit import history
from apps.core.models import TimeStampedModel

WEEKDAYS = [0, 1, 2, 3, 4]  # Monday..Friday
# A language tag as tasks carry it in their data ("en", "es", "pt-BR"): a lowercase ISO 639 code, then subtags.
LANGUAGE_CODE = re.compile(r"[a-z]{2,3}(-[A-Za-z0-9]{1,8})*")


@functools.cache
def time_zone_names():
    """The IANA time zone names; not "localtime", which some systems keep among them: the machine's own zone, not
    the annotator's."""
    return frozenset(zoneinfo.available_timezones() - {"localtime"})


def default_working_days():
    return list(WEEKDAYS)


class AnnotatorProfile(TimeStampedModel):
    """Seniority, skills (with levels 1-5), languages, weekly capacity, working hours/days and time zone."""

    class Seniority(models.TextChoices):
        JUNIOR = "junior", _("Junior")
        SENIOR = "senior", _("Senior")
        LEAD = "lead", _("Lead")

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="profile")
    seniority = models.CharField(max_length=6, choices=Seniority.choices, default=Seniority.JUNIOR)
    skills = models.JSONField(default=dict, blank=True, help_text=_('Skill → level 1-5, e.g. {"medical": 4, "ner": 3}'))
    languages = models.JSONField(default=list, blank=True, help_text=_('ISO 639-1 codes, e.g. ["en", "es"]'))
    weekly_capacity_hours = models.DecimalField(max_digits=5, decimal_places=1, default=40,
                                                validators=[MinValueValidator(0), MaxValueValidator(168)])
    working_hours_start = models.TimeField(default=datetime.time(9, 0))
    working_hours_end = models.TimeField(default=datetime.time(17, 0))
    working_days = models.JSONField(default=default_working_days, blank=True,
                                    help_text=_("Weekdays worked, 0 = Monday … 6 = Sunday."))
    timezone = models.CharField(max_length=64, default="UTC")
    is_active = models.BooleanField(default=True)

    history = history()

    class Meta:
        ordering = ["user__username"]
        indexes = [models.Index(fields=["is_active", "seniority"], name="profile_active_seniority")]

    def __str__(self):
        return f"Profile of {self.user}"

    def clean(self):
        errors = {}
        if not isinstance(self.skills, dict) or not all(
            isinstance(k, str) and k.strip() and isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 5
            for k, v in self.skills.items()
        ):
            errors["skills"] = _("Give skills as an object of skill name → level from 1 to 5.")
        if not isinstance(self.languages, list) or not all(
            isinstance(code, str) and LANGUAGE_CODE.fullmatch(code) for code in self.languages
        ) or len(set(self.languages)) != len(self.languages):
            errors["languages"] = _("Give languages as a list of codes such as [\"en\", \"es\"].")
        if not isinstance(self.working_days, list) or not all(
            isinstance(d, int) and not isinstance(d, bool) and 0 <= d <= 6 for d in self.working_days
        ) or len(set(self.working_days or [])) != len(self.working_days or []):
            errors["working_days"] = _("Give working days as distinct numbers 0 (Monday) to 6 (Sunday).")
        if self.timezone not in time_zone_names():
            errors["timezone"] = _("Unknown time zone; use a name such as Europe/Madrid.")
        if self.working_hours_start and self.working_hours_end and self.working_hours_start == self.working_hours_end:
            errors["working_hours_end"] = _("The working day cannot start and end at the same time.")
        if errors:
            raise ValidationError(errors)

    @property
    def daily_hours(self):
        start = datetime.datetime.combine(datetime.date.min, self.working_hours_start)
        end = datetime.datetime.combine(datetime.date.min, self.working_hours_end)
        span = (end - start).total_seconds() / 3600
        return span if span > 0 else span + 24


class Team(TimeStampedModel):
    """A group of annotators a team lead sets up in the admin (a team, a shift, a vendor): the team view compares
    them."""

    name = models.CharField(max_length=100, unique=True)
    description = models.TextField(blank=True)
    members = models.ManyToManyField(settings.AUTH_USER_MODEL, blank=True, related_name="teams")

    history = history(m2m_fields=[members])

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name
