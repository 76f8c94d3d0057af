"""Exporting a project's results, streamed in constant memory, each record with its provenance.

Formats: JSON (an array), JSONL, CSV, COCO (bounding boxes) and CoNLL-2003 BIO (text spans, whitespace tokens).
Tasks are read in id-ordered pages; each page's annotations and reviews come in two more queries.
"""

import csv
import io
import json
import re
from collections import defaultdict
from dataclasses import dataclass

from django.core.serializers.json import DjangoJSONEncoder
from django.utils.translation import gettext as _

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
_TOKEN = re.compile(r"\S+")


@dataclass
class ExportParams:
    format: str
    statuses: list
    batch: Batch | None
    deliver: bool


def export_params(*, project, query):
    """Parse `?format=&status=&batch=&deliver=` into ExportParams, or raise ValidationError (400)."""
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
    if errors:
        raise ValidationError(_("Invalid export parameters."), errors=errors)
    return ExportParams(format=fmt, statuses=statuses, batch=batch, deliver=deliver)


def _task_pages(project, params):
    tasks = Task.objects.filter(project=project, status__in=params.statuses)
    if params.batch is not None:
        tasks = tasks.filter(batch=params.batch)
    fields = ("id", "external_id", "batch__name", "status", "is_gold", "data", "final_result", "accepted_at")
    last = 0
    while True:
        page = list(tasks.filter(id__gt=last).order_by("id").values(*fields)[:PAGE])
        if not page:
            return
        last = page[-1]["id"]
        yield page


def _provenance(task_ids):
    """Current annotations and their reviews for a page of tasks, grouped by task id."""
    annotations = list(
        Annotation.objects.filter(task_id__in=task_ids, is_current=True)
        .order_by("task_id", "assignment_id")
        .values("id", "task_id", "annotator__username", "author__username", "version", "source", "status",
                "result", "guideline_version", "lead_time_seconds", "submitted_at")
    )
    reviews = defaultdict(list)
    for review in (Review.objects.filter(annotation__task_id__in=task_ids, decided_at__isnull=False)
                   .order_by("decided_at").values("annotation__task_id", "annotation_id", "reviewer__username",
                                                  "decision", "comment", "decided_at")):
        reviews[review["annotation__task_id"]].append(review)
    codes = defaultdict(list)
    for row in (Review.error_types.through.objects.filter(review__annotation__task_id__in=task_ids)
                .values("review__annotation_id", "review__decided_at", "errortype__code")):
        codes[(row["review__annotation_id"], row["review__decided_at"])].append(row["errortype__code"])
    by_task = defaultdict(list)
    for annotation in annotations:
        by_task[annotation["task_id"]].append(annotation)
    return by_task, reviews, codes


def _records(project, params):
    """One dict per task: the final result and its provenance."""
    for page in _task_pages(project, params):
        by_task, reviews, codes = _provenance([t["id"] for t in page])
        for task in page:
            annotations = by_task.get(task["id"], [])
            own = [a for a in annotations if a["source"] != Annotation.Source.REVIEW_FIX]
            versions = [a["guideline_version"] for a in annotations if a["guideline_version"] is not None]
            yield {
                "id": task["id"],
                "external_id": task["external_id"],
                "batch": task["batch__name"],
                "status": task["status"],
                "is_gold": task["is_gold"],
                "data": task["data"],
                "result": task["final_result"],
                "accepted_at": task["accepted_at"],
                "provenance": {
                    "annotators": sorted({a["annotator__username"] for a in annotations}),
                    "annotations": [
                        {"annotator": a["annotator__username"], "author": a["author__username"],
                         "version": a["version"], "source": a["source"], "status": a["status"],
                         "result": a["result"], "guideline_version": a["guideline_version"],
                         "lead_time_seconds": a["lead_time_seconds"], "submitted_at": a["submitted_at"]}
                        for a in annotations
                    ],
                    "reviews": [
                        {"reviewer": r["reviewer__username"], "decision": r["decision"], "comment": r["comment"],
                         "error_types": codes.get((r["annotation_id"], r["decided_at"]), []),
                         "decided_at": r["decided_at"]}
                        for r in reviews.get(task["id"], [])
                    ],
                    "guideline_version": max(versions) if versions else None,
                    "agreement": task_agreement(project.task_type, [a["result"] for a in own]),
                },
            }


def _dumps(value):
    return json.dumps(value, cls=DjangoJSONEncoder, ensure_ascii=False, separators=(",", ":"))


def _jsonl(project, params):
    for record in _records(project, params):
        yield _dumps(record) + "\n"


def _json(project, params):
    yield "["
    first = True
    for record in _records(project, params):
        yield ("" if first else ",\n") + _dumps(record)
        first = False
    yield "]\n"


def _csv(project, params):
    buffer = io.StringIO()
    writer = csv.writer(buffer)

    def flush():
        value = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate(0)
        return value

    writer.writerow(CSV_COLUMNS)
    yield flush()
    for record in _records(project, params):
        provenance = record["provenance"]
        writer.writerow([
            record["id"], record["external_id"] or "", record["batch"], record["status"], record["is_gold"],
            _dumps(record["data"]), _dumps(record["result"]) if record["result"] is not None else "",
            ";".join(provenance["annotators"]), ";".join(sorted({r["reviewer"] for r in provenance["reviews"]})),
            ";".join(r["decision"] for r in provenance["reviews"]),
            provenance["guideline_version"] if provenance["guideline_version"] is not None else "",
            "" if provenance["agreement"] is None else round(provenance["agreement"], 6),
            record["accepted_at"].isoformat() if record["accepted_at"] else "",
        ])
        yield flush()


def _coco(project, params):
    """COCO object detection: images, annotations (absolute pixel [x, y, w, h]) and categories."""
    labels = [label["value"] for label in project.label_schema["labels"]]
    category = {value: n for n, value in enumerate(labels, start=1)}
    categories = [{"id": category[v], "name": v, "supercategory": "object"} for v in labels]
    yield '{"info":' + _dumps({"description": f"LabelPortal export of {project.name}", "version": "1.0"})
    yield ',"licenses":[],"categories":' + _dumps(categories) + ',"images":['
    first = True
    for page in _task_pages(project, params):
        for task in page:
            data = task["data"]
            image = {"id": task["id"], "file_name": data.get("image"), "width": data.get("width"),
                     "height": data.get("height")}
            yield ("" if first else ",") + _dumps(image)
            first = False
    yield '],"annotations":['
    first, next_id = True, 1
    for page in _task_pages(project, params):
        for task in page:
            width, height = task["data"].get("width") or 0, task["data"].get("height") or 0
            for box in (task["final_result"] or {}).get("boxes", []):
                bbox = [round(box["x"] * width, 2), round(box["y"] * height, 2),
                        round(box["w"] * width, 2), round(box["h"] * height, 2)]
                annotation = {"id": next_id, "image_id": task["id"], "category_id": category.get(box["label"]),
                              "bbox": bbox, "area": round(bbox[2] * bbox[3], 2), "iscrowd": 0,
                              "segmentation": []}
                next_id += 1
                yield ("" if first else ",") + _dumps(annotation)
                first = False
    yield "]}\n"


def conll_bio_lines(text, spans):
    """Whitespace tokens of `text` tagged B-/I-/O from character spans; one `token _ _ TAG` line each."""
    spans = sorted(spans or [], key=lambda s: (s["start"], s["end"]))
    lines = []
    for match in _TOKEN.finditer(text):
        tag = "O"
        for span in spans:
            if match.start() < span["end"] and match.end() > span["start"]:
                tag = ("B-" if match.start() <= span["start"] else "I-") + span["label"]
                break
        lines.append(f"{match.group()} _ _ {tag}")
    return lines


def _conll(project, params):
    yield "-DOCSTART- -X- -X- O\n\n"
    for page in _task_pages(project, params):
        for task in page:
            lines = conll_bio_lines(task["data"].get("text", ""), (task["final_result"] or {}).get("spans"))
            if lines:
                yield "\n".join(lines) + "\n\n"


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
    return (chunk.encode() for chunk in writer(project, params)), content_type, f"{project.slug}{suffix}.{extension}"
