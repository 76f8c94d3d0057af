"""Exporting a project's results, streamed in constant memory, each record with its provenance.

Formats: JSON (an array), JSONL, CSV, COCO (bounding boxes) and CoNLL-2003 BIO (text spans).
Tasks are read in id-ordered pages of PAGE; each page's annotations and reviews come in a few more queries
(never one per task), and each page leaves as one chunk, so the response is a few hundred writes, not millions.
"""

import functools
import json
import re
from array import array
from collections import defaultdict
from dataclasses import dataclass
from json.encoder import encode_basestring

from django.db.models import TextField
from django.db.models.functions import Cast
from django.utils.translation import gettext as _

from apps.core.csv_tools import CSVChunks, spreadsheet_safe
from apps.core.errors import ValidationError
from apps.projects.label_schema import TaskType
from apps.projects.models import Batch
from apps.quality.models import Review
from apps.quality.scores import task_agreement

from .models import Annotation, Task

FORMATS = ("json", "jsonl", "csv", "coco", "conll")
PAGE = 2000
CSV_COLUMNS = ["id", "external_id", "batch", "status", "is_gold", "data", "result", "annotators", "reviewers",
               "decisions", "guideline_version", "agreement", "accepted_at"]
FIX = Annotation.Source.REVIEW_FIX
# Ideographs, kana and CJK punctuation are written without spaces between words: one token per character, as
# Chinese and Japanese NER corpora have it. Everything else is split at whitespace.
_CJK = "\u3001-\u303f\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef\U00020000-\U0002fa1f"
_TOKEN = re.compile(rf"[{_CJK}]|[^\s{_CJK}]+")
_SPACE = re.compile(r"\s+")

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_ONE_LINE = {0x85: "\\u0085", 0x2028: "\\u2028", 0x2029: "\\u2029"}
COCO_PROVENANCE_KEY = "labelportal"  # the image records' extra key (COCO readers ignore keys they do not know)
CONLL_COMMENT_PREFIX = "# labelportal = "


@dataclass
class ExportParams:
    format: str
    statuses: list
    batch: Batch | None
    deliver: bool
    provenance: bool = True  # COCO and CoNLL: False leaves out the provenance that standard readers do not expect


def export_params(*, project, query):
    """Parse `?format=&status=&batch=&deliver=&provenance=` into ExportParams, or raise ValidationError (400)."""
    fmt = (query.get("format") or "json").lower()
    errors = {}
    if fmt not in FORMATS:
        errors["format"] = [_("Use one of: %(formats)s.") % {"formats": ", ".join(FORMATS)}]
    elif fmt == "coco" and project.task_type != TaskType.BOUNDING_BOXES:
        errors["format"] = [_("COCO export is for bounding-box projects.")]
    elif fmt == "conll" and project.task_type != TaskType.TEXT_SPANS:
        errors["format"] = [_("CoNLL export is for text-span projects.")]
    raw_status = query.get("status") or Task.Status.ACCEPTED
    statuses = Task.Status.values if raw_status == "all" else [v.strip() for v in raw_status.split(",") if v.strip()]
    if not statuses or set(statuses) - set(Task.Status.values):
        errors["status"] = [_("Use task statuses separated by commas, or 'all'.")]
    batch = None
    if query.get("batch"):
        try:
            batch = project.batches.get(pk=int(query["batch"]))
        except (ValueError, Batch.DoesNotExist):
            errors["batch"] = [_("No such batch in this project.")]
    deliver = str(query.get("deliver", "")).lower() in {"1", "true", "yes"}
    if deliver and batch is None and "batch" not in errors:
        errors["deliver"] = [_("Delivery needs a batch: add ?batch=<id>.")]
    provenance = str(query.get("provenance") or "true").strip().lower()
    if provenance not in {"1", "true", "yes", "0", "false", "no"}:
        errors["provenance"] = [_("Use true or false.")]
    if errors:
        raise ValidationError(_("Invalid export parameters."), errors=errors)
    return ExportParams(format=fmt, statuses=statuses, batch=batch, deliver=deliver,
                        provenance=provenance in {"1", "true", "yes"})


# --- reading ------------------------------------------------------------------------------------------------------
# JSON and timestamps are read as the database writes them as text and copied into the output: decoding a million
# JSON documents and datetimes only to encode them again was most of an export's time.


def _text(field):
    return Cast(field, output_field=TextField())


def _iso_text(text):
    """A timestamp the database wrote as text (PostgreSQL: '2024-06-01 12:00:00.25+00'; SQLite, whose values
    Django keeps in UTC: '2024-06-01 12:00:00.25') in ISO 8601 as the API writes it: 'T', and UTC as Z."""
    if text is None:
        return None
    text = text.replace(" ", "T", 1)
    if text.endswith("+00"):
        return text[:-3] + "Z"
    if len(text) > 19 and text[-3] in "+-":
        return text + ":00"
    return text if len(text) > 19 and text[-6] in "+-" else text + "Z"


def _selected(project, params):
    tasks = Task.objects.filter(project=project, status__in=params.statuses)
    if params.batch is not None:
        tasks = tasks.filter(batch=params.batch)
    return tasks


def _pages(project, params, *fields, **annotations):
    """Lists of value tuples of the selected tasks (the first value is the id), in id order, PAGE at a time
    (keyset pagination), each with the queryset that selects that page's tasks."""
    tasks = _selected(project, params).annotate(**annotations) if annotations else _selected(project, params)
    last = 0
    while True:
        page = list(tasks.filter(id__gt=last).order_by("id").values_list("id", *fields)[:PAGE])
        if not page:
            return
        yield page, _selected(project, params).filter(id__gte=page[0][0], id__lte=page[-1][0])
        last = page[-1][0]


def _provenance(page_tasks):
    """For a page of tasks (a queryset), by task id: current annotations, decided reviews, and the results the
    annotators themselves last submitted (a reviewer's fix replaces the result, not the annotator's own version)."""
    annotations = defaultdict(list)
    fixed = []
    for row in (Annotation.objects.filter(task__in=page_tasks.values("id"), is_current=True)
                .annotate(result_text=_text("result"), submitted_text=_text("submitted_at"))
                .order_by("task_id", "assignment_id")
                .values_list("task_id", "assignment_id", "annotator__username", "author__username", "version",
                             "source", "status", "result_text", "guideline_version", "lead_time_seconds",
                             "submitted_text")):
        annotations[row[0]].append(row)
        if row[5] == FIX:
            fixed.append(row[1])
    own_before_fix = {}
    if fixed:
        for assignment_id, result in (Annotation.objects.filter(assignment_id__in=fixed).exclude(source=FIX)
                                      .order_by("assignment_id", "version").values_list("assignment_id", "result")):
            own_before_fix[assignment_id] = result  # the last one wins
    reviews = defaultdict(list)
    coded = []
    for row in (Review.objects.filter(annotation__task__in=page_tasks.values("id"), decided_at__isnull=False)
                .annotate(decided_text=_text("decided_at"))
                .order_by("decided_at", "id")
                .values_list("annotation__task_id", "id", "reviewer__username", "decision", "comment",
                             "decided_text", "annotation__annotator__username", "annotation__version")):
        reviews[row[0]].append(row)
        if row[3] in (Review.Decision.REJECT, Review.Decision.FIX):
            coded.append(row[1])
    codes = defaultdict(list)
    if coded:
        for review_id, code in (Review.error_types.through.objects.filter(review_id__in=coded)
                                .order_by("review_id", "errortype__code").values_list("review_id", "errortype__code")):
            codes[review_id].append(code)
    return annotations, own_before_fix, reviews, codes


_RECORD_FIELDS = ("external_id", "batch_id", "status", "is_gold", "data_text", "result_text", "accepted_text")


def _records(project, params, fields=_RECORD_FIELDS, **annotations):
    """Pages of records, one per selected task: (task values, batch name, current annotations, decided reviews,
    guideline version, agreement), JSON values as JSON text; and the error-type codes of the page's reviews by
    review id. The task values are the id and `fields`, which begin with external_id and batch_id."""
    batch_names = dict(Batch.objects.filter(project=project).values_list("id", "name"))
    task_type = project.task_type
    if fields is _RECORD_FIELDS:
        annotations = {"data_text": _text("data"), "result_text": _text("final_result"),
                       "accepted_text": _text("accepted_at")}
    for page, page_tasks in _pages(project, params, *fields, **annotations):
        by_task, own_before_fix, by_task_reviews, codes = _provenance(page_tasks)
        records = []
        for task in page:
            annotations = by_task.get(task[0], ())
            guideline_version = agreement = None
            if annotations:
                versions = [a[8] for a in annotations if a[8] is not None]
                guideline_version = max(versions) if versions else None
                if len(annotations) > 1:
                    # METRICS.md: agreement between each annotator's own latest submission
                    own = [own_before_fix.get(a[1]) if a[5] == FIX else json.loads(a[7]) for a in annotations]
                    agreement = task_agreement(task_type, [r for r in own if r is not None])
            records.append((task, batch_names.get(task[2]), annotations, by_task_reviews.get(task[0], ()),
                            guideline_version, agreement))
        yield records, codes


# --- writing ------------------------------------------------------------------------------------------------------

_RECORD = ('{"id":%d,"external_id":%s,"batch":%s,"status":%s,"is_gold":%s,"data":%s,"result":%s,"accepted_at":%s,'
           '"provenance":{"annotators":[%s],"annotations":[%s],"reviews":[%s],"guideline_version":%s,'
           '"agreement":%s}}')
_ANNOTATION = ('{"annotator":%s,"author":%s,"version":%d,"source":%s,"status":%s,"result":%s,"guideline_version":%s,'
               '"lead_time_seconds":%s,"submitted_at":%s}')
_REVIEW = ('{"reviewer":%s,"decision":%s,"comment":%s,"error_types":[%s],"decided_at":%s,"annotator":%s,'
           '"version":%d}')


def _string(value):
    return "null" if value is None else encode_basestring(value)


_name = functools.lru_cache(maxsize=4096)(_string)  # usernames, batch names, statuses: few values, many times


def _number(value):
    return "null" if value is None else repr(value)


def _annotation_json(a):
    return _ANNOTATION % (_name(a[2]), _name(a[3]), a[4], _name(a[5]), _name(a[6]), a[7], _number(a[8]),
                          _number(a[9]), _string(_iso_text(a[10])))


def _records_json(records, codes):
    """The page's records as JSON texts (written by hand around the JSON texts the database gave)."""
    lines = []
    for (task_id, external_id, _batch_id, status, is_gold, data, result, accepted_at), batch, annotations, reviews, \
            guideline_version, agreement in records:
        lines.append(_RECORD % (
            task_id, _string(external_id), _name(batch), _name(status), "true" if is_gold else "false", data,
            result or "null", _string(_iso_text(accepted_at)),
            ",".join(map(_name, sorted({a[2] for a in annotations}))),
            ",".join(map(_annotation_json, annotations)),
            ",".join(_REVIEW % (_name(r[2]), _name(r[3]), _string(r[4]), ",".join(map(_name, codes.get(r[1], ()))),
                                _string(_iso_text(r[5])), _name(r[6]), r[7]) for r in reviews),
            _number(guideline_version), _number(agreement),
        ))
    return lines


def _provenance_compact(record, codes):
    """The provenance of one record as a dict, for the formats whose records have no place of their own for it
    (COCO's image records, CoNLL's comment lines): the task, who annotated and reviewed it, each decision (on
    whose work, which version, with which error types; the reviewers' comments are in the JSON export), the
    guideline version and the agreement."""
    task, batch, annotations, reviews, guideline_version, agreement = record
    return {
        "task_id": task[0], "external_id": task[1], "batch": batch,
        "annotators": sorted({a[2] for a in annotations}),
        "reviewers": sorted({r[2] for r in reviews}),
        "decisions": [{"reviewer": r[2], "annotator": r[6], "version": r[7], "decision": r[3],
                       "error_types": codes.get(r[1], []), "decided_at": _iso_text(r[5])} for r in reviews],
        "guideline_version": guideline_version,
        "agreement": agreement,
    }


def _jsonl(project, params):
    for records, codes in _records(project, params):
        yield "\n".join(_records_json(records, codes)) + "\n"


def _json(project, params):
    separator = "["
    for records, codes in _records(project, params):
        yield separator + ",\n".join(_records_json(records, codes))
        separator = ",\n"
    yield "[]\n" if separator == "[" else "]\n"


def _csv(project, params):
    chunks = CSVChunks()
    writer, flush = chunks.writer, chunks.flush
    _cell = spreadsheet_safe
    writer.writerow(CSV_COLUMNS)
    yield flush()
    for records, _codes in _records(project, params):
        writer.writerows([
            task_id, _cell(external_id or ""), _cell(batch), status, is_gold, data, result or "",
            _cell(";".join(sorted({a[2] for a in annotations}))), _cell(";".join(sorted({r[2] for r in reviews}))),
            ";".join(r[3] for r in reviews), "" if guideline_version is None else guideline_version,
            "" if agreement is None else round(agreement, 6), _iso_text(accepted_at) or "",
        ] for (task_id, external_id, _batch_id, status, is_gold, data, result, accepted_at), batch, annotations,
            reviews, guideline_version, agreement in records)
        yield flush()


def _coco(project, params):
    """COCO object detection: images, annotations (absolute pixel [x, y, w, h], and the box as a polygon) and
    categories — the schema's labels, then any label a result still uses after it left the schema."""
    labels = [label["value"] for label in project.label_schema["labels"]]
    category = {value: n for n, value in enumerate(labels, start=1)}
    yield '{"info":' + _dumps({"description": f"LabelPortal export of {project.name}", "version": "1.0"})
    yield ',"licenses":[],"images":['
    # The annotations are a second pass; it reads exactly the images listed, even if tasks change in between.
    image_ids = array("q")
    separator = ""
    for records, codes in _coco_pages(project, params):
        images = []
        for record in records:
            task_id, _external_id, _batch_id, data = record[0]
            image = {"id": task_id, "file_name": data.get("image"), "width": data.get("width"),
                     "height": data.get("height")}
            if params.provenance:
                image[COCO_PROVENANCE_KEY] = _provenance_compact(record, codes)
            images.append(image)
            image_ids.append(task_id)
        yield separator + ",".join(map(_dumps, images))
        separator = ","
    yield '],"annotations":['
    separator, next_id = "", 1
    for start in range(0, len(image_ids), PAGE):
        page = Task.objects.filter(id__in=image_ids[start:start + PAGE].tolist()).order_by("id").values_list(
            "id", "data", "final_result")
        annotations = []
        for task_id, data, final_result in page:
            width, height = data.get("width") or 0, data.get("height") or 0
            for box in (final_result or {}).get("boxes", []):
                x, y, w, h = (round(box["x"] * width, 2), round(box["y"] * height, 2), round(box["w"] * width, 2),
                              round(box["h"] * height, 2))
                if box["label"] not in category:
                    category[box["label"]] = len(category) + 1
                annotations.append({
                    "id": next_id, "image_id": task_id, "category_id": category[box["label"]], "bbox": [x, y, w, h],
                    "area": round(w * h, 2), "iscrowd": 0,
                    "segmentation": [[x, y, round(x + w, 2), y, round(x + w, 2), round(y + h, 2), x, round(y + h, 2)]],
                })
                next_id += 1
        if annotations:
            yield separator + ",".join(map(_dumps, annotations))
            separator = ","
    categories = [{"id": n, "name": value, "supercategory": "object"} for value, n in category.items()]
    yield '],"categories":' + _dumps(categories) + "}\n"


def _coco_pages(project, params):
    if params.provenance:
        yield from _records(project, params, ("external_id", "batch_id", "data"))
    else:
        for page, _tasks in _pages(project, params, "external_id", "batch_id", "data"):
            yield [(task, None, (), (), None, None) for task in page], {}


def _owned_segments(spans, length):
    """Where the spans lie, as sorted, disjoint (start, end, span number) segments. Where spans overlap, the one
    that starts first (the longer on a tie) keeps the characters: BIO cannot nest, the outer entity stays."""
    ordered = sorted(
        ((max(0, s["start"]), min(length, s["end"]), n) for n, s in enumerate(spans)), key=lambda s: (s[0], -s[1]))
    segments, covered = [], 0
    for start, end, n in ordered:
        start = max(start, covered)
        if start < end:
            segments.append((start, end, n))
            covered = end
    return segments


def conll_bio_lines(text, spans):
    """`word _ _ TAG` lines of `text` with BIO tags from character spans (end exclusive).

    Words are split at whitespace (ideographs and kana: one per character), and also where an entity begins or
    ends inside a word ("pre-Obama" with a span on "Obama" gives "pre-" O, "Obama" B-PER), so the tags give the
    spans back exactly. Spaces in a label become underscores: a CoNLL line has four space-separated columns.
    """
    spans = [s for s in spans or [] if isinstance(s.get("start"), int) and isinstance(s.get("end"), int)]
    segments = _owned_segments(spans, len(text))
    tags = {n: _SPACE.sub("_", str(spans[n]["label"])) for _s, _e, n in segments}
    lines, previous, k = [], None, 0
    for match in _TOKEN.finditer(text):
        start, end = match.span()
        while k < len(segments) and segments[k][1] <= start:
            k += 1
        j, position = k, start
        while position < end:
            if j < len(segments) and segments[j][0] <= position:
                piece_end, owner = min(end, segments[j][1]), segments[j][2]
                j += segments[j][1] <= end
            else:
                piece_end = min(end, segments[j][0]) if j < len(segments) else end
                owner = None
            if owner is None:
                tag = "O"
            else:
                tag = ("I-" if owner == previous else "B-") + tags[owner]
            lines.append(f"{text[position:piece_end]} _ _ {tag}")
            previous, position = owner, piece_end
    return lines


def conll_comment(provenance):
    """The comment line that opens a task's sentence: `# labelportal = <compact JSON>`, CoNLL-U's `# key = value`
    form. JSON escapes line feeds and control characters; U+0085, U+2028 and U+2029 (line breaks to some readers)
    are escaped too, so the comment is one line for every reader."""
    return CONLL_COMMENT_PREFIX + _dumps(provenance).translate(_ONE_LINE) + "\n"


def _conll(project, params):
    yield "-DOCSTART- -X- -X- O\n\n"
    fields = ("external_id", "batch_id", "data", "final_result")
    pages = _records(project, params, fields) if params.provenance else (
        ([(task, None, (), (), None, None) for task in page], {}) for page, _tasks in _pages(project, params, *fields))
    for records, codes in pages:
        sentences = []
        for record in records:
            _task_id, _external_id, _batch_id, data, final_result = record[0]
            lines = conll_bio_lines(data.get("text") or "", (final_result or {}).get("spans"))
            if lines:
                comment = conll_comment(_provenance_compact(record, codes)) if params.provenance else ""
                sentences.append(comment + "\n".join(lines) + "\n\n")
        yield "".join(sentences)


_WRITERS = {
    "json": (_json, "application/json", "json"),
    "jsonl": (_jsonl, "application/x-ndjson", "jsonl"),
    "csv": (_csv, "text/csv; charset=utf-8", "csv"),
    "coco": (_coco, "application/json", "coco.json"),
    "conll": (_conll, "text/plain; charset=utf-8", "conll"),
}


def export_stream(*, project, params):
    """(chunks iterator, content type, file name) for the export."""
    writer, content_type, extension = _WRITERS[params.format]
    suffix = f"-{params.batch.pk}" if params.batch else ""
    return (chunk.encode() for chunk in writer(project, params) if chunk), content_type, \
        f"{project.slug}{suffix}.{extension}"
