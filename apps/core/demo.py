"""The demo: a labeling team, three projects and a few working days of history, all made through the services.

Everything is written by the functions the product itself uses (project and batch services, the task import,
assignment, submission, review and clarification transitions), so history tables, TaskEvents and figures are
real. The services stamp times with `django.utils.timezone.now`; the builder replays the last working days on
a simulated clock — a discrete-event loop in which each annotator, reviewer, the manager and the periodic jobs
act at their own times, in time order — so the trail reads like a team that has been at work for a week.

The data is deterministic for a given day: one seeded random generator drives every choice, and the global
`random` (task random keys, review sampling) is seeded for the duration and restored afterwards.
"""

import heapq
import itertools
from contextlib import ExitStack, contextmanager
import math
import random
import re
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from unittest import mock
from zoneinfo import ZoneInfo

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone

from apps.annotators.models import AnnotatorProfile
from apps.core.audit import acting_as
from apps.projects import services as project_services
from apps.projects.models import Batch, Project
from apps.quality.services import progress_snapshot_write, quality_recompute_full
from apps.quality.tasks import progress_recompute
from apps.tasks import services as task_services
from apps.tasks.imports import tasks_import
from apps.tasks.models import Annotation, Assignment, Clarification, Task, TaskEvent

SEED = 20240917
HISTORY_DAYS = 4
SMALL_HISTORY_DAYS = 3
IMAGE_WIDTH, IMAGE_HEIGHT = 640, 480
MEDIA_SUBDIR = "demo"

AS, TS, AN = Assignment.Status, Task.Status, Annotation.Status


# --- the team ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Person:
    """One demo account; its password is `<username>-demo-1`."""

    username: str
    first_name: str
    last_name: str
    role: str  # admin, manager, reviewer, annotator
    profile: dict | None = None
    daily_tasks: int = 0  # an annotator's working day in the demo, in tasks (see TASK_COST)

    @property
    def password(self):
        return f"{self.username}-demo-1"

    @property
    def full_name(self):
        return f"{self.first_name} {self.last_name}"


def _profile(seniority, skills, languages, capacity, start, end, days, tz):
    return {"seniority": seniority, "skills": skills, "languages": languages, "weekly_capacity_hours": capacity,
            "working_hours_start": time(*start), "working_hours_end": time(*end), "working_days": days,
            "timezone": tz}


MON_FRI, MON_SAT = [0, 1, 2, 3, 4], [0, 1, 2, 3, 4, 5]

PEOPLE = [
    Person("admin", "Alex", "Morgan", "admin"),
    Person("daniel", "Daniel", "Okoro", "manager"),
    Person("amira", "Amira", "Haddad", "reviewer",
           _profile("lead", {"review": 5, "ner": 5, "sentiment": 4, "bounding_boxes": 4}, ["en", "ar", "he", "fr"],
                    40, (8, 0), (16, 30), MON_FRI, "Asia/Jerusalem")),
    Person("tomas", "Tomás", "Ruiz", "reviewer",
           _profile("senior", {"review": 4, "sentiment": 4, "bounding_boxes": 4, "ner": 3}, ["es", "en", "pt"],
                    32, (9, 0), (17, 0), MON_FRI, "Europe/Madrid")),
    Person("lucia", "Lucía", "Fernández", "annotator",
           _profile("senior", {"sentiment": 4, "ner": 4}, ["es", "en"], 40, (9, 0), (17, 0), MON_FRI,
                    "Europe/Madrid"), daily_tasks=9),
    Person("noam", "Noam", "Levi", "annotator",
           _profile("senior", {"ner": 5, "sentiment": 3}, ["he", "en"], 36, (8, 30), (16, 0), MON_FRI,
                    "Asia/Jerusalem"), daily_tasks=9),
    Person("priya", "Priya", "Raman", "annotator",
           _profile("junior", {"bounding_boxes": 3, "sentiment": 2, "ner": 2}, ["en", "hi", "ta"], 40, (10, 0),
                    (18, 0), MON_FRI, "Asia/Kolkata"), daily_tasks=10),
    Person("mateo", "Mateo", "Silva", "annotator",
           _profile("junior", {"sentiment": 2, "bounding_boxes": 2}, ["es", "pt", "en"], 20, (13, 0), (17, 0),
                    MON_FRI, "America/Bogota"), daily_tasks=6),
    Person("youssef", "Youssef", "Benali", "annotator",
           _profile("senior", {"ner": 4, "bounding_boxes": 4}, ["ar", "fr", "en"], 40, (9, 0), (17, 0), MON_FRI,
                    "Africa/Casablanca"), daily_tasks=9),
    Person("jan", "Jan", "Kowalski", "annotator",
           _profile("junior", {"bounding_boxes": 2, "sentiment": 2}, ["pl", "en", "de"], 30, (12, 0), (18, 0),
                    MON_SAT, "Europe/Warsaw"), daily_tasks=8),
]
MANAGER_TIMEZONE = "Europe/London"


def credentials():
    """(username, password, role, name) of every demo account, for the command's help and its closing table."""
    roles = {"admin": "admin (superuser)", "manager": "manager of the three projects"}
    rows = []
    for person in PEOPLE:
        role = roles.get(person.role) or (
            f"{person.profile['seniority']} {person.role}" if person.profile else person.role)
        rows.append((person.username, person.password, role, person.full_name))
    return rows


# --- the projects ---------------------------------------------------------------------------------------------------

SENTIMENT, NEWS, STREET = "demo-product-reviews", "demo-news-entities", "demo-street-scenes"
DEMO_SLUGS = (SENTIMENT, NEWS, STREET)

MEMBERS = {
    SENTIMENT: {"annotator": ["lucia", "noam", "priya", "mateo", "jan"]},
    NEWS: {"annotator": ["lucia", "noam", "priya", "youssef"]},
    STREET: {"annotator": ["priya", "mateo", "youssef", "jan"]},
}
for _members in MEMBERS.values():
    _members.update({"reviewer": ["amira", "tomas"], "manager": ["daniel"]})

PROJECTS = {
    SENTIMENT: dict(
        name="Product reviews — sentiment", task_type="classification",
        description="Customer reviews from the shop, labelled positive, neutral or negative. Two annotators per "
                    "review; a quarter of the submissions are reviewed.",
        label_schema={"labels": [
            {"value": "positive", "name": "Positive", "hotkey": "1", "color": "#3cb44b"},
            {"value": "neutral", "name": "Neutral", "hotkey": "2", "color": "#a9a9a9"},
            {"value": "negative", "name": "Negative", "hotkey": "3", "color": "#e6194b"},
        ]},
        overlap=2, gold_rate=0.1, review_mode="sample", review_sample_rate=0.25, sampling="uncertainty",
        lease_minutes=20,
        guideline_text=(
            "Label the opinion the customer expresses about the product.\n\n"
            "- Positive: the customer is satisfied overall.\n"
            "- Negative: the customer is dissatisfied overall (sarcasm counts as what it means, not what it "
            "says).\n"
            "- Neutral: no opinion, only facts, or praise and complaint in equal measure.\n\n"
            "Delivery and packaging comments count only when the review says nothing about the product. Skip a "
            "review in a language you do not read."),
    ),
    NEWS: dict(
        name="News entities (NER)", task_type="text_spans",
        description="Short wire-style sentences in English, Spanish, Arabic and Hebrew. Mark people, "
                    "organisations, places and dates. Every submission is reviewed.",
        label_schema={"labels": [
            {"value": "PER", "name": "Person", "hotkey": "p", "color": "#4363d8"},
            {"value": "ORG", "name": "Organisation", "hotkey": "o", "color": "#f58231"},
            {"value": "LOC", "name": "Location", "hotkey": "l", "color": "#3cb44b"},
            {"value": "DATE", "name": "Date", "hotkey": "d", "color": "#911eb4"},
        ]},
        overlap=1, gold_rate=0.1, review_mode="all", sampling="sequential", lease_minutes=45,
        guideline_text=(
            "Mark every mention of a person (PER), organisation (ORG), place (LOC) and date or weekday (DATE).\n\n"
            "- A span covers the whole name and nothing else: no surrounding spaces or punctuation.\n"
            "- Hebrew and Arabic prepositions written onto a word (ב, ל, ו / ب, ل) stay outside the span.\n"
            "- Only label sentences in a language you read; they are routed to you by language."),
    ),
    STREET: dict(
        name="Street scenes — cars and people", task_type="bounding_boxes",
        description="Frames from a street camera. Draw a tight box around every car and every person.",
        label_schema={"labels": [
            {"value": "car", "name": "Car", "hotkey": "c", "color": "#e6194b"},
            {"value": "person", "name": "Person", "hotkey": "p", "color": "#4363d8"},
        ], "options": {"max_boxes": 12}},
        overlap=1, gold_rate=0.1, review_mode="all", sampling="sequential", lease_minutes=60,
        guideline_text=(
            "Draw one tight box per car and per person, wheels and heads included.\n\n"
            "- Partly hidden objects: box the full extent you can infer.\n"
            "- Reflections, posters and mannequins are not people.\n"
            "- Skip a frame that is blank or corrupt; the manager removes it."),
    ),
}

NEWS_GUIDELINE_V2 = PROJECTS[NEWS]["guideline_text"] + (
    "\n\nChanged in version 2:\n"
    "- Titles and honorifics (Dr., Prof., Mr., Ms.) are not part of the PER span: “Dr. Maria Okafor” → "
    "“Maria Okafor”.\n"
    "- A weekday counts as DATE without the preposition: “on Monday” → “Monday”.")

GATES = {
    SENTIMENT: [("agreement", "gte", 0.6, 40, None), ("gold_accuracy", "gte", 0.85, 20, None),
                ("acceptance_rate", "gte", 0.9, 30, "Week 1 — electronics")],
    NEWS: [("gold_accuracy", "gte", 0.8, 15, None), ("rework_rate", "lte", 0.15, 30, None)],
    STREET: [("acceptance_rate", "gte", 0.85, 25, None), ("sanity_pass_rate", "gte", 0.98, 50, None)],
}

# name, priority, tasks (full, small), released at setup (True), on the second day ("day2") or never (False)
BATCHES = {
    SENTIMENT: [("Week 1 — electronics", 10, (40, 12), True), ("Week 2 — home and kitchen", 5, (40, 8), "day2"),
                ("Week 3 — fashion", 0, (20, 5), False)],
    NEWS: [("Wire stories A", 10, (60, 14), True), ("Wire stories B", 5, (50, 8), True)],
    STREET: [("Pilot — 12 frames", 20, (12, 4), True), ("Downtown", 10, (80, 16), True)],
}
# The earlier weeks (before the replayed days): per project a batch finished then, its work written in bulk.
# weeks, then tasks per project, (full, small)
ARCHIVE_WEEKS = (4, 2)
ARCHIVE_TASKS = {SENTIMENT: (150, 16), NEWS: (90, 10), STREET: (45, 6)}
ARCHIVE_BATCH = {SENTIMENT: "Pilot — earlier weeks", NEWS: "Wire stories — earlier weeks",
                 STREET: "Suburbs — earlier weeks"}
ARCHIVE_STREET_FIRST = 500  # frame numbers of the earlier weeks' street scenes

# A product review takes a fraction of the time of a sentence or a frame: it uses less of the day.
TASK_COST = {SENTIMENT: 0.4, NEWS: 1.0, STREET: 1.0
}


# --- content: product reviews ---------------------------------------------------------------------------------------

PRODUCTS = {
    "Week 1 — electronics": ["wireless headphones", "e-reader", "phone case", "USB-C charger", "webcam",
                             "smartwatch", "Bluetooth speaker", "mechanical keyboard", "power bank", "gaming mouse"],
    "Week 2 — home and kitchen": ["kettle", "blender", "air fryer", "coffee grinder", "robot vacuum", "desk lamp",
                                  "frying pan", "toaster", "duvet", "office chair"],
    "Week 3 — fashion": ["running shoes", "rain jacket", "backpack", "wool scarf", "pair of sunglasses",
                         "leather belt", "pair of winter boots", "denim jacket"],
}
REVIEW_TEMPLATES = {
    "positive": [
        "The {p} arrived two days early and works perfectly.",
        "Honestly the best {p} I have owned. Worth every cent.",
        "Setup took five minutes and the {p} has been flawless since.",
        "Great build quality: the {p} feels solid and looks better than in the photos.",
        "Bought a second {p} for the office, which says it all.",
        "Support replaced a scratched {p} within a day. Impressed.",
        "Quiet, fast and easy to clean. This {p} is a keeper.",
        "My partner uses the {p} every day and loves it.",
        "Exactly as described, and the {p} is even lighter than I hoped.",
        "Five stars. The {p} does everything I need and more.",
    ],
    "neutral": [
        "The {p} does what it says. Nothing more, nothing less.",
        "Arrived on the expected date. Haven't used the {p} much yet.",
        "It's a {p}. Average quality for the price.",
        "The colour of the {p} is slightly different from the picture; otherwise as described.",
        "Returned the {p} because I ordered the wrong size, so no opinion on the product itself.",
        "Bought the {p} as a gift, so I can't say how it performs.",
        "The {p} is fine for occasional use.",
        "Comparable to my previous {p}. No surprises either way.",
    ],
    "negative": [
        "The {p} stopped working after a week. Very disappointed.",
        "Arrived with a cracked casing and support never answered. Avoid this {p}.",
        "Cheap plastic: the {p} broke the first time I used it.",
        "Way too loud. I would not buy this {p} again.",
        "The {p} looks nothing like the photos and feels flimsy.",
        "Second {p} in a month with the same fault. Asking for a refund.",
        "Instructions missing, parts missing, patience missing. Terrible {p}.",
        "The {p} overheats after ten minutes. Unsafe.",
    ],
}
HARD_REVIEWS = [
    ("Oh great, another {p} that lasts exactly one week. Fantastic.", "negative"),
    ("Five stars for the delivery, one star for the {p} itself.", "negative"),
    ("Not bad at all — I expected much worse from a {p} at this price.", "positive"),
    ("Love the look of the {p}, hate the battery life.", "neutral"),
]
LABEL_SHARES = [("positive", 0.45), ("neutral", 0.22), ("negative", 0.33)]
SENTIMENT_NEIGHBOURS = {"positive": ["neutral"], "negative": ["neutral"], "neutral": ["positive", "negative"]}


def _sentiment_rows(rng, size):
    """Rows for the import and the hidden truth of each review: (row, truth, meta)."""
    out = []
    for batch_index, (batch, _priority, counts, _release) in enumerate(BATCHES[SENTIMENT]):
        n = counts[size]
        products = PRODUCTS[batch]
        pools = {}
        for label, templates in REVIEW_TEMPLATES.items():
            pool = [t.format(p=p) for t in templates for p in products]
            rng.shuffle(pool)
            pools[label] = pool
        special = []
        if batch_index == 0:
            special = [
                ("Nach zwei Tagen kaputt. Der Kundendienst antwortet nicht. Nie wieder!", "negative",
                 {"language": "de"}, {"scenario": "foreign"}),
                ("Llegó en dos días y funciona de maravilla. ¡Muy recomendable!", "positive",
                 {"language": "es"}, {}),
                (f"Terrible {products[1]}. Call me on +44 7700 900123 and I will tell you everything that went "
                 "wrong.", "negative", {}, {"scenario": "clarify_confidential"}),
            ]
        hard = [(t.format(p=products[i % len(products)]), label, {}, {"hard": True})
                for i, (t, label) in enumerate(HARD_REVIEWS)]
        gold_every = 8 if batch_index < 2 else 0
        items = []
        for number in range(n):
            if special:
                items.append(special.pop(0))
            elif number % 9 == 4 and hard:
                items.append(hard.pop(0))
            else:
                label = rng.choices([lab for lab, _ in LABEL_SHARES], [w for _, w in LABEL_SHARES])[0]
                items.append((pools[label].pop(), label, {}, {}))
        for number, (text, label, extra_data, meta) in enumerate(items):
            external_id = f"rev-{batch_index + 1}-{number + 1:03d}"
            row = {"external_id": external_id, "batch": batch, "data": {"text": text, **extra_data},
                   "priority": 2 if meta.get("scenario") else 0}
            if gold_every and number % gold_every == 6 and not meta:
                row.update(is_gold=True, gold_answer={"label": label})
            guess_right = rng.random() < 0.8
            guess = label if guess_right else rng.choice(SENTIMENT_NEIGHBOURS[label])
            score = rng.uniform(0.62, 0.98) if guess_right else rng.uniform(0.34, 0.6)
            row["prediction"] = {"result": {"label": guess}, "score": round(score, 3)}
            out.append((row, {"label": label}, {"language": extra_data.get("language", "en"), **meta}))
    return out


# --- content: news sentences ----------------------------------------------------------------------------------------

NEWS_TEMPLATES = {
    "en": [
        "{PER} was named chief executive of {ORG} on {DATE}.",
        "Heavy rain closed several roads in {LOC}, officials at {ORG} said on {DATE}.",
        "{ORG} will open a research centre in {LOC}, {PER} told reporters.",
        "{PER} and {PER} met in {LOC} to discuss the trade agreement.",
        "Shares of {ORG} fell 4% on {DATE} after the company cut its forecast.",
        "{PER}, the mayor of {LOC}, announced a new night bus network.",
        "Talks between {ORG} and {ORG} resumed in {LOC} on {DATE}.",
        "The festival in {LOC} drew record crowds, organiser {PER} said.",
        "{ORG} recalled 20,000 scooters sold in {LOC} and {LOC}.",
        "On {DATE}, {PER} became the first woman to lead {ORG}.",
        "Engineers from {ORG} arrived in {LOC} to inspect the damaged bridge.",
        "{PER} will testify before a committee in {LOC} on {DATE}.",
    ],
    "es": [
        "{PER} visitó la sede de {ORG} en {LOC} el {DATE}.",
        "Vecinos de {LOC} protestaron el {DATE} contra el cierre de la fábrica de {ORG}.",
        "{ORG} abrirá una oficina en {LOC}, anunció {PER}.",
    ],
    "ar": [
        "زار {PER} مقر {ORG} في {LOC} يوم {DATE}.",
        "أعلنت {ORG} عن افتتاح فرع جديد في {LOC}.",
        "التقى {PER} بممثلي {ORG} في {LOC}.",
    ],
    "he": [
        "נציגי {ORG} נפגשו עם {PER} ב{LOC}.",
        "{ORG} תפתח מרכז מחקר חדש ב{LOC}.",
        "{PER} נבחר לעמוד בראש {ORG} ב{DATE}.",
    ],
}
NEWS_VALUES = {
    "en": {"PER": ["Maria Okafor", "James Whitfield", "Elena Petrova", "Kenji Watanabe", "Ahmed Karimi",
                   "Laura Bennett", "Sofia Lindqvist", "Daniel Mensah", "Hannah Schmidt", "Ravi Shankar"],
           "ORG": ["Northwind Energy", "Apex Biotech", "Harbor Bank", "Meridian Airlines", "Global Rail",
                   "Bluewave Telecom", "Crestline Motors", "Orbis Insurance"],
           "LOC": ["Lisbon", "Nairobi", "Toronto", "Osaka", "Lyon", "Cape Town", "Melbourne", "Rotterdam",
                   "Valparaíso", "Kraków"],
           "DATE": ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "March 3", "June 14"]},
    "es": {"PER": ["José Martínez", "Lucía Gómez", "Íñigo Álvarez", "María José Núñez", "Andrés Peña"],
           "ORG": ["Energías del Norte", "Banco Andino", "Cervecería del Sur", "Construcciones Ibéricas"],
           "LOC": ["Málaga", "Córdoba", "Bogotá", "León", "Cádiz", "Mérida"],
           "DATE": ["lunes", "martes", "miércoles", "jueves", "viernes"]},
    "ar": {"PER": ["محمد العلي", "خالد منصور", "يوسف الحسن", "عمر الخطيب"],
           "ORG": ["شركة النخيل للطاقة", "بنك الواحة", "طيران الأفق"],
           "LOC": ["الرياض", "عمّان", "القاهرة", "الدار البيضاء", "بيروت"],
           "DATE": ["الأحد", "الاثنين", "الثلاثاء", "الأربعاء", "الخميس"]},
    "he": {"PER": ["יוסי לוי", "אבי כהן", "משה פרץ", "דוד מזרחי"],
           "ORG": ["אור אנרגיה", "גלבוע תקשורת", "נמל הצפון"],
           "LOC": ["חיפה", "תל אביב", "ירושלים", "באר שבע"],
           "DATE": ["יום ראשון", "יום שני", "יום שלישי"]},
}
TITLE_SENTENCE = "Dr. {PER} of {ORG} presented the trial results in {LOC} on {DATE}."
_SLOT = re.compile(r"\{(PER|ORG|LOC|DATE)\}")
# Per 20 sentences of a batch: which language each position gets (the rest are English).
NEWS_LANGUAGE_CYCLE = {1: "es", 4: "ar", 7: "he", 11: "es", 14: "ar", 17: "he"}


def sentence_fill(template, values, rng):
    """Fill a template's {PER}/{ORG}/{LOC}/{DATE} slots; return the text and its spans (code-point offsets)."""
    text, spans, position, used = "", [], 0, set()
    for match in _SLOT.finditer(template):
        text += template[position:match.start()]
        label = match.group(1)
        value = rng.choice([v for v in values[label] if v not in used])
        used.add(value)
        spans.append({"start": len(text), "end": len(text) + len(value), "label": label})
        text += value
        position = match.end()
    return text + template[position:], spans


def _news_rows(rng, size):
    out, seen = [], set()
    for batch_index, (batch, _priority, counts, _release) in enumerate(BATCHES[NEWS]):
        for number in range(counts[size]):
            language = NEWS_LANGUAGE_CYCLE.get(number % 20, "en")
            meta = {"language": language}
            if batch_index == 0 and number == 0:
                template, meta["scenario"] = TITLE_SENTENCE, "clarify"
            else:
                template = None
            for _attempt in range(50):
                text, spans = sentence_fill(template or rng.choice(NEWS_TEMPLATES[language]),
                                            NEWS_VALUES[language], rng)
                if text not in seen:
                    break
            seen.add(text)
            if batch_index == 0 and number == 2:
                meta.update(scenario="error", error="missed_object")
            if batch_index == 0 and number == 7:  # Hebrew: the preposition glued to the place name
                meta.update(scenario="error", error="boundary")
            external_id = f"news-{batch_index + 1}-{number + 1:03d}"
            row = {"external_id": external_id, "batch": batch, "data": {"text": text, "language": language},
                   "priority": 2 if meta.get("scenario") else 0}
            truth = {"spans": spans}
            if language == "en" and number % 9 == 5:
                row.update(is_gold=True, gold_answer=truth)
            predicted = [s for s in spans if rng.random() > 0.12]
            row["prediction"] = {"result": {"spans": predicted},
                                 "score": round(rng.uniform(0.7, 0.97) if predicted == spans
                                                else rng.uniform(0.3, 0.65), 3)}
            out.append((row, truth, meta))
    return out


# --- content: street scenes (SVG frames drawn here, no downloads) ---------------------------------------------------

STREET_SCENARIOS = {14: "broken", 15: "clarify_boxes", 16: "error", 17: "fix", 18: "escalate"}
STREET_GOLD = {13, 26, 32, 38, 44, 50}
CAR_COLOURS = ["#c0392b", "#2980b9", "#f1c40f", "#ecf0f1", "#2c3e50", "#27ae60", "#8e44ad", "#d35400"]
SHIRT_COLOURS = ["#e74c3c", "#3498db", "#1abc9c", "#f39c12", "#9b59b6", "#34495e"]


def _overlaps(a, b, margin=6):
    return not (a[0] + a[2] + margin <= b[0] or b[0] + b[2] + margin <= a[0]
                or a[1] + a[3] + margin <= b[1] or b[1] + b[3] + margin <= a[1])


def street_scene(index):
    """The objects of frame `index`, in pixels: deterministic, so the frame can be redrawn at any time."""
    rng = random.Random(f"{SEED}-street-{index}")
    scenario = STREET_SCENARIOS.get(index)
    scene = {"index": index, "name": f"street-{index:03d}", "scenario": scenario, "objects": [], "extras": [],
             "buildings": [], "sky": rng.choice(["#bcd7ee", "#cfe3f3", "#d9dde3"])}
    x = 0
    while x < IMAGE_WIDTH:
        width = rng.randint(70, 150)
        scene["buildings"].append((x, rng.randint(60, 180), width, rng.choice(["#9aa5b1", "#b8a99a", "#8d99ae",
                                                                                 "#a3b1a1"])))
        x += width
    if scenario == "broken":
        return scene
    placed = []

    def place(kind, width, height, bottom_range):
        for _attempt in range(80):
            bottom = rng.randint(*bottom_range)
            box = (rng.randint(8, IMAGE_WIDTH - 8 - width), bottom - height, width, height)
            if not any(_overlaps(box, other) for other in placed):
                placed.append(box)
                colour = rng.choice(CAR_COLOURS if kind == "car" else SHIRT_COLOURS)
                scene["objects"].append({"label": kind, "box": box, "colour": colour})
                return box
        return None

    if scenario == "clarify_boxes":  # a person standing behind a car: drawn first, partly hidden
        car_box = (250, 330, 170, 80)
        person_box = (330, 270, 32, 100)
        scene["objects"] += [{"label": "person", "box": person_box, "colour": "#e74c3c"},
                             {"label": "car", "box": car_box, "colour": "#2c3e50"}]
        placed += [car_box, person_box]
    if scenario == "escalate":  # a mannequin in a shop window: looks like a person, is not one
        shop = scene["buildings"][1]
        scene["extras"].append({"window": (shop[0] + 10, 200, 60, 80), "mannequin": (shop[0] + 26, 208, 28, 68)})
        placed.append((shop[0] + 10, 200, 60, 80))  # nobody stands in front of the window
    for _car in range(rng.randint(1, 3)):
        height = rng.randint(48, 78)
        place("car", min(190, int(height * rng.uniform(1.7, 2.3))), height, (350, 470))
    for _person in range(rng.randint(0 if index % 3 else 1, 3)):
        height = rng.randint(62, 108)
        place("person", rng.randint(28, 36), height, (285, 332))
    scene["objects"].sort(key=lambda o: o["box"][1] + o["box"][3])
    return scene


def street_truth(scene):
    boxes = [_box_fraction(o["box"], o["label"]) for o in sorted(scene["objects"], key=lambda o: o["box"][0])]
    return {"boxes": boxes}


def _box_fraction(box, label):
    x, y, w, h = box
    return {"x": round(x / IMAGE_WIDTH, 4), "y": round(y / IMAGE_HEIGHT, 4),
            "w": math.floor(w / IMAGE_WIDTH * 10000) / 10000, "h": math.floor(h / IMAGE_HEIGHT * 10000) / 10000,
            "label": label}


def _svg_person(box, colour, skin="#f1c27d"):
    x, y, w, h = box
    r = 0.12 * h
    cx = x + w / 2
    leg = w * 0.36
    return (f'<rect x="{x + w * 0.1:.1f}" y="{y + 2 * r:.1f}" width="{w * 0.8:.1f}" height="{h * 0.42:.1f}" '
            f'rx="4" fill="{colour}"/>'
            f'<rect x="{x + w * 0.12:.1f}" y="{y + 2 * r + h * 0.4:.1f}" width="{leg:.1f}" '
            f'height="{h - 2 * r - h * 0.4:.1f}" fill="#2d3436"/>'
            f'<rect x="{x + w - w * 0.12 - leg:.1f}" y="{y + 2 * r + h * 0.4:.1f}" width="{leg:.1f}" '
            f'height="{h - 2 * r - h * 0.4:.1f}" fill="#2d3436"/>'
            f'<circle cx="{cx:.1f}" cy="{y + r:.1f}" r="{r:.1f}" fill="{skin}"/>')


def _svg_car(box, colour):
    x, y, w, h = box
    r = 0.15 * h
    return (f'<rect x="{x + 0.2 * w:.1f}" y="{y:.1f}" width="{0.55 * w:.1f}" height="{0.42 * h:.1f}" rx="8" '
            f'fill="{colour}"/>'
            f'<rect x="{x + 0.26 * w:.1f}" y="{y + 0.07 * h:.1f}" width="{0.43 * w:.1f}" height="{0.26 * h:.1f}" '
            f'rx="4" fill="#dfe6e9" opacity="0.85"/>'
            f'<rect x="{x:.1f}" y="{y + 0.35 * h:.1f}" width="{w:.1f}" height="{0.5 * h:.1f}" rx="10" '
            f'fill="{colour}"/>'
            f'<circle cx="{x + 0.22 * w:.1f}" cy="{y + h - r:.1f}" r="{r:.1f}" fill="#1e272e"/>'
            f'<circle cx="{x + 0.78 * w:.1f}" cy="{y + h - r:.1f}" r="{r:.1f}" fill="#1e272e"/>')


def street_svg(scene):
    """The frame as SVG: sky, buildings, pavement, road, then cars and people exactly inside their boxes."""
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{IMAGE_WIDTH}" height="{IMAGE_HEIGHT}" '
             f'viewBox="0 0 {IMAGE_WIDTH} {IMAGE_HEIGHT}">']
    if scene["scenario"] == "broken":
        parts.append(f'<rect width="{IMAGE_WIDTH}" height="{IMAGE_HEIGHT}" fill="#3d3d3d"/>'
                     '<text x="320" y="245" font-family="sans-serif" font-size="28" fill="#9e9e9e" '
                     'text-anchor="middle">NO SIGNAL</text></svg>\n')
        return "".join(parts)
    parts.append(f'<rect width="{IMAGE_WIDTH}" height="{IMAGE_HEIGHT}" fill="{scene["sky"]}"/>')
    for x, top, width, colour in scene["buildings"]:
        parts.append(f'<rect x="{x}" y="{top}" width="{width}" height="{280 - top}" fill="{colour}"/>')
    for extra in scene["extras"]:
        wx, wy, ww, wh = extra["window"]
        parts.append(f'<rect x="{wx}" y="{wy}" width="{ww}" height="{wh}" fill="#dff9fb" stroke="#636e72"/>')
        parts.append(_svg_person(extra["mannequin"], "#b2bec3", skin="#dfe6e9"))
    parts.append(f'<rect x="0" y="270" width="{IMAGE_WIDTH}" height="50" fill="#b2bec3"/>'
                 f'<rect x="0" y="320" width="{IMAGE_WIDTH}" height="160" fill="#57606f"/>')
    for x in range(10, IMAGE_WIDTH, 80):
        parts.append(f'<rect x="{x}" y="404" width="44" height="6" fill="#f5f6fa"/>')
    for obj in scene["objects"]:
        parts.append(_svg_car(obj["box"], obj["colour"]) if obj["label"] == "car"
                     else _svg_person(obj["box"], obj["colour"]))
    parts.append("</svg>\n")
    return "".join(parts)


def street_image_url(name):
    return f"{settings.MEDIA_URL}{MEDIA_SUBDIR}/{name}.svg"


def street_images_write(indexes, media_root=None):
    """Draw the frames into MEDIA_ROOT/demo/ (only those missing or different); return how many were written."""
    folder = Path(media_root or settings.MEDIA_ROOT) / MEDIA_SUBDIR
    folder.mkdir(parents=True, exist_ok=True)
    written = 0
    for index in indexes:
        scene = street_scene(index)
        path = folder / f"{scene['name']}.svg"
        svg = street_svg(scene)
        if not path.exists() or path.read_text(encoding="utf-8") != svg:
            path.write_text(svg, encoding="utf-8")
            written += 1
    return written


def street_indexes(size):
    total = sum(counts[size] for _name, _priority, counts, _release in BATCHES[STREET])
    return range(total)


def _street_rows(rng, size):
    out, index = [], 0
    for batch, _priority, counts, _release in BATCHES[STREET]:
        for _number in range(counts[size]):
            scene = street_scene(index)
            truth = street_truth(scene)
            meta = {"scenario": scene["scenario"]} if scene["scenario"] else {}
            if scene["scenario"] == "error":
                meta["error"] = "missed_object"
            row = {"external_id": scene["name"], "batch": batch, "priority": 2 if meta else 0,
                   "data": {"image": street_image_url(scene["name"]), "width": IMAGE_WIDTH,
                            "height": IMAGE_HEIGHT}}
            if index in STREET_GOLD:
                row.update(is_gold=True, gold_answer=truth)
            if scene["scenario"] != "broken":
                predicted = [_jitter_box(b, rng, 4) for b in truth["boxes"]
                             if not (b["label"] == "person" and b["h"] < 0.16 and rng.random() < 0.5)]
                row["prediction"] = {"result": {"boxes": predicted},
                                     "score": round(rng.uniform(0.55, 0.97), 3)}
            out.append((row, truth, meta))
            index += 1
    return out


def _jitter_box(box, rng, pixels, grow=0):
    x0 = box["x"] * IMAGE_WIDTH + rng.uniform(-pixels, pixels) - grow
    y0 = box["y"] * IMAGE_HEIGHT + rng.uniform(-pixels, pixels) - grow
    x1 = (box["x"] + box["w"]) * IMAGE_WIDTH + rng.uniform(-pixels, pixels) + grow
    y1 = (box["y"] + box["h"]) * IMAGE_HEIGHT + rng.uniform(-pixels, pixels) + grow
    x0, y0 = max(0.0, x0), max(0.0, y0)
    x1, y1 = min(IMAGE_WIDTH - 1.0, max(x1, x0 + 4)), min(IMAGE_HEIGHT - 1.0, max(y1, y0 + 4))
    return _box_fraction((x0, y0, x1 - x0, y1 - y0), box["label"])


# --- how people label and review --------------------------------------------------------------------------------------

ERROR_RATE = {"junior": 0.2, "senior": 0.08, "lead": 0.04}
SPEED = {"junior": 1.35, "senior": 1.0, "lead": 0.9}
BASE_SECONDS = {"classification": 30, "text_spans": 75, "bounding_boxes": 70}
PER_ITEM_SECONDS = {"classification": 0, "text_spans": 14, "bounding_boxes": 22}
REVIEW_SECONDS = {"classification": 18, "text_spans": 40, "bounding_boxes": 55}
ERROR_KINDS = {
    "text_spans": [("missed_object", 0.35), ("boundary", 0.3), ("wrong_label", 0.25), ("extra_object", 0.1)],
    "bounding_boxes": [("missed_object", 0.35), ("boundary", 0.3), ("wrong_label", 0.15), ("extra_object", 0.2)],
}
REJECT_COMMENTS = {
    "wrong_label": ["Check the label against the guideline.", "Wrong class here — have another look.",
                    "This reads differently; please re-check the label."],
    "missed_object": ["You missed one.", "There is one more to mark.", "Missing an object — look again."],
    "boundary": ["Boxes/spans must be tight.", "The boundary is off; keep only the name itself.",
                 "Too loose — see the guideline on boundaries."],
    "extra_object": ["One mark too many: that one is not an entity/object.", "Remove the extra one."],
}
APPROVE_COMMENTS = ["", "", "", "Good.", "Nice and tight.", "Correct."]
CLARIFICATIONS = {
    "clarify": ("Does the title “Dr.” belong inside the PER span, or only the name?",
                "Only the name: titles stay outside the span. I’ll add it to the guideline today.", False),
    "clarify_confidential": ("This review contains the customer’s phone number. Label it anyway, or flag it "
                             "for removal?",
                             "Label it as usual — phone numbers are masked before delivery. Thanks for "
                             "flagging it.", True),
    "clarify_boxes": ("The person behind the dark car is only half visible. Box the visible part or the whole "
                      "person?", "Box the whole person as far as you can infer it (guideline, partly hidden "
                                 "objects).", False),
}


def _labels_sentiment(truth, meta, seniority, rng, forced=None):
    rate = ERROR_RATE[seniority] * (2.5 if meta.get("hard") else 1)
    if forced or rng.random() < rate:
        return {"label": rng.choice(SENTIMENT_NEIGHBOURS[truth["label"]])}, ["wrong_label"]
    return dict(truth), []


def _word_ranges(text):
    return [(m.start(), m.end()) for m in re.finditer(r"\w+", text)]


def _labels_spans(text, truth, kind, rng):
    spans = [dict(s) for s in truth["spans"]]
    if kind == "missed_object" and spans:
        spans.pop(rng.randrange(len(spans)))
    elif kind == "wrong_label" and spans:
        span = rng.choice(spans)
        span["label"] = rng.choice([lab for lab in ("PER", "ORG", "LOC") if lab != span["label"]])
    elif kind == "boundary" and spans:
        span = rng.choice(spans)
        others = [s for s in spans if s is not span]
        if span["start"] > 0 and not text[span["start"] - 1].isspace():
            start = span["start"] - 1  # a glued preposition (ב, ل) or punctuation pulled into the span
        else:
            words = [r for r in _word_ranges(text) if r[1] <= span["start"]]
            start = words[-1][0] if words else span["start"]
        if start < span["start"] and not any(o["start"] < span["start"] and o["end"] > start for o in others):
            span["start"] = start
        elif " " in text[span["start"]:span["end"]]:
            span["end"] = text.index(" ", span["start"])
        elif span["end"] - span["start"] > 1:
            span["end"] -= 1
    elif kind == "extra_object":
        taken = [(s["start"], s["end"]) for s in spans]
        free = [r for r in _word_ranges(text) if r[1] - r[0] > 3
                and not any(a < r[1] and r[0] < b for a, b in taken)]
        if free:
            start, end = rng.choice(free)
            spans.append({"start": start, "end": end, "label": rng.choice(["ORG", "LOC"])})
    return {"spans": sorted(spans, key=lambda s: (s["start"], s["label"]))}


def _labels_boxes(truth, kind, rng, jitter):
    boxes = [_jitter_box(b, rng, jitter) for b in truth["boxes"]]
    if kind == "missed_object" and boxes:
        people = [b for b in boxes if b["label"] == "person"] or boxes
        boxes.remove(min(people, key=lambda b: b["w"] * b["h"]))
    elif kind == "wrong_label" and boxes:
        box = rng.choice(boxes)
        box["label"] = "person" if box["label"] == "car" else "car"
    elif kind == "boundary" and boxes:
        position = rng.randrange(len(boxes))
        boxes[position] = _jitter_box(truth["boxes"][position], rng, 2, grow=rng.randint(12, 22))
    elif kind == "extra_object":
        boxes.append(_box_fraction((rng.randint(20, 560), rng.randint(80, 180), rng.randint(30, 60),
                                    rng.randint(30, 60)), rng.choice(["car", "person"])))
    return {"boxes": boxes}


# --- the simulation -------------------------------------------------------------------------------------------------


# --- the earlier weeks --------------------------------------------------------------------------------------------


def _archive_days(first_replayed, weeks):
    """The working days (Monday–Friday) of the `weeks` weeks before the first replayed day."""
    start = first_replayed - timedelta(weeks=weeks)
    days = (start + timedelta(days=i) for i in range((first_replayed - start).days))
    return [day for day in days if day.weekday() < 5]


def archive_street_indexes(size):
    return range(ARCHIVE_STREET_FIRST, ARCHIVE_STREET_FIRST + ARCHIVE_TASKS[STREET][size])


def _archive_rows(slug, size, rng):
    """(row, truth) of the earlier weeks' batch of a project, made like the project's own content."""
    batch, out = ARCHIVE_BATCH[slug], []
    if slug == SENTIMENT:
        products = [product for names in PRODUCTS.values() for product in names]
        for i in range(ARCHIVE_TASKS[slug][size]):
            label = rng.choices([lab for lab, _ in LABEL_SHARES], [w for _, w in LABEL_SHARES])[0]
            truth = {"label": label}
            row = {"external_id": f"review-earlier-{i + 1:03d}", "batch": batch,
                   "data": {"text": rng.choice(REVIEW_TEMPLATES[label]).format(p=rng.choice(products))}}
            if i % 10 == 3:
                row.update(is_gold=True, gold_answer=truth)
            out.append((row, truth))
    elif slug == NEWS:
        for i in range(ARCHIVE_TASKS[slug][size]):
            language = NEWS_LANGUAGE_CYCLE.get(i % 20, "en")
            text, spans = sentence_fill(rng.choice(NEWS_TEMPLATES[language]), NEWS_VALUES[language], rng)
            truth = {"spans": spans}
            row = {"external_id": f"news-earlier-{i + 1:03d}", "batch": batch,
                   "data": {"text": text, "language": language}}
            if language == "en" and i % 9 == 5:
                row.update(is_gold=True, gold_answer=truth)
            out.append((row, truth))
    else:
        for index in archive_street_indexes(size):
            scene = street_scene(index)
            truth = street_truth(scene)
            row = {"external_id": scene["name"], "batch": batch,
                   "data": {"image": street_image_url(scene["name"]), "width": IMAGE_WIDTH, "height": IMAGE_HEIGHT}}
            if index % 8 == 0:
                row.update(is_gold=True, gold_answer=truth)
            out.append((row, truth))
    return out


@contextmanager
def _times_as_set(*fields):
    """bulk_create keeps the times set on the rows: auto_now_add would stamp every row with the clock's now."""
    with ExitStack() as stack:
        for model, name in fields:
            stack.enter_context(mock.patch.object(model._meta.get_field(name), "auto_now_add", False))
        yield


class SimulatedClock:
    """Stands in for `django.utils.timezone.now` while the history is replayed."""

    def __init__(self, now):
        self.now = now

    def __call__(self):
        return self.now


class DemoRefused(Exception):
    """The database holds something the demo cannot build around; nothing was changed."""


@dataclass
class DemoResult:
    created: bool
    seconds: float = 0.0
    counts: dict | None = None
    first_day: object = None
    last_day: object = None
    images_written: int = 0
    kept_users: list | None = None


def demo_present():
    return Project.objects.filter(slug__in=DEMO_SLUGS).count() == len(DEMO_SLUGS)


def demo_conflicts():
    """What stands in the way of a fresh demo: some of its projects exist, but not all of them."""
    existing = sorted(Project.objects.filter(slug__in=DEMO_SLUGS).values_list("slug", flat=True))
    return existing if 0 < len(existing) < len(DEMO_SLUGS) else []


def demo_images_restore():
    """Redraw frames of an existing demo whose files are missing (e.g. after MEDIA_ROOT was cleaned)."""
    names = Task.objects.filter(project__slug=STREET).values_list("external_id", flat=True)
    indexes = [int(name.rsplit("-", 1)[1]) for name in names if name and name.startswith("street-")]
    return street_images_write(indexes)


def demo_seed(*, small=False, now=None, log=None):
    """Build the whole demo in one transaction; returns a DemoResult (created=False if it was already there)."""
    if demo_present():
        return DemoResult(created=False, images_written=demo_images_restore())
    started = datetime.now(UTC)
    size = 1 if small else 0
    images_written = street_images_write([*street_indexes(size), *archive_street_indexes(size)])
    builder = _DemoBuilder(size=size, now=now or timezone.now(), log=log or (lambda message: None))
    state = random.getstate()
    random.seed(SEED)  # task random keys and review sampling use the global generator
    # Every transition enqueues a progress recompute for after the commit: some 1,500 of them here, all alike.
    # The builder writes the hourly progress series itself, on the simulated clock; one recompute per project
    # after the commit brings the figures up to date.
    refresh_wanted = set()
    try:
        with mock.patch.object(progress_recompute, "delay", new=refresh_wanted.add):
            with transaction.atomic(), mock.patch("django.utils.timezone.now", new=builder.clock):
                builder.build()
    finally:
        random.setstate(state)
    for project_id in sorted(refresh_wanted):
        progress_recompute.delay(project_id)
    demo_teams()
    return DemoResult(created=True, seconds=(datetime.now(UTC) - started).total_seconds(), counts=builder.counts(),
                      first_day=builder.archive_days[0], last_day=builder.days[-1], images_written=images_written,
                      kept_users=builder.kept_users)


class _DemoBuilder:
    """Builds the demo inside the caller's transaction; `size` picks the full (0) or the small (1) variant."""

    def __init__(self, *, size, now, log):
        self.size, self.real_now, self.log = size, now, log
        self.rng = random.Random(SEED)
        self.days = self._history_days(now.date(), SMALL_HISTORY_DAYS if size else HISTORY_DAYS)
        self.archive_days = _archive_days(self.days[0], ARCHIVE_WEEKS[size])
        setup_day = self.archive_days[0] - timedelta(days=1)
        self.clock = SimulatedClock(datetime.combine(setup_day, time(14, 0), tzinfo=UTC))
        self.horizon = now - timedelta(minutes=75)  # the history stops here; the "live" minutes follow
        self._queue, self._sequence = [], itertools.count()
        self.users, self.profiles, self.projects, self.batches = {}, {}, {}, {}
        self.truth, self.meta, self.task_key = {}, {}, {}
        self.errors = {}  # annotation id -> error codes a careful reviewer would find
        self.claimed = set()  # annotations a reviewer has open
        self.waiting = {}  # assignment id -> {"user", "answered"} while a clarification is pending
        self.done = {}  # (username, day) -> tasks taken
        self.turn = {}  # username -> round-robin position over their projects
        self.scripted = {("youssef", 2): "hold", ("jan", 1): "abandon"}
        self.kept_users = []  # demo usernames that already existed: used as they are
        self.cancel_planned = set()

    # -- time ----------------------------------------------------------------------------------------------------

    @staticmethod
    def _history_days(today, n):
        days, day = [], today
        while len(days) < n:
            day -= timedelta(days=1)
            if day.weekday() < 5:
                days.append(day)
        return sorted(days)

    def _local(self, day, clock_time, tz):
        return datetime.combine(day, clock_time, tzinfo=ZoneInfo(tz)).astimezone(UTC)

    def at(self, when, action, *args, live=False):
        if when >= self.horizon and not live:
            return  # past the end of the replayed days
        heapq.heappush(self._queue, (when, next(self._sequence), action, args))

    def after(self, seconds, action, *args):
        self.at(self.clock.now + timedelta(seconds=seconds), action, *args)

    def _office_hours(self, delay_seconds):
        """When the manager gets to something `delay_seconds` from now: 09:00–17:30 London time, Monday–Friday."""
        tz = ZoneInfo(MANAGER_TIMEZONE)
        local = (self.clock.now + timedelta(seconds=delay_seconds)).astimezone(tz)
        for _day in range(8):
            if local.weekday() < 5 and local.time() < time(9, 0):
                local = datetime.combine(local.date(), time(9, 0), tzinfo=tz) + timedelta(
                    minutes=self.rng.uniform(5, 40))
            if local.weekday() < 5 and local.time() < time(17, 30):
                break
            local = datetime.combine(local.date() + timedelta(days=1), time(9, 0), tzinfo=tz) + timedelta(
                minutes=self.rng.uniform(5, 40))
        return local.astimezone(UTC)

    def advance(self, seconds):
        self.clock.now += timedelta(seconds=seconds)

    def run(self):
        while self._queue:
            when, _n, action, args = heapq.heappop(self._queue)
            self.clock.now = when
            action(*args)

    # -- build ---------------------------------------------------------------------------------------------------

    def build(self):
        self.log("Creating the team, the projects and their tasks …")
        admin = self._users()
        with acting_as(admin):
            self._projects(admin)
            self._archive_weeks()
            self._schedule_days()
            self._live_minutes()
            self.log(f"Replaying {len(self.days)} working days ({self.days[0]:%a %d %b} – {self.days[-1]:%a %d %b}) …")
            self.run()

    def _users(self):
        User = get_user_model()
        for person in PEOPLE:
            user = User.objects.filter(username=person.username).first()
            if user is not None:
                # e.g. an `admin` made with createsuperuser before the demo: kept as it is, password included
                if person.role == "admin" and not user.is_superuser:
                    raise DemoRefused(f"The user “{person.username}” exists and is not a superuser; the demo needs "
                                      "it as its admin. Rename that user or use a fresh database.")
                self.kept_users.append(person.username)
            else:
                user = User(username=person.username, first_name=person.first_name, last_name=person.last_name,
                            email=f"{person.username}@example.org", is_staff=person.role in ("admin", "manager"),
                            is_superuser=person.role == "admin", date_joined=self.clock.now)
                user.set_password(person.password)
                user.save()
            self.users[person.username] = user
        admin = self.users["admin"]
        with acting_as(admin):
            for person in PEOPLE:
                if person.profile and not AnnotatorProfile.objects.filter(user=self.users[person.username]).exists():
                    profile = AnnotatorProfile(user=self.users[person.username], **person.profile)
                    profile.full_clean()
                    profile.save()
                    self.advance(20)
        self.profiles = {profile.user.username: profile for profile in
                         AnnotatorProfile.objects.filter(user__in=self.users.values()).select_related("user")}
        return admin

    def _projects(self, admin):
        manager = self.users["daniel"]
        rows_by_project = {SENTIMENT: _sentiment_rows(self.rng, self.size), NEWS: _news_rows(self.rng, self.size),
                           STREET: _street_rows(self.rng, self.size)}
        last_day = self.days[-1]
        for slug, options in PROJECTS.items():
            project = project_services.project_create(actor=admin, slug=slug, **options)
            self.projects[slug] = project
            self.advance(240)
            for role, usernames in MEMBERS[slug].items():
                for username in usernames:
                    project_services.membership_add(project=project, user=self.users[username], role=role,
                                                    actor=admin)
            self.advance(120)
            for offset, (name, priority, _counts, _release) in enumerate(BATCHES[slug]):
                self.batches[name] = project_services.batch_create(
                    project=project, name=name, actor=admin, priority=priority,
                    due_date=last_day + timedelta(days=4 + 5 * offset))
            for metric, comparator, threshold, min_samples, batch_name in GATES[slug]:
                project_services.gate_create(project=project, actor=admin, metric=metric, comparator=comparator,
                                             threshold=threshold, min_samples=min_samples,
                                             batch=self.batches.get(batch_name))
            self.advance(300)
            rows = rows_by_project[slug]
            for name, *_rest in BATCHES[slug]:
                batch_rows = [row for row, _truth, _meta in rows if row["batch"] == name]
                tasks_import(project=project, actor=admin, source=batch_rows, fmt="json",
                             filename=f"{slug}-{name.split(' —')[0].lower().replace(' ', '-')}.json")
                self.advance(90)
            for row, truth, meta in rows:
                self.truth[row["external_id"]], self.meta[row["external_id"]] = truth, meta
            for pk, external_id in Task.objects.filter(project=project).values_list("pk", "external_id"):
                self.task_key[pk] = external_id
            self.advance(600)
        self.advance(1800)
        for slug in DEMO_SLUGS:
            for name, _priority, _counts, release in BATCHES[slug]:
                if release is True:
                    project_services.batch_activate(batch=self.batches[name], actor=manager)
                    self.advance(45)

    # -- the earlier weeks ---------------------------------------------------------------------------------------

    def _archive_weeks(self):
        """The weeks before the replayed days, so that the dashboards have weeks to show (burndown, heatmap,
        quality over time): per project a batch released at setup, worked through on those working days and
        completed. Its work is written in bulk — assignments, annotation versions, reviews with error types,
        and their events, at the times they happened in each person's working hours — as if taken over from the
        tool the team used before (so without per-row history); at the end of each day the workers' progress
        snapshot (and on Mondays, Wednesdays and Fridays their full quality pass) is written as it would have been."""
        from apps.quality.models import ErrorType

        admin, manager = self.users["admin"], self.users["daniel"]
        plan = {}
        for slug in DEMO_SLUGS:
            project = self.projects[slug]
            rows = _archive_rows(slug, self.size, self.rng)
            batch = project_services.batch_create(project=project, name=ARCHIVE_BATCH[slug], actor=admin, priority=1)
            self.batches[batch.name] = batch
            tasks_import(project=project, actor=admin, source=[row for row, _truth in rows], fmt="json",
                         filename=f"{slug}-earlier-weeks.json")
            project_services.batch_activate(batch=batch, actor=manager)
            truths = {row["external_id"]: truth for row, truth in rows}
            tasks = list(Task.objects.filter(batch=batch).order_by("pk"))
            for i, task in enumerate(tasks):
                day = self.archive_days[i * len(self.archive_days) // len(tasks)]
                plan.setdefault(day, []).append((slug, task, truths[task.external_id]))
        self.error_types = {(e.project_id, e.code): e for e in ErrorType.objects.filter(
            project__in=self.projects.values())}
        self.accepting = []  # (accepted at, task) not yet applied: a review can fall on a later day
        for day in self.archive_days:
            self._archive_day(day, plan.get(day, []))
        self.clock.now = datetime.combine(self.archive_days[-1] + timedelta(days=1), time(8, 0), tzinfo=UTC)
        self._archive_accept(self.clock.now + timedelta(days=2))
        for slug in DEMO_SLUGS:
            batch = self.batches[ARCHIVE_BATCH[slug]]
            project_services.batch_transition(batch=batch, actor=manager, to="in_review")
            project_services.batch_transition(batch=batch, actor=manager, to="completed",
                                              reason="Earlier weeks: accepted by the client at the weekly review.")
            self.advance(60)

    def _archive_result(self, slug, task, truth, seniority):
        """What an annotator of this seniority submits, and the error types a reviewer would find in it."""
        project = self.projects[slug]
        if project.task_type == "classification":
            return _labels_sentiment(truth, {}, seniority, self.rng)
        if self.rng.random() >= ERROR_RATE[seniority] * 0.5:
            if project.task_type == "text_spans":
                return {"spans": [dict(s) for s in truth["spans"]]}, []
            return _labels_boxes(truth, None, self.rng, 3), []
        kind = self.rng.choice(["missed_object", "wrong_label", "boundary"])
        if project.task_type == "text_spans":
            return _labels_spans(task.data["text"], truth, kind, self.rng), [kind]
        return _labels_boxes(truth, kind, self.rng, 3), [kind]

    def _archive_day(self, day, items):
        """One working day of the earlier weeks, written in bulk; then that evening's snapshots."""
        from apps.quality.models import Review

        created = {"assignments": [], "annotations": [], "reviews": [], "events": [], "errors": []}
        work = []  # per assignment: (assignment, [(annotation, review or None, review error codes)])
        for slug, task, truth in items:
            project = self.projects[slug]
            guideline = project.current_guideline
            accepted_at = None
            final = None
            for username in self.rng.sample(MEMBERS[slug]["annotator"], project.overlap):
                user, profile = self.users[username], self.profiles[username]
                start = self._local(day, profile.working_hours_start, profile.timezone)
                end = self._local(day, profile.working_hours_end, profile.timezone)
                submitted = start + (end - start) * self.rng.uniform(0.05, 0.97)
                lead = self._lead_time(username, project, truth)
                assignment = Assignment(task=task, annotator=user, status=AS.APPROVED,
                                        assigned_at=submitted - timedelta(seconds=lead + 20),
                                        started_at=submitted - timedelta(seconds=lead), submitted_at=submitted)
                versions = []
                result, errors = self._archive_result(slug, task, truth, profile.seniority)
                reviewed = project.review_mode == "all" or self.rng.random() < project.review_sample_rate
                at = submitted
                for version in (1, 2):
                    annotation = Annotation(task=task, assignment=assignment, annotator=user, author=user,
                                            version=version, result=result, lead_time_seconds=lead,
                                            guideline=guideline, guideline_version=guideline.version,
                                            status=AN.APPROVED, needs_review=reviewed, is_current=True,
                                            submitted_at=at)
                    review = None
                    if reviewed:
                        reviewer = self.users[self.rng.choice(MEMBERS[slug]["reviewer"])]
                        decided = at + timedelta(hours=self.rng.lognormvariate(0.6, 0.8))
                        # A rejection carries its comment, as the review service requires; picked by the task,
                        # not drawn, so that the seeded history stays the same.
                        comments = REJECT_COMMENTS.get(errors[0], REJECT_COMMENTS["wrong_label"]) if errors else [""]
                        review = Review(annotation=annotation, reviewer=reviewer, started_at=decided - timedelta(
                            seconds=REVIEW_SECONDS[project.task_type]), decided_at=decided,
                            decision="reject" if errors else "approve",
                            comment=comments[task.pk % len(comments)])
                        at = decided
                    versions.append((annotation, review, errors))
                    if not (reviewed and errors):
                        break
                    # rejected: superseded by the annotator's corrected version a few working hours later
                    annotation.status, annotation.is_current = AN.SUPERSEDED, False
                    assignment.rework_count = 1
                    at = at + timedelta(hours=self.rng.uniform(0.5, 3))
                    lead = self._lead_time(username, project, truth, factor=0.6)
                    result, errors = ({"label": truth["label"]} if "label" in truth else dict(truth)), []
                assignment.submitted_at = versions[-1][0].submitted_at
                final = versions[-1][0].result
                accepted_at = max(accepted_at or at, at)
                work.append((assignment, versions))
            self.accepting.append((accepted_at + timedelta(seconds=1), task, final))
        self.clock.now = datetime.combine(day, time(21, 0), tzinfo=UTC)
        with _times_as_set((Assignment, "assigned_at"), (Annotation, "submitted_at"), (Review, "started_at"),
                           (TaskEvent, "at")):
            Assignment.objects.bulk_create([assignment for assignment, _versions in work])
            for assignment, versions in work:
                for annotation, _review, _errors in versions:
                    annotation.assignment = assignment
            Annotation.objects.bulk_create([a for _assignment, versions in work for a, _r, _e in versions])
            reviews = []
            for _assignment, versions in work:
                for annotation, review, _errors in versions:
                    if review is not None:
                        review.annotation = annotation
                        reviews.append(review)
            Review.objects.bulk_create(reviews)
            links = [Review.error_types.through(review_id=review.pk,
                                                errortype_id=self.error_types[(review.annotation.task.project_id,
                                                                               code)].pk)
                     for _assignment, versions in work for _a, review, codes in versions
                     if review is not None and review.decision == "reject" for code in codes]
            Review.error_types.through.objects.bulk_create(links)
            TaskEvent.objects.bulk_create(self._archive_events(work))
        self._archive_accept(self.clock.now)
        for project in self.projects.values():
            progress_snapshot_write(project_id=project.pk, now=self.clock.now)
            if day.weekday() in (0, 2, 4):  # the full quality pass three evenings a week keeps the seed quick
                quality_recompute_full(project_id=project.pk)

    def _archive_events(self, work):
        ET = TaskEvent.Type
        events = []
        for assignment, versions in work:
            task = assignment.task

            def event(type, at, actor, **payload):
                events.append(TaskEvent(project_id=task.project_id, batch_id=task.batch_id, task=task,
                                        assignment=assignment, type=type, actor=actor, at=at, payload=payload))

            event(ET.ASSIGNED, assignment.assigned_at, assignment.annotator)
            event(ET.STARTED, assignment.started_at, assignment.annotator)
            for annotation, review, codes in versions:
                event(ET.SUBMITTED if annotation.version == 1 else ET.RESUBMITTED, annotation.submitted_at,
                      assignment.annotator, annotation=annotation.pk, version=annotation.version)
                if review is not None:
                    event(ET.REVIEW_STARTED, review.started_at, review.reviewer, annotation=annotation.pk)
                    event(ET.APPROVED if review.decision == "approve" else ET.REJECTED, review.decided_at,
                          review.reviewer, annotation=annotation.pk, error_types=codes)
        return events

    def _archive_accept(self, until):
        """Tasks whose last review (or submission) is before `until` become accepted, with their event."""
        due = [(at, task, final) for at, task, final in self.accepting if at <= until]
        self.accepting = [item for item in self.accepting if item[0] > until]
        for at, task, final in due:
            task.status, task.accepted_at, task.final_result = TS.ACCEPTED, at, final
        Task.objects.bulk_update([task for _at, task, _final in due], ["status", "accepted_at", "final_result"])
        with _times_as_set((TaskEvent, "at")):
            TaskEvent.objects.bulk_create([TaskEvent(project_id=task.project_id, batch_id=task.batch_id, task=task,
                                                     type=TaskEvent.Type.ACCEPTED, at=at)
                                           for at, task, _final in due])

    # -- the days ------------------------------------------------------------------------------------------------

    def _schedule_days(self):
        manager_tz = MANAGER_TIMEZONE
        first = self.clock.now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
        # the earlier weeks write their own daily snapshots (_archive_weeks): the hourly ones start with the replay
        hour = max(first, datetime.combine(self.days[0] - timedelta(days=1), time(0, 0), tzinfo=UTC))
        for day in self.days:
            self.at(datetime.combine(day, time(21, 0), tzinfo=UTC), self._quality_snapshots)
        every = 6 if self.size else 2  # hours between progress snapshots while people work; six at night
        while hour < self.real_now:
            if (hour.weekday() < 5 and 4 <= hour.hour <= 22 and hour.hour % every == 0) or hour.hour % 6 == 0:
                self.at(hour, self._progress_snapshots, live=True)
            hour += timedelta(hours=1)
        for day_index, day in enumerate(self.days):
            self.at(datetime.combine(day, time(4, 0), tzinfo=UTC), self._expire_leases)
            for person in PEOPLE:
                if not person.profile:
                    continue
                profile = person.profile
                start = self._local(day, profile["working_hours_start"], profile["timezone"])
                end = self._local(day, profile["working_hours_end"], profile["timezone"])
                start += timedelta(minutes=self.rng.uniform(0, 35))
                if person.role == "annotator":
                    self.at(start, self._annotator_next, person.username, day_index, end)
                else:
                    self.at(start, self._reviewer_next, person.username, end)
            for check in (time(11, 0), time(15, 30)):
                self.at(self._local(day, check, manager_tz), self._manager_rounds, day_index)
            if day_index == 1:
                for slug in DEMO_SLUGS:
                    for name, _priority, _counts, release in BATCHES[slug]:
                        if release == "day2":
                            self.at(self._local(day, time(9, 40), manager_tz), self._batch_activate, name)

    def _progress_snapshots(self):
        for project in self.projects.values():
            progress_snapshot_write(project_id=project.pk, now=self.clock.now)

    def _quality_snapshots(self):
        for project in self.projects.values():
            quality_recompute_full(project_id=project.pk)

    def _expire_leases(self):
        task_services.assignments_expire_due(now=self.clock.now)

    # -- annotators ----------------------------------------------------------------------------------------------

    def _person(self, username):
        return next(p for p in PEOPLE if p.username == username)

    def _gap(self):
        if self.rng.random() < 0.08:
            return self.rng.uniform(25, 50) * 60  # a meeting or a break
        return self.rng.uniform(40, 900)

    def _lead_time(self, username, project, truth, factor=1.0):
        seniority = self.profiles[username].seniority
        items = len(truth.get("spans") or truth.get("boxes") or [])
        seconds = (BASE_SECONDS[project.task_type] + PER_ITEM_SECONDS[project.task_type] * items) \
            * SPEED[seniority] * self.rng.lognormvariate(0, 0.3) * factor
        return max(8.0, round(seconds, 1))

    def _annotator_next(self, username, day, end):
        if self.clock.now >= end:
            return
        user = self.users[username]
        if self._resume_answered(user, day, end) or self._rework(user, day, end):
            return
        person = self._person(username)
        quota = max(2, round(person.daily_tasks * (0.35 if self.size else 1)))
        if self.done.get((username, day), 0) >= quota - 1e-9:
            if self.scripted.get((username, day)) == "abandon":
                self.scripted.pop((username, day))
                task = self._pick(user, self.projects[STREET])
                if task is not None:  # taken at the end of the day and left: the lease runs out overnight
                    assignment = task_services.assignment_assign(task=task, annotator=user)
                    self.advance(12)
                    task_services.assignment_start(assignment=assignment, actor=user)
            return
        slugs = [slug for slug in DEMO_SLUGS if username in MEMBERS[slug]["annotator"]]
        turn = self.turn.get(username, day)
        for offset in range(len(slugs)):
            project = self.projects[slugs[(turn + offset) % len(slugs)]]
            task = self._pick(user, project)
            if task is not None:
                self.turn[username] = turn + offset + 1
                self._take(user, task, day, end)
                return

    def _pick(self, user, project):
        """The next task for `user`, following DESIGN.md's order: gold at the gold rate, then open work of active
        batches by batch priority, task priority and the project's sampling. Sentences are routed by language."""
        profile = self.profiles[user.username]
        mine = Assignment.objects.filter(annotator=user, task__project=project)
        counts = mine.aggregate(total=Count("id"), gold=Count("id", filter=Q(task__is_gold=True)))
        tasks = Task.objects.filter(project=project, batch__status=Batch.Status.ACTIVE).exclude(
            pk__in=mine.values("task_id"))
        if project.task_type == "text_spans":
            tasks = tasks.filter(data__language__in=profile.languages)
        if counts["gold"] < project.gold_rate * (counts["total"] + 1):
            gold = tasks.filter(is_gold=True).exclude(status=TS.CANCELLED).order_by("random_key").first()
            if gold is not None:
                return gold
        live = [*Assignment.LIVE, *Assignment.DONE]
        order = {"uncertainty": ["prediction_score", "id"], "random": ["random_key"]}.get(project.sampling, ["id"])
        candidates = (tasks.filter(is_gold=False, status__in=[TS.OPEN, TS.IN_PROGRESS])
                      .annotate(taken=Count("assignments", filter=Q(assignments__status__in=live)))
                      .filter(taken__lt=project.overlap)
                      .order_by("-batch__priority", "-priority", *order))
        return candidates.first()

    def _take(self, user, task, day, end):
        username = user.username
        key = self.task_key[task.pk]
        meta, truth = self.meta[key], self.truth[key]
        project = task.project
        self.done[(username, day)] = self.done.get((username, day), 0) + TASK_COST[project.slug]
        assignment = task_services.assignment_assign(task=task, annotator=user)
        self.advance(self.rng.uniform(3, 25))
        task_services.assignment_start(assignment=assignment, actor=user)
        scenario = meta.get("scenario")
        languages = self.profiles[username].languages
        if scenario == "broken":
            self.advance(self.rng.uniform(15, 40))
            task_services.assignment_skip(assignment=assignment, actor=user,
                                          reason="The frame is blank (“NO SIGNAL”) — nothing to label.")
            if task.pk not in self.cancel_planned:
                self.cancel_planned.add(task.pk)
                self.at(self._office_hours(self.rng.uniform(40, 100) * 60), self._manager_cancel, task.pk)
            self.after(self._gap() / 3, self._annotator_next, username, day, end)
        elif meta.get("language", "en") not in languages:
            self.advance(self.rng.uniform(8, 25))
            task_services.assignment_skip(assignment=assignment, actor=user,
                                          reason="The review is not in a language I read.")
            self.after(self.rng.uniform(20, 90), self._annotator_next, username, day, end)
        elif scenario in CLARIFICATIONS and not self._asked(task):
            self.advance(self.rng.uniform(40, 120))
            question, answer, confidential = CLARIFICATIONS[scenario]
            clarification = task_services.clarification_ask(task=task, actor=user, question=question,
                                                            confidential=confidential)
            self.waiting[assignment.pk] = {"user": user.pk, "answered": False}
            self.at(self._office_hours(self.rng.uniform(12, 45) * 60), self._manager_answer, clarification.pk,
                    answer, assignment.pk, scenario)
            self.after(self.rng.uniform(30, 120), self._annotator_next, username, day, end)
        elif self.scripted.get((username, day)) == "hold" and project.slug == STREET:
            self.scripted.pop((username, day))
            self.advance(self.rng.uniform(20, 60))
            task_services.assignment_hold(assignment=assignment, actor=user,
                                          reason="The image loads very slowly on my connection; retrying shortly.")
            self.after(self.rng.uniform(6, 12) * 60, self._resume_after_hold, username, assignment.pk, day, end)
        else:
            self.after(self._lead_time(username, project, truth), self._submit, username, assignment.pk, day, end,
                       self.clock.now, False)

    def _asked(self, task):
        return task.clarifications.exists()

    def _resume_after_hold(self, username, assignment_pk, day, end):
        user = self.users[username]
        assignment = task_services.assignment_resume(assignment=Assignment(pk=assignment_pk), actor=user)
        truth = self.truth[self.task_key[assignment.task_id]]
        self.after(self._lead_time(username, assignment.task.project, truth), self._submit, username,
                   assignment_pk, day, end, self.clock.now, False)

    def _resume_answered(self, user, day, end):
        for assignment_pk, waiting in list(self.waiting.items()):
            if waiting["user"] == user.pk and waiting["answered"]:
                del self.waiting[assignment_pk]
                assignment = task_services.assignment_resume(assignment=Assignment(pk=assignment_pk), actor=user)
                truth = self.truth[self.task_key[assignment.task_id]]
                self.after(self._lead_time(user.username, assignment.task.project, truth, 0.7), self._submit,
                           user.username, assignment_pk, day, end, self.clock.now, True)
                return True
        return False

    def _result(self, username, task, correct):
        key = self.task_key[task.pk]
        truth, meta = self.truth[key], self.meta[key]
        seniority = self.profiles[username].seniority
        forced = None if correct else meta.get("error")
        if task.project.task_type == "classification":
            if correct:
                return dict(truth), []
            return _labels_sentiment(truth, meta, seniority, self.rng, forced=forced)
        kind = forced
        if not correct and kind is None and self.rng.random() < ERROR_RATE[seniority] * 1.2:
            kinds = ERROR_KINDS[task.project.task_type]
            kind = self.rng.choices([k for k, _ in kinds], [w for _, w in kinds])[0]
        if meta.get("scenario") == "escalate" and not correct:
            kind = "mannequin"
        if task.project.task_type == "text_spans":
            result = _labels_spans(task.data["text"], truth, kind, self.rng)
        elif kind == "mannequin":
            scene = street_scene(int(key.rsplit("-", 1)[1]))
            result = _labels_boxes(truth, None, self.rng, 2)
            result["boxes"].append(_box_fraction(scene["extras"][0]["mannequin"], "person"))
            kind = "extra_object"
        else:
            if meta.get("scenario") == "fix" and not correct:
                kind = "boundary"
            result = _labels_boxes(truth, kind, self.rng, 1.5 if seniority != "junior" else 3)
        errors = [kind] if kind and result != truth else []
        return result, errors

    def _submit(self, username, assignment_pk, day, end, started, correct):
        user = self.users[username]
        assignment = Assignment.objects.select_related("task__project").get(pk=assignment_pk)
        task = assignment.task
        result, errors = self._result(username, task, correct)
        notes = ""
        if errors and self.rng.random() < 0.15:
            notes = "Not sure about this one."
        elif self.meta[self.task_key[task.pk]].get("hard") and self.rng.random() < 0.5:
            notes = "Mixed signals in the text; went with the overall tone."
        annotation = task_services.assignment_submit(
            assignment=assignment, actor=user, result=result, notes=notes,
            lead_time_seconds=round((self.clock.now - started).total_seconds(), 1))
        self.errors[annotation.pk] = errors
        self.after(self._gap(), self._annotator_next, username, day, end)

    def _rework(self, user, day, end):
        assignment = (Assignment.objects.filter(annotator=user, status=AS.REJECTED)
                      .select_related("task__project").order_by("updated_at", "id").first())
        if assignment is None:
            return False
        task_services.assignment_start(assignment=assignment, actor=user)
        truth = self.truth[self.task_key[assignment.task_id]]
        self.after(self._lead_time(user.username, assignment.task.project, truth, 0.6), self._resubmit,
                   user.username, assignment.pk, day, end, self.clock.now)
        return True

    def _resubmit(self, username, assignment_pk, day, end, started):
        user = self.users[username]
        assignment = Assignment.objects.select_related("task__project").get(pk=assignment_pk)
        result, _errors = self._result(username, assignment.task, correct=True)
        annotation = task_services.assignment_resubmit(
            assignment=assignment, actor=user, result=result, notes="Corrected after the review.",
            lead_time_seconds=round((self.clock.now - started).total_seconds(), 1))
        self.errors[annotation.pk] = []
        self.after(self._gap(), self._annotator_next, username, day, end)

    # -- reviewers -----------------------------------------------------------------------------------------------

    def _review_candidate(self, user):
        profile = self.profiles[user.username]
        lead = profile.seniority == "lead"
        pending = (Annotation.objects.filter(is_current=True, needs_review=True, assignment__status=AS.SUBMITTED,
                                             task__project__in=list(self.projects.values()))
                   .exclude(annotator=user).exclude(pk__in=self.claimed)
                   .exclude(task__status__in=[TS.ACCEPTED, TS.CANCELLED])
                   .select_related("task__project").order_by("submitted_at", "id"))
        if lead:
            escalated = pending.filter(status=AN.ESCALATED).first()
            if escalated is not None:
                return escalated
        for annotation in pending.filter(status=AN.SUBMITTED)[:40]:
            meta = self.meta[self.task_key[annotation.task_id]]
            if meta.get("language", "en") not in profile.languages:
                continue
            if lead and meta.get("scenario") == "escalate":
                continue  # the senior reviewer sees it first and asks the lead
            return annotation
        return None

    def _reviewer_next(self, username, end):
        if self.clock.now >= end:
            return
        user = self.users[username]
        annotation = self._review_candidate(user)
        if annotation is None:
            self.after(self.rng.uniform(15, 40) * 60, self._reviewer_next, username, end)
            return
        self.claimed.add(annotation.pk)
        task_services.review_start(annotation=annotation, reviewer=user)
        seconds = REVIEW_SECONDS[annotation.task.project.task_type] * self.rng.lognormvariate(0, 0.35)
        self.after(seconds, self._review_decide, username, annotation.pk, end)

    def _review_decide(self, username, annotation_pk, end):
        user = self.users[username]
        annotation = Annotation.objects.select_related("task__project").get(pk=annotation_pk)
        self.claimed.discard(annotation_pk)
        key = self.task_key[annotation.task_id]
        meta, truth = self.meta[key], self.truth[key]
        errors = self.errors.get(annotation.pk, [])
        seniority = self.profiles[username].seniority
        forced = meta.get("scenario") in ("error", "fix", "escalate") and annotation.version == 1
        if annotation.status == AN.SUBMITTED and seniority != "lead" and (
                meta.get("scenario") == "escalate" or (meta.get("hard") and self.rng.random() < 0.6)):
            task_services.review_escalate(
                annotation=annotation, reviewer=user,
                comment="Mannequin in the shop window boxed as a person — is that right?"
                if meta.get("scenario") == "escalate" else "Sarcasm or genuine? A second opinion, please.")
        elif not errors:
            task_services.review_approve(annotation=annotation, reviewer=user,
                                         comment=self.rng.choice(APPROVE_COMMENTS))
        elif annotation.status == AN.ESCALATED or meta.get("scenario") == "fix" or (
                errors == ["boundary"] and self.rng.random() < 0.4):
            comment = ("Mannequins are not people; removed the box." if meta.get("scenario") == "escalate"
                       else "Tightened it myself; please keep boxes tight.")
            task_services.review_fix(annotation=annotation, reviewer=user, corrected_result=truth,
                                     error_types=errors, comment=comment)
        elif forced or self.rng.random() < 0.9:
            codes = list(errors)
            if "boundary" in codes and self.rng.random() < 0.3:
                codes.append("guideline_not_followed")
            task_services.review_reject(annotation=annotation, reviewer=user, error_types=codes,
                                        comment=self.rng.choice(REJECT_COMMENTS[errors[0]]))
        else:
            task_services.review_approve(annotation=annotation, reviewer=user)  # the one that slipped through
        self.after(self.rng.uniform(20, 240), self._reviewer_next, username, end)

    # -- the manager and the admin ---------------------------------------------------------------------------

    def _manager_answer(self, clarification_pk, answer, assignment_pk, scenario):
        manager = self.users["daniel"]
        task_services.clarification_answer(clarification=Clarification(pk=clarification_pk), actor=manager,
                                           answer=answer)
        if assignment_pk in self.waiting:
            self.waiting[assignment_pk]["answered"] = True
        if scenario == "clarify":  # the answer changes the rules: pause, publish guideline v2, release again
            batch = Task.objects.get(assignments__pk=assignment_pk).batch
            self.after(120, self._batch_pause, batch.name)
            self.after(20 * 60, self._guideline_v2)
            self.after(26 * 60, self._batch_activate, batch.name)

    def _batch_pause(self, name):
        project_services.batch_pause(batch=self.batches[name], actor=self.users["daniel"])

    def _batch_activate(self, name):
        project_services.batch_activate(batch=self.batches[name], actor=self.users["daniel"])

    def _guideline_v2(self):
        project_services.guideline_add(project=self.projects[NEWS], actor=self.users["admin"], text=NEWS_GUIDELINE_V2)

    def _manager_cancel(self, task_pk):
        task = Task.objects.get(pk=task_pk)
        if task.status not in (TS.ACCEPTED, TS.CANCELLED):
            task_services.task_cancel(task=task, actor=self.users["daniel"],
                                      reason="Broken frame (camera offline); removed from the batch.")

    def _manager_rounds(self, day_index):
        """Twice a day: wrap up the pilot batch once every frame is final; accept a task stuck on one language."""
        manager = self.users["daniel"]
        pilot = Batch.objects.get(pk=self.batches[BATCHES[STREET][0][0]].pk)
        unfinished = pilot.tasks.exclude(status__in=[TS.ACCEPTED, TS.CANCELLED]).count()
        if pilot.status == Batch.Status.ACTIVE and not unfinished:
            project_services.batch_review(batch=pilot, actor=manager)
            self.advance(15 * 60)
            project_services.batch_complete(batch=pilot, actor=manager)
        elif pilot.status == Batch.Status.COMPLETED:
            project_services.batch_deliver(batch=pilot, actor=manager)
        if day_index == len(self.days) - 1:
            stuck = Task.objects.filter(project=self.projects[SENTIMENT], data__language="de",
                                        status=TS.IN_PROGRESS).first()
            usable = [AN.SUBMITTED, AN.APPROVED]
            if stuck is not None and stuck.annotations.filter(is_current=True, status__in=usable).exists():
                task_services.task_accept(task=stuck, actor=manager)

    # -- the last hour: work in flight when the demo opens ---------------------------------------------------

    def _live_minutes(self):
        now = self.real_now
        self.at(now - timedelta(minutes=58), self._expire_leases, live=True)
        self.at(now - timedelta(minutes=40), self._live_review, "amira", live=True)
        self.at(now - timedelta(minutes=26), self._live_clarification, "priya", live=True)
        self.at(now - timedelta(minutes=12), self._live_take, "lucia", SENTIMENT, True, live=True)
        self.at(now - timedelta(minutes=4), self._live_take, "noam", NEWS, False, live=True)

    def _live_review(self, username):
        user = self.users[username]
        annotation = self._review_candidate(user)
        if annotation is not None:
            task_services.review_start(annotation=annotation, reviewer=user)

    def _live_take(self, username, slug, start):
        user = self.users[username]
        slugs = [slug] + [other for other in DEMO_SLUGS if other != slug and username in MEMBERS[other]["annotator"]]
        task = next(filter(None, (self._pick(user, self.projects[s]) for s in slugs)), None)
        if task is not None:
            assignment = task_services.assignment_assign(task=task, annotator=user)
            if start:
                self.advance(20)
                task_services.assignment_start(assignment=assignment, actor=user)
        return task

    LIVE_QUESTIONS = {
        NEWS: "A company name is used as a place here (“at the … offices”). ORG or LOC?",
        STREET: "Two people overlap almost completely. One box or two?",
        SENTIMENT: "The customer praises the product but asks for a refund. Positive or neutral?",
    }

    def _live_clarification(self, username):
        user = self.users[username]
        for slug in (NEWS, STREET, SENTIMENT):
            if username not in MEMBERS[slug]["annotator"]:
                continue
            task = self._pick(user, self.projects[slug])
            if task is None:
                continue
            assignment = task_services.assignment_assign(task=task, annotator=user)
            self.advance(15)
            task_services.assignment_start(assignment=assignment, actor=user)
            self.advance(95)
            task_services.clarification_ask(task=task, actor=user, question=self.LIVE_QUESTIONS[slug])
            return

    # -- summary -------------------------------------------------------------------------------------------------

    def counts(self):
        from apps.quality.models import Review

        projects = {}
        for slug, project in self.projects.items():
            by_status = dict(Task.objects.filter(project=project).values_list("status").annotate(n=Count("id"))
                             .order_by())
            projects[slug] = {"name": project.name, "tasks": sum(by_status.values()), "by_status": by_status,
                              "batches": dict(project.batches.values_list("name", "status"))}
        return {
            "projects": projects,
            "assignments": Assignment.objects.count(),
            "annotations": Annotation.objects.count(),
            "reviews": Review.objects.count(),
            "clarifications": Clarification.objects.count(),
            "events": TaskEvent.objects.count(),
            "event_days": len({at.date() for at in TaskEvent.objects.values_list("at", flat=True)}),
        }


# --- teams: the team view compares them ------------------------------------------------------------------------------

# The shifts by the annotators' working hours in UTC: the first three start before 09:00 UTC, the others later.
DEMO_TEAMS = {"Morning shift": ("priya", "noam", "lucia"), "Evening shift": ("youssef", "jan", "mateo")}


def demo_teams():
    """The demo's two shifts (annotators/Team); made once: teams that exist already are left as they are."""
    from apps.annotators.models import Team

    for name, usernames in DEMO_TEAMS.items():
        team, created = Team.objects.get_or_create(name=name, defaults={"description": "Demo shift"})
        if created:
            team.members.set(get_user_model().objects.filter(username__in=usernames))
