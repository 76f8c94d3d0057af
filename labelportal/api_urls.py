"""`/api/v1/` — the REST API of shared/spec/API.md, its OpenAPI schema and its offline docs."""

from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from apps.projects.api import views as projects
from apps.quality.api import views as quality
from apps.tasks.api import views as tasks

urlpatterns = [
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api:schema"), name="docs"),
    # Projects and batches
    path("projects/", projects.ProjectListView.as_view(), name="project-list"),
    path("projects/<int:project_id>/", projects.ProjectDetailView.as_view(), name="project-detail"),
    path("projects/<int:project_id>/members/", projects.MemberListView.as_view(), name="member-list"),
    path("projects/<int:project_id>/members/<int:user_id>/", projects.MemberDetailView.as_view(),
         name="member-detail"),
    path("projects/<int:project_id>/members/<int:user_id>/resume/", projects.MemberResumeView.as_view(),
         name="member-resume"),
    path("projects/<int:project_id>/batches/", projects.BatchListView.as_view(), name="batch-list"),
    path("batches/<int:batch_id>/", projects.BatchDetailView.as_view(), name="batch-detail"),
    path("batches/<int:batch_id>/transition/", projects.BatchTransitionView.as_view(), name="batch-transition"),
    path("projects/<int:project_id>/gates/", projects.GateListView.as_view(), name="gate-list"),
    path("projects/<int:project_id>/guidelines/", projects.GuidelineListView.as_view(), name="guideline-list"),
    # Tasks
    path("projects/<int:project_id>/import/", tasks.ImportView.as_view(), name="import"),
    path("projects/<int:project_id>/export/", tasks.ExportView.as_view(), name="export"),
    path("projects/<int:project_id>/tasks/", tasks.TaskListView.as_view(), name="task-list"),
    path("tasks/<int:task_id>/", tasks.TaskDetailView.as_view(), name="task-detail"),
    path("tasks/<int:task_id>/events/", tasks.TaskEventListView.as_view(), name="task-events"),
    path("tasks/<int:task_id>/annotations/", tasks.TaskAnnotationListView.as_view(), name="task-annotations"),
    path("tasks/<int:task_id>/clarifications/", tasks.ClarificationCreateView.as_view(), name="clarification-create"),
    path("clarifications/<int:clarification_id>/answer/", tasks.ClarificationAnswerView.as_view(),
         name="clarification-answer"),
    # Annotating
    path("projects/<int:project_id>/next/", tasks.NextTaskView.as_view(), name="next-task"),
    path("assignments/<int:assignment_id>/start/", tasks.AssignmentActionView.as_view(action="start"),
         name="assignment-start"),
    path("assignments/<int:assignment_id>/hold/", tasks.AssignmentHoldView.as_view(), name="assignment-hold"),
    path("assignments/<int:assignment_id>/resume/", tasks.AssignmentActionView.as_view(action="resume"),
         name="assignment-resume"),
    path("assignments/<int:assignment_id>/skip/", tasks.AssignmentSkipView.as_view(), name="assignment-skip"),
    path("assignments/<int:assignment_id>/submit/", tasks.AssignmentSubmitView.as_view(), name="assignment-submit"),
    # Reviewing
    path("projects/<int:project_id>/review/next/", tasks.ReviewNextView.as_view(), name="review-next"),
    path("annotations/<int:annotation_id>/review/", tasks.AnnotationReviewView.as_view(), name="annotation-review"),
    path("tasks/<int:task_id>/review/pairwise/", tasks.PairwiseResolveView.as_view(), name="review-pairwise"),
    # Figures and alerts
    path("projects/<int:project_id>/metrics/", quality.ProjectMetricsView.as_view(), name="project-metrics"),
    path("projects/<int:project_id>/annotators/", quality.ProjectAnnotatorsView.as_view(), name="project-annotators"),
    path("projects/<int:project_id>/agreement/", quality.ProjectAgreementView.as_view(), name="project-agreement"),
    path("me/metrics/", quality.MyMetricsView.as_view(), name="my-metrics"),
    path("alerts/", quality.AlertListView.as_view(), name="alert-list"),
    path("alerts/<int:alert_id>/acknowledge/", quality.AlertAcknowledgeView.as_view(), name="alert-acknowledge"),
    path("alerts/<int:alert_id>/resolve/", quality.AlertResolveView.as_view(), name="alert-resolve"),
]
