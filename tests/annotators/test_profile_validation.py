"""AnnotatorProfile validation: skills with levels 1-5, language codes, working pattern, time zone, capacity — in the
model (full_clean) and on the admin's profile page."""

import datetime
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from apps.annotators.models import AnnotatorProfile
from tests import factories

pytestmark = pytest.mark.django_db

GOOD = {"seniority": "senior", "skills": {"medical": 4, "ner": 1, "boxes": 5}, "languages": ["en", "es", "pt-BR"],
        "weekly_capacity_hours": Decimal("37.5"), "working_hours_start": datetime.time(8, 30),
        "working_hours_end": datetime.time(16, 30), "working_days": [0, 1, 2, 3, 4], "timezone": "Europe/Madrid"}


def errors_of(**changes):
    """The fields full_clean refuses for a profile that is GOOD but for `changes` ({} when it is valid)."""
    profile = AnnotatorProfile(user=factories.UserFactory(), **{**GOOD, **changes})
    try:
        profile.full_clean()
    except ValidationError as error:
        return set(error.message_dict)
    return set()


def test_a_complete_profile_is_valid():
    assert errors_of() == set()
    assert errors_of(skills={}, languages=[], working_days=[5, 6], timezone="UTC") == set()


@pytest.mark.parametrize("skills", [
    {"ner": 0}, {"ner": 6}, {"ner": -1}, {"ner": "3"}, {"ner": 3.5}, {"ner": True}, {"ner": None}, {"": 3},
    {"  ": 2}, ["ner"], "ner",
], ids=repr)
def test_skills_are_names_with_a_level_from_1_to_5(skills):
    assert errors_of(skills=skills) == {"skills"}


@pytest.mark.parametrize("level", [1, 2, 3, 4, 5])
def test_every_level_from_1_to_5_is_accepted(level):
    assert errors_of(skills={"ner": level}) == set()


@pytest.mark.parametrize("languages", [
    ["e"], ["english"], ["12"], ["  "], ["EN"], ["en", "en"], ["en_US"], [""], [3], "en", {"en": 1}, ["en-"],
], ids=repr)
def test_languages_are_a_list_of_distinct_language_codes(languages):
    assert errors_of(languages=languages) == {"languages"}


@pytest.mark.parametrize("languages", [["en"], ["ar", "he"], ["pt-BR", "es-419"], ["fil"]], ids=repr)
def test_language_codes_as_tasks_carry_them_are_accepted(languages):
    assert errors_of(languages=languages) == set()


@pytest.mark.parametrize("days", [[7], [-1], [0, 0], ["1"], [True], "0-4", [1.0]], ids=repr)
def test_working_days_are_distinct_weekdays_0_to_6(days):
    assert errors_of(working_days=days) == {"working_days"}


def test_a_working_day_cannot_start_and_end_at_the_same_time_but_may_cross_midnight():
    assert errors_of(working_hours_start=datetime.time(9), working_hours_end=datetime.time(9)) == {
        "working_hours_end"}
    night = AnnotatorProfile(**{**GOOD, "working_hours_start": datetime.time(22),
                                "working_hours_end": datetime.time(6)})
    assert errors_of(working_hours_start=datetime.time(22), working_hours_end=datetime.time(6)) == set()
    assert night.daily_hours == 8


@pytest.mark.parametrize("zone", ["Mars/Olympus", "europe/madrid", "Europe/Madrid ", "", "localtime", "../etc",
                                  "posixrules"], ids=repr)
def test_the_time_zone_is_an_iana_name(zone):
    assert errors_of(timezone=zone) == {"timezone"}


@pytest.mark.parametrize("zone", ["UTC", "America/Argentina/Buenos_Aires", "Asia/Kolkata", "Pacific/Chatham"])
def test_iana_time_zones_are_accepted(zone):
    assert errors_of(timezone=zone) == set()


@pytest.mark.parametrize("hours, valid", [
    (Decimal("0"), True), (Decimal("168"), True), (Decimal("20.5"), True), (Decimal("-1"), False),
    (Decimal("168.5"), False), (Decimal("12.25"), False), (Decimal("10000"), False),
])
def test_weekly_capacity_is_0_to_168_hours_to_a_tenth(hours, valid):
    assert errors_of(weekly_capacity_hours=hours) == (set() if valid else {"weekly_capacity_hours"})


def test_an_unknown_seniority_is_refused():
    assert errors_of(seniority="guru") == {"seniority"}


def test_the_admin_page_shows_the_reasons_and_saves_nothing(admin_user, client):
    # given a person without a profile, and the admin on the add page
    person = factories.UserFactory(username="nadia")
    client.force_login(admin_user)
    data = {"user": person.pk, "seniority": "junior", "skills": '{"ner": 9}', "languages": '["EN"]',
            "weekly_capacity_hours": "200", "working_hours_start": "09:00", "working_hours_end": "09:00",
            "working_days": "[0, 0]", "timezone": "Mars/Olympus", "is_active": "on"}

    response = client.post(reverse("admin:annotators_annotatorprofile_add"), data)

    # then the page comes back with a message per field and no profile exists
    assert response.status_code == 200
    form_errors = response.context["adminform"].form.errors
    assert set(form_errors) == {"skills", "languages", "weekly_capacity_hours", "working_hours_end", "working_days",
                                "timezone"}
    assert "level from 1 to 5" in str(form_errors["skills"])
    assert "Unknown time zone" in str(form_errors["timezone"])
    assert not AnnotatorProfile.objects.filter(user=person).exists()

    # when the values are fixed, it is saved, with its history
    fixed = {**data, "skills": '{"ner": 3}', "languages": '["en"]', "weekly_capacity_hours": "30",
             "working_hours_end": "17:00", "working_days": "[0, 1, 2]", "timezone": "Africa/Nairobi"}
    assert client.post(reverse("admin:annotators_annotatorprofile_add"), fixed).status_code == 302
    profile = AnnotatorProfile.objects.get(user=person)
    assert (profile.skills, profile.languages, profile.timezone) == ({"ner": 3}, ["en"], "Africa/Nairobi")
    assert profile.history.get().history_user == admin_user
