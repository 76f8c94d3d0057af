"""Project, member, batch, gate and guideline endpoints: parse, authorise, call a service, render."""

import django_filters
from django.contrib.auth import get_user_model
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import generics, status
from rest_framework.exceptions import PermissionDenied
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.core.api import project_for
from apps.core.permissions import MANAGE, has_project_perm, is_admin
from apps.projects import selectors, services
from apps.projects.models import Batch, Guideline, Membership, QualityGate

from . import serializers as s


class ProjectListView(generics.ListCreateAPIView):
    """`GET /projects/` the caller's projects · `POST /projects/` (admins) creates one."""

    serializer_class = s.ProjectSerializer

    def get_queryset(self):
        return selectors.project_list(user=self.request.user).select_related("current_guideline").order_by("id")

    @extend_schema(request=s.ProjectCreateSerializer, responses={201: s.ProjectSerializer})
    def post(self, request):
        if not is_admin(request.user):
            raise PermissionDenied("Only admins create projects.")
        data = s.ProjectCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        guideline = fields.pop("guideline", "")
        project = services.project_create(actor=request.user, guideline_text=guideline, **fields)
        return Response(s.ProjectSerializer(project).data, status=status.HTTP_201_CREATED)


class ProjectDetailView(APIView):
    """`GET /projects/{id}/` · `PATCH /projects/{id}/` (managers)."""

    @extend_schema(responses=s.ProjectSerializer)
    def get(self, request, project_id):
        return Response(s.ProjectSerializer(project_for(request, project_id)).data)

    @extend_schema(request=s.ProjectUpdateSerializer, responses=s.ProjectSerializer)
    def patch(self, request, project_id):
        project = project_for(request, project_id, MANAGE)
        data = s.ProjectUpdateSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        project = services.project_update(project=project, actor=request.user, **data.validated_data)
        return Response(s.ProjectSerializer(project).data)


class MemberListView(generics.ListAPIView):
    """`GET /projects/{id}/members/` · `POST` adds one role (managers, admins)."""

    serializer_class = s.MembershipSerializer

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation
            return Membership.objects.none()
        project = project_for(self.request, self.kwargs["project_id"], MANAGE)
        return Membership.objects.filter(project=project).select_related("user").order_by("user_id", "role")

    @extend_schema(request=s.MembershipCreateSerializer, responses={201: s.MembershipSerializer})
    def post(self, request, project_id):
        project = project_for(request, project_id, MANAGE)
        data = s.MembershipCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        membership = services.membership_add(project=project, actor=request.user, **data.validated_data)
        return Response(s.MembershipSerializer(membership).data, status=status.HTTP_201_CREATED)


class MemberDetailView(APIView):
    """`DELETE /projects/{id}/members/{user_id}/` removes all roles there (`?role=` one)."""

    @extend_schema(responses={204: None})
    def delete(self, request, project_id, user_id):
        project = project_for(request, project_id, MANAGE)
        # distinct(): a user with several roles here joins to several memberships (MultipleObjectsReturned).
        user = get_object_or_404(get_user_model().objects.filter(memberships__project=project).distinct(), pk=user_id)
        role = request.query_params.get("role") or None
        if role is not None and role not in Membership.Role.values:
            return Response({"detail": f"Unknown role {role!r}.", "errors": {"role": ["Unknown role."]}}, status=400)
        if not services.membership_remove(project=project, user=user, role=role, actor=request.user):
            return Response({"detail": "The user does not hold that role here.", "errors": {}}, status=404)
        return Response(status=status.HTTP_204_NO_CONTENT)


class MemberResumeView(APIView):
    """`POST /projects/{id}/members/{user_id}/resume/` lifts an annotator's pause (managers): 200 the membership,
    409 when it is not paused, 404 when the user is no annotator of the project."""

    @extend_schema(request=None, responses={200: s.MembershipSerializer})
    def post(self, request, project_id, user_id):
        project = project_for(request, project_id, MANAGE)
        membership = get_object_or_404(Membership, project=project, user_id=user_id, role=Membership.Role.ANNOTATOR)
        membership = services.membership_resume(membership=membership, actor=request.user)
        return Response(s.MembershipSerializer(membership).data)


class BatchFilter(django_filters.FilterSet):
    class Meta:
        model = Batch
        fields = ["status"]


class BatchListView(generics.ListAPIView):
    """`GET /projects/{id}/batches/` · `POST` creates a draft batch (managers)."""

    serializer_class = s.BatchSerializer
    filterset_class = BatchFilter

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation
            return Batch.objects.none()
        project = project_for(self.request, self.kwargs["project_id"])
        return selectors.batch_list_with_progress(user=self.request.user, project=project).order_by("id")

    @extend_schema(request=s.BatchWriteSerializer, responses={201: s.BatchSerializer})
    def post(self, request, project_id):
        project = project_for(request, project_id, MANAGE)
        data = s.BatchWriteSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        if project.batches.filter(name=data.validated_data["name"].strip()).exists():
            return Response({"detail": "A batch with this name already exists in the project.",
                             "errors": {"name": ["Already used."]}}, status=400)
        batch = services.batch_create(project=project, actor=request.user, **data.validated_data)
        return Response(s.BatchSerializer(batch).data, status=status.HTTP_201_CREATED)


def _batch_for(request, batch_id, perm=None):
    batch = selectors.batch_list_with_progress(user=request.user).select_related("project").get(pk=batch_id)
    if perm is not None and not has_project_perm(request.user, batch.project, perm):
        raise PermissionDenied("You do not have the manager role in this project.")
    return batch


class BatchDetailView(APIView):
    """`GET /batches/{id}/` · `PATCH /batches/{id}/` (name, priority, due date; managers)."""

    @extend_schema(responses=s.BatchSerializer)
    def get(self, request, batch_id):
        return Response(s.BatchSerializer(_batch_for(request, batch_id)).data)

    @extend_schema(request=s.BatchWriteSerializer, responses=s.BatchSerializer)
    def patch(self, request, batch_id):
        batch = _batch_for(request, batch_id, MANAGE)
        data = s.BatchWriteSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        batch = services.batch_update(batch=batch, actor=request.user, **data.validated_data)
        return Response(s.BatchSerializer(_batch_for(request, batch.pk)).data)


class BatchTransitionView(APIView):
    """`POST /batches/{id}/transition/` `{"to", "reason"}`: 409 naming the current state when illegal."""

    @extend_schema(request=s.BatchTransitionSerializer, responses=s.BatchSerializer)
    def post(self, request, batch_id):
        batch = _batch_for(request, batch_id, MANAGE)
        data = s.BatchTransitionSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        services.batch_transition(batch=batch, actor=request.user, **data.validated_data)
        return Response(s.BatchSerializer(_batch_for(request, batch.pk)).data)


class GateListView(generics.ListAPIView):
    """`GET /projects/{id}/gates/` · `POST` adds a gate (managers)."""

    serializer_class = s.QualityGateSerializer

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation
            return QualityGate.objects.none()
        project = project_for(self.request, self.kwargs["project_id"])
        return QualityGate.objects.filter(project=project).order_by("id")

    @extend_schema(request=s.QualityGateSerializer, responses={201: s.QualityGateSerializer})
    def post(self, request, project_id):
        project = project_for(request, project_id, MANAGE)
        data = s.QualityGateSerializer(data=request.data, context={"project": project})
        data.is_valid(raise_exception=True)
        gate = services.gate_create(project=project, actor=request.user, **data.validated_data)
        return Response(s.QualityGateSerializer(gate).data, status=status.HTTP_201_CREATED)


class GuidelineListView(generics.ListAPIView):
    """`GET /projects/{id}/guidelines/` every version, newest first · `POST` appends a version (managers)."""

    serializer_class = s.GuidelineSerializer

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation
            return Guideline.objects.none()
        project = project_for(self.request, self.kwargs["project_id"])
        return project.guidelines.select_related("created_by").order_by("-version")

    @extend_schema(request=s.GuidelineSerializer, responses={201: s.GuidelineSerializer})
    def post(self, request, project_id):
        project = project_for(request, project_id, MANAGE)
        data = s.GuidelineSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        guideline = services.guideline_add(project=project, actor=request.user, text=data.validated_data["text"])
        return Response(s.GuidelineSerializer(guideline).data, status=status.HTTP_201_CREATED)
