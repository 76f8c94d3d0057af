"""Task, annotating, reviewing, import and export endpoints: parse, authorise, call a service, render."""

import django_filters
from django.conf import settings
from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, serializers, status
from rest_framework.exceptions import PermissionDenied
from rest_framework.parsers import BaseParser, FormParser, JSONParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.core.api import IdFilter, idempotent, project_for
from apps.core.errors import PayloadTooLargeError, ValidationError, body_too_large_message
from apps.core.permissions import ANNOTATE, MANAGE, REVIEW, has_project_perm
from apps.projects.models import Guideline
from apps.projects.services import batch_deliver, batch_deliver_check
from apps.tasks import exports, review_queue, selectors, services
from apps.tasks.imports import import_format_guess, tasks_import
from apps.tasks.models import Annotation, Assignment, Task, TaskEvent
from apps.tasks.next_task import next_task_assign

from . import serializers as s


def _task_context(request, project):
    return {"request": request, "show_gold": has_project_perm(request.user, project, MANAGE),
            "show_all": selectors.can_see_all_of_project(request.user, project)}


class TaskFilter(django_filters.FilterSet):
    batch = IdFilter(field_name="batch_id")

    class Meta:
        model = Task
        fields = ["status", "batch", "is_gold"]


class ReviewerTaskFilter(django_filters.FilterSet):
    """Reviewers may not learn which tasks are gold, not even by filtering."""

    batch = IdFilter(field_name="batch_id")

    class Meta:
        model = Task
        fields = ["status", "batch"]


class TaskListView(generics.ListAPIView):
    """`GET /projects/{id}/tasks/?status=&batch=&is_gold=` (managers and reviewers)."""

    serializer_class = s.TaskSerializer

    @property
    def filterset_class(self):
        if getattr(self, "swagger_fake_view", False):
            return TaskFilter
        return TaskFilter if has_project_perm(self.request.user, self.project, MANAGE) else ReviewerTaskFilter

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation
            return Task.objects.none()
        return selectors.task_list(user=self.request.user, project=self.project).order_by("id")

    def list(self, request, *args, **kwargs):
        self.project = project_for(request, kwargs["project_id"])
        if not selectors.can_see_all_of_project(request.user, self.project):
            raise PermissionDenied("Only the project's reviewers and managers list its tasks.")
        return super().list(request, *args, **kwargs)

    def get_serializer_context(self):
        return _task_context(self.request, self.project)


class TaskDetailView(APIView):
    """`GET /tasks/{id}/`: annotators get 404 for tasks they were never assigned."""

    @extend_schema(responses=s.TaskSerializer)
    def get(self, request, task_id):
        task = selectors.task_get(user=request.user, task_id=task_id)
        return Response(s.TaskSerializer(task, context=_task_context(request, task.project)).data)


class TaskEventListView(generics.ListAPIView):
    """`GET /tasks/{id}/events/` the lifecycle trail (an annotator sees the events of their own assignment)."""

    serializer_class = s.EventSerializer

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation
            return TaskEvent.objects.none()
        task = selectors.task_get(user=self.request.user, task_id=self.kwargs["task_id"])
        return selectors.event_list(user=self.request.user, task=task)


class TaskAnnotationListView(generics.ListAPIView):
    """`GET /tasks/{id}/annotations/` every version with provenance (an annotator sees only their own)."""

    serializer_class = s.AnnotationSerializer

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation
            return Annotation.objects.none()
        task = selectors.task_get(user=self.request.user, task_id=self.kwargs["task_id"])
        self.task = task
        return selectors.annotation_list(user=self.request.user, task=task).prefetch_related(
            "reviews__reviewer", "reviews__error_types")

    def get_serializer_context(self):
        context = super().get_serializer_context()
        task = getattr(self, "task", None)
        context["show_all"] = task is not None and selectors.can_see_all_of_project(self.request.user, task.project)
        return context


class NextTaskView(APIView):
    """`POST /projects/{id}/next/` → the annotator's next assignment and task, or 204 when nothing is left."""

    @extend_schema(request=s.NextTaskRequestSerializer, responses={200: s.NextTaskSerializer, 204: None})
    @idempotent
    def post(self, request, project_id):
        project = project_for(request, project_id, ANNOTATE)
        start = False
        if isinstance(request.data, dict) and request.data:  # an empty body asks for nothing: no serializer
            options = s.NextTaskRequestSerializer(data=request.data)
            options.is_valid(raise_exception=True)
            start = options.validated_data["start"]
        assignment = next_task_assign(project=project, annotator=request.user)
        if assignment is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        if start and assignment.status in (Assignment.Status.ASSIGNED, Assignment.Status.REJECTED):
            # The portal shows the task at once: one request loads and starts it.
            assignment = services.assignment_start(assignment=assignment, actor=request.user)
        body = {"assignment": s.assignment_brief(assignment), "task": s.task_brief(assignment.task)}
        rework = selectors.rework_feedback(assignment=assignment)
        if rework is not None:
            body["rework"] = s.ReworkSerializer(rework).data
        return Response(body)


def _own_assignment(request, assignment_id):
    """The caller's own assignment. Those who see its task without working on it (the project's reviewers,
    managers and admins) are refused with 403; to anyone else it does not exist (404: blind overlap)."""
    try:
        return selectors.assignment_get_for_annotator(user=request.user, assignment_id=assignment_id)
    except Assignment.DoesNotExist:
        assignment = Assignment.objects.select_related("task__project").filter(pk=assignment_id).first()
        if assignment is not None and selectors.can_see_all_of_project(request.user, assignment.task.project):
            raise PermissionDenied("This assignment belongs to another annotator.") from None
        raise


class AssignmentActionView(APIView):
    """`POST /assignments/{id}/start|hold|resume|skip/`."""

    action = None

    @extend_schema(request=None, responses=s.AssignmentSerializer)
    def post(self, request, assignment_id):
        assignment = _own_assignment(request, assignment_id)
        if self.action == "start":
            assignment = services.assignment_start(assignment=assignment, actor=request.user)
        elif self.action == "resume":
            assignment = services.assignment_resume(assignment=assignment, actor=request.user)
        elif self.action == "hold":
            data = s.HoldSerializer(data=request.data)
            data.is_valid(raise_exception=True)
            assignment = services.assignment_hold(assignment=assignment, actor=request.user, **data.validated_data)
        elif self.action == "skip":
            data = s.SkipSerializer(data=request.data)
            data.is_valid(raise_exception=True)
            assignment = services.assignment_skip(assignment=assignment, actor=request.user, **data.validated_data)
        return Response(s.AssignmentSerializer(assignment).data)


class AssignmentHoldView(AssignmentActionView):
    action = "hold"

    @extend_schema(request=s.HoldSerializer, responses=s.AssignmentSerializer)
    def post(self, request, assignment_id):
        return super().post(request, assignment_id)


class AssignmentSkipView(AssignmentActionView):
    action = "skip"

    @extend_schema(request=s.SkipSerializer, responses=s.AssignmentSerializer)
    def post(self, request, assignment_id):
        return super().post(request, assignment_id)


class AssignmentSubmitView(APIView):
    """`POST /assignments/{id}/submit/` → 201 the annotation; rework is resubmitted as a new version."""

    @extend_schema(request=s.SubmitSerializer, responses={201: s.AnnotationSerializer})
    @idempotent
    def post(self, request, assignment_id):
        assignment = _own_assignment(request, assignment_id)
        data = s.SubmitSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        submit = services.assignment_resubmit if assignment.rework_count else services.assignment_submit
        key = request.headers.get("Idempotency-Key") or None
        annotation = submit(assignment=assignment, actor=request.user, idempotency_key=key, **data.validated_data)
        show_all = selectors.can_see_all_of_project(request.user, assignment.task.project)
        # Without a key the submission cannot be a replay: the annotation was written by this call, unreviewed.
        return Response(s.annotation_body(annotation, show_all=show_all, fresh=key is None),
                        status=status.HTTP_201_CREATED)


class ClarificationCreateView(APIView):
    """`POST /tasks/{id}/clarifications/` → 201; the asker's assignment goes on hold."""

    @extend_schema(request=s.ClarificationAskSerializer, responses={201: s.ClarificationSerializer})
    def post(self, request, task_id):
        task = selectors.task_get(user=request.user, task_id=task_id)
        data = s.ClarificationAskSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        clarification = services.clarification_ask(task=task, actor=request.user, **data.validated_data)
        return Response(s.ClarificationSerializer(clarification).data, status=status.HTTP_201_CREATED)


class ClarificationAnswerView(APIView):
    """`POST /clarifications/{id}/answer/` (managers)."""

    @extend_schema(request=s.ClarificationAnswerSerializer, responses=s.ClarificationSerializer)
    def post(self, request, clarification_id):
        clarification = selectors.clarification_list(user=request.user).get(pk=clarification_id)
        if not has_project_perm(request.user, clarification.task.project, MANAGE):
            raise PermissionDenied("Only the project's managers answer clarifications.")
        data = s.ClarificationAnswerSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        clarification = services.clarification_answer(clarification=clarification, actor=request.user,
                                                      **data.validated_data)
        return Response(s.ClarificationSerializer(clarification).data)


class ReviewNextRequestSerializer(serializers.Serializer):
    """`queue`: serve only the review queue or only the escalations; left out, both (escalations first)."""

    queue = serializers.ChoiceField(choices=review_queue.QUEUES, required=False, allow_null=True, default=None)


def _guideline_of(annotation):
    """The guideline version the annotation was made under (not the project's current one), or None."""
    guideline = annotation.guideline
    if guideline is None and annotation.guideline_version is not None:
        guideline = Guideline.objects.filter(project_id=annotation.task.project_id,
                                             version=annotation.guideline_version).first()
    return {"version": guideline.version, "text": guideline.text} if guideline is not None else None


class ReviewNextView(APIView):
    """`POST /projects/{id}/review/next/` `{"queue": "review|escalations"}` (optional) → the reviewer's next
    annotation and its task, which queue it came from, the guideline it was made under and the caller's queue
    lengths; or 204."""

    @extend_schema(request=ReviewNextRequestSerializer, responses={200: OpenApiTypes.OBJECT, 204: None})
    @idempotent
    def post(self, request, project_id):
        project = project_for(request, project_id, REVIEW)
        queue = None
        if isinstance(request.data, dict) and request.data:  # an empty body asks for nothing: no serializer
            options = ReviewNextRequestSerializer(data=request.data)
            options.is_valid(raise_exception=True)
            queue = options.validated_data["queue"]
        annotation = review_queue.review_next(project=project, reviewer=request.user, queue=queue)
        if annotation is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        context = {"request": request, "show_gold": False, "show_all": True}
        return Response({
            "annotation": s.AnnotationSerializer(annotation, context=context).data,
            "task": s.TaskSerializer(annotation.task, context=context).data,
            "queue": review_queue.ESCALATIONS if annotation.status == Annotation.Status.ESCALATED
            else review_queue.REVIEW_QUEUE,
            "guideline": _guideline_of(annotation),
            # After the claim: the annotation just handed out is counted. `escalations` is None for a reviewer who
            # is not senior.
            "queues": review_queue.review_queue_stats(project=project, reviewer=request.user),
        })


class AnnotationReviewView(APIView):
    """`POST /annotations/{id}/review/` `{"decision": "approve|reject|fix|escalate", ...}` → 201 the review."""

    @extend_schema(request=s.ReviewDecisionSerializer, responses={201: s.ReviewSerializer})
    @idempotent
    def post(self, request, annotation_id):
        annotation = Annotation.objects.select_related("task__project").get(
            pk=annotation_id, task__in=selectors.task_list(user=request.user))
        if annotation.annotator_id != request.user.pk and not selectors.can_see_all_of_project(
                request.user, annotation.task.project):
            raise Annotation.DoesNotExist  # another annotator's work on a shared task: blind overlap
        if not has_project_perm(request.user, annotation.task.project, REVIEW):
            raise PermissionDenied("Only the project's reviewers review.")
        data = s.ReviewDecisionSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        decision, values = data.validated_data["decision"], data.validated_data
        if decision == "approve":
            review = services.review_approve(annotation=annotation, reviewer=request.user, comment=values["comment"])
        elif decision == "reject":
            review = services.review_reject(annotation=annotation, reviewer=request.user,
                                            error_types=values["error_types"], comment=values["comment"])
        elif decision == "fix":
            review = services.review_fix(annotation=annotation, reviewer=request.user,
                                         corrected_result=values["corrected_result"],
                                         error_types=values["error_types"], comment=values["comment"])
        else:
            review = services.review_escalate(annotation=annotation, reviewer=request.user, comment=values["comment"])
        return Response(s.ReviewSerializer(review).data, status=status.HTTP_201_CREATED)


class PairwiseResolveView(APIView):
    """`POST /tasks/{id}/review/pairwise/` — with several annotations waiting on a task: pick one or merge them."""

    @extend_schema(request=s.PairwiseResolveSerializer, responses={200: s.ReviewSerializer(many=True)})
    @idempotent
    def post(self, request, task_id):
        task = selectors.task_get(user=request.user, task_id=task_id)
        if not has_project_perm(request.user, task.project, REVIEW):
            raise PermissionDenied("Only the project's reviewers review.")
        data = s.PairwiseResolveSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        reviews = services.review_pairwise_resolve(
            task=task, reviewer=request.user, picked=values["annotation"], result=values["result"],
            error_types=values["error_types"], comment=values["comment"])
        return Response(s.ReviewSerializer(reviews, many=True).data)


class StreamParser(BaseParser):
    """Leaves the body unread so the import can stream it (JSON array, JSONL or CSV)."""

    media_type = "*/*"

    def parse(self, stream, media_type=None, parser_context=None):
        return stream


class ImportView(APIView):
    """`POST /projects/{id}/import/` — a JSON array body, or a `file` upload in JSON, JSONL or CSV; all or nothing."""

    parser_classes = [MultiPartParser, FormParser, StreamParser]

    @extend_schema(request={"application/json": OpenApiTypes.OBJECT, "multipart/form-data": OpenApiTypes.OBJECT,
                            "application/x-ndjson": OpenApiTypes.STR, "text/csv": OpenApiTypes.STR},
                   responses={201: s.ImportResultSerializer, 200: s.ImportResultSerializer})
    @idempotent
    def post(self, request, project_id):
        project = project_for(request, project_id, MANAGE)
        length = int(request.META.get("CONTENT_LENGTH") or 0)
        if length > settings.IMPORT_MAX_BYTES:
            raise PayloadTooLargeError(body_too_large_message(length, settings.IMPORT_MAX_BYTES))
        content_type = (request.content_type or "").split(";")[0].strip().lower()
        if content_type.startswith("multipart/") or content_type == "application/x-www-form-urlencoded":
            upload = request.FILES.get("file")
            if upload is None:
                raise ValidationError("Send the tasks as a `file` upload or as a JSON body.",
                                      errors={"file": ["This field is required."]})
            fmt = request.data.get("format") or import_format_guess(upload.name)
            result = tasks_import(project=project, actor=request.user, source=upload, fmt=fmt,
                                  filename=upload.name)
        else:
            fmt = {"application/x-ndjson": "jsonl", "application/jsonl": "jsonl", "application/x-jsonlines": "jsonl",
                   "text/csv": "csv"}.get(content_type, "json")
            result = tasks_import(project=project, actor=request.user, source=request.stream or _EmptyStream(),
                                  fmt=fmt)
        body = {"created": result.created, "skipped": result.skipped,
                "batch": result.batch.pk if result.batch else None}
        return Response(body, status=status.HTTP_201_CREATED)


class _EmptyStream:
    def read(self, *args):
        return b""

    def readline(self, *args):  # the JSONL and CSV readers read lines
        return b""


def _then(chunks, finish):
    """Yield every chunk, then call `finish` (after the last chunk was produced)."""
    yield from chunks
    finish()


class ExportView(APIView):
    """`GET /projects/{id}/export/?format=json|jsonl|csv|coco|conll&status=accepted&batch=&deliver=` — streamed."""

    @extend_schema(parameters=[
        OpenApiParameter("format", str, enum=list(exports.FORMATS)),
        OpenApiParameter("status", str), OpenApiParameter("batch", int),
        OpenApiParameter("deliver", bool, description="Move the batch to delivered (only if its gates pass)."),
        OpenApiParameter("provenance", bool, description="COCO and CoNLL: include each task's provenance (default "
                         "true; false gives the plain format for readers that cannot skip extra keys or comments)."),
    ], responses={200: OpenApiTypes.BINARY})
    def get(self, request, project_id):
        project = project_for(request, project_id, MANAGE)
        params = exports.export_params(project=project, query=request.query_params)
        chunks, content_type, filename = exports.export_stream(project=project, params=params)
        if params.deliver:
            # Refuse up front (409) if the batch may not be delivered; move it only once the whole file went out.
            batch_deliver_check(batch=params.batch, actor=request.user)
            chunks = _then(chunks, lambda: batch_deliver(batch=params.batch, actor=request.user))
        response = StreamingHttpResponse(chunks, content_type=content_type)
        response["Content-Disposition"] = f'attachment; filename="{filename}"'
        return response
