"""Figures and alerts endpoints. Figures are read from the snapshots workers write (never computed here)."""

import django_filters
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics
from rest_framework.exceptions import PermissionDenied
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.core.api import IdFilter, Pagination, project_for
from apps.core.permissions import ANNOTATE, MANAGE, REVIEW, has_project_perm
from apps.quality import selectors, services
from apps.quality.models import Alert

from .serializers import AlertSerializer

NO_AGREEMENT = {"metric": None, "value": None, "n": 0}


class ProjectMetricsView(APIView):
    """`GET /projects/{id}/metrics/` progress, throughput and quality, as last computed by the workers."""

    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request, project_id):
        project = project_for(request, project_id)
        if not (has_project_perm(request.user, project, MANAGE) or has_project_perm(request.user, project, REVIEW)):
            raise PermissionDenied("Project figures are for the project's managers and reviewers.")
        return Response(services.metrics_payload(
            progress=selectors.snapshot_latest(project=project, kind="progress"),
            quality=selectors.snapshot_latest(project=project, kind="quality")))


class ProjectAnnotatorsView(APIView):
    """`GET /projects/{id}/annotators/` per-annotator figures (managers only)."""

    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request, project_id):
        project = project_for(request, project_id, MANAGE)
        snapshot = selectors.snapshot_latest(project=project, kind="annotators")
        rows = snapshot.values.get("annotators", []) if snapshot else []
        # A list like every other: paginated (a 50-person team fits one default page), plus when it was computed.
        paginator = Pagination()
        page = paginator.paginate_queryset(rows, request, view=self)
        response = paginator.get_paginated_response(page)
        response.data["computed_at"] = snapshot.computed_at if snapshot else None
        response.data["reviewers"] = snapshot.values.get("reviewers", []) if snapshot else []
        response.data["distribution"] = snapshot.values.get("distribution", {}) if snapshot else {}
        return response


class MyMetricsView(APIView):
    """`GET /me/metrics/?project={id}` the caller's own figures and the team's anonymised distribution."""

    @extend_schema(parameters=[OpenApiParameter("project", int, required=True)], responses=OpenApiTypes.OBJECT)
    def get(self, request):
        try:
            project_id = int(request.query_params.get("project", ""))
        except ValueError:
            return Response({"detail": "Give ?project=<id>.", "errors": {"project": ["A project id is required."]}},
                            status=400)
        project = project_for(request, project_id, ANNOTATE)
        snapshot = selectors.snapshot_latest(project=project, kind="annotators")
        rows = snapshot.values.get("annotators", []) if snapshot else []
        mine = next((row for row in rows if row.get("annotator_id") == request.user.pk), None)
        return Response({"me": mine, "team": snapshot.values.get("distribution", {}) if snapshot else {},
                         "computed_at": snapshot.computed_at if snapshot else None})


class ProjectAgreementView(APIView):
    """`GET /projects/{id}/agreement/` overall value, per label and the pairwise annotator matrix."""

    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request, project_id):
        project = project_for(request, project_id)
        if not (has_project_perm(request.user, project, MANAGE) or has_project_perm(request.user, project, REVIEW)):
            raise PermissionDenied("Agreement figures are for the project's managers and reviewers.")
        snapshot = selectors.snapshot_latest(project=project, kind="agreement")
        values = snapshot.values if snapshot else {}
        pairwise = values.get("pairwise", {"annotators": [], "matrix": []})
        if not has_project_perm(request.user, project, MANAGE):
            # Performance data is for coaching (DESIGN.md "Governance"): reviewers see the matrix, not who is who.
            pairwise = {**{k: v for k, v in pairwise.items() if k != "annotator_ids"},
                        "annotators": [f"Annotator {i}" for i in range(1, len(pairwise.get("annotators", [])) + 1)]}
        return Response({"overall": values.get("overall", NO_AGREEMENT), "per_label": values.get("per_label", {}),
                         "fleiss_kappa": values.get("fleiss_kappa"), "pairwise": pairwise,
                         # Dawid–Skene's summary (classification, from the full pass): counts, no names.
                         "consensus": values.get("consensus"),
                         "computed_at": snapshot.computed_at if snapshot else None})


class AlertFilter(django_filters.FilterSet):
    # Plain numbers, not model choices: an id outside the caller's projects filters to nothing, never a 400.
    project = IdFilter(field_name="project_id")
    batch = IdFilter(field_name="batch_id")

    class Meta:
        model = Alert
        fields = ["project", "state", "kind", "batch"]


class AlertListView(generics.ListAPIView):
    """`GET /alerts/?project=&state=open` alerts of the projects the caller manages."""

    serializer_class = AlertSerializer
    filterset_class = AlertFilter

    def get_queryset(self):
        return (selectors.alert_list(user=self.request.user).select_related("acknowledged_by", "resolved_by")
                .order_by("-created_at", "-pk"))


class AlertAcknowledgeView(APIView):
    """`POST /alerts/{id}/acknowledge/`."""

    @extend_schema(request=None, responses=AlertSerializer)
    def post(self, request, alert_id):
        alert = selectors.alert_list(user=request.user).get(pk=alert_id)
        return Response(AlertSerializer(services.alert_acknowledge(alert=alert, actor=request.user)).data)


class AlertResolveView(APIView):
    """`POST /alerts/{id}/resolve/`: open or acknowledged → resolved, by the caller (409 when already resolved)."""

    @extend_schema(request=None, responses=AlertSerializer)
    def post(self, request, alert_id):
        alert = selectors.alert_list(user=request.user).get(pk=alert_id)
        return Response(AlertSerializer(services.alert_resolve(alert=alert, actor=request.user)).data)
