"""Writes on projects: creation, guidelines, members (kept in step with object permissions) and batch transitions."""

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from guardian.shortcuts import assign_perm, remove_perm

from apps.core.audit import history_record_queryset, records_actor
from apps.core.errors import TransitionError, ValidationError
from apps.core.permissions import MANAGE, VIEW, require_project_perm

from .label_schema import label_schema_validate
from .models import ROLE_PERMISSIONS, Batch, Guideline, Membership, Project, QualityGate
from .selectors import gates_breached_for_batch

BS = Batch.Status


@records_actor
def project_create(*, actor, name, slug, task_type, label_schema, guideline_text="", **options):
    """Create a project with a validated schema, the default error taxonomy and its first guideline."""
    schema = label_schema_validate(task_type, label_schema)
    project = Project(name=name, slug=slug, task_type=task_type, label_schema=schema, created_by=actor, **options)
    project.full_clean()
    with transaction.atomic():
        project.save()
        error_types_default_create(project=project)
        if guideline_text:
            guideline_add(project=project, actor=actor, text=guideline_text)
            project.refresh_from_db()
    return project


def error_types_default_create(*, project):
    """Give a project the default error taxonomy (the codes it lacks; safe to call again)."""
    from apps.quality.models import DEFAULT_ERROR_TYPES, ErrorType

    existing = set(ErrorType.objects.filter(project=project).values_list("code", flat=True))
    for code, name in DEFAULT_ERROR_TYPES:
        if code not in existing:
            ErrorType.objects.create(project=project, code=code, name=name)


@records_actor
def guideline_add(*, project, actor, text):
    """Append a new guideline version and make it the project's current one."""
    text = (text or "").strip()
    if not text:
        raise ValidationError(_("The guideline text is empty."), errors={"text": [_("This field is required.")]})
    with transaction.atomic():
        project = Project.objects.select_for_update().get(pk=project.pk)
        last = project.guidelines.order_by("-version").values_list("version", flat=True).first() or 0
        guideline = Guideline.objects.create(project=project, version=last + 1, text=text, created_by=actor)
        project.current_guideline = guideline
        project.save(update_fields=["current_guideline", "updated_at"])
    return guideline


def membership_permissions_sync(*, project, user):
    """Make the user's role permissions on the project match their memberships (view if any role)."""
    roles = set(Membership.objects.filter(project=project, user=user).values_list("role", flat=True))
    wanted = {ROLE_PERMISSIONS[role] for role in roles} | ({VIEW} if roles else set())
    for perm in (VIEW, *ROLE_PERMISSIONS.values()):
        if perm in wanted:
            assign_perm(f"projects.{perm}", user, project)
        else:
            remove_perm(f"projects.{perm}", user, project)
    user.evict_obj_perms_cache()  # this user object's next permission question reads them afresh
    managers_group_sync(user)


MANAGERS_GROUP = "Project managers"
# What a manager does in the admin; which objects they see is scoped per project by the admin itself.
MANAGER_MODEL_PERMISSIONS = {
    "projects": {"project": "view change", "guideline": "view add", "batch": "view add change",
                 "qualitygate": "view add change", "membership": "view add change delete"},
    "tasks": {"task": "view change", "assignment": "view", "annotation": "view", "taskevent": "view",
              "clarification": "view change"},
    "quality": {"errortype": "view add change", "review": "view", "metricsnapshot": "view", "alert": "view change",
                "webhook": "view add change delete", "webhookdelivery": "view",
                "sanityrule": "view add change delete"},
    "annotators": {"annotatorprofile": "view add change", "team": "view add change delete"},
    "auth": {"user": "view"},
}


def managers_group():
    """The group that lets project managers into the admin (created with its permissions on first use)."""
    from django.contrib.auth.models import Group, Permission

    group, created = Group.objects.get_or_create(name=MANAGERS_GROUP)
    if created:
        group.permissions.set(Permission.objects.filter(_permissions_q(_manager_codenames())))
    return group


def _manager_codenames():
    return [(app, f"{action}_{model}") for app, models in MANAGER_MODEL_PERMISSIONS.items()
            for model, actions in models.items() for action in actions.split()]


def managers_group_permissions_sync(**kwargs):
    """post_migrate: an existing managers' group gets the permissions added to MANAGER_MODEL_PERMISSIONS since it
    was created (new models: teams, sanity rules). Permissions an admin gave the group by hand are kept."""
    from django.contrib.auth.models import Group, Permission

    group = Group.objects.filter(name=MANAGERS_GROUP).first()
    if group is not None:
        group.permissions.add(*Permission.objects.filter(_permissions_q(_manager_codenames())))


def _permissions_q(codenames):
    from django.db.models import Q

    query = Q(pk__in=[])
    for app, codename in codenames:
        query |= Q(content_type__app_label=app, codename=codename)
    return query


def managers_group_sync(user):
    """A manager of any project works in the admin: staff status and the managers' group. Losing the last
    manager role removes the group (staff status stays: an admin may have granted it for other reasons)."""
    group = managers_group()
    if Membership.objects.filter(user=user, role=Membership.Role.MANAGER).exists():
        if not user.is_staff:
            user.is_staff = True
            user.save(update_fields=["is_staff"])
        user.groups.add(group)
    else:
        user.groups.remove(group)


@records_actor
def membership_add(*, project, user, role, actor=None):
    """Give `user` a role in `project` (idempotent) and the matching object permissions."""
    if role not in Membership.Role.values:
        raise ValidationError(_("Unknown role %(role)r.") % {"role": role}, errors={"role": [_("Unknown role.")]})
    if actor is not None:
        require_project_perm(actor, project, MANAGE)
    with transaction.atomic():
        membership, _created = Membership.objects.get_or_create(project=project, user=user, role=role)
        membership_permissions_sync(project=project, user=user)
    return membership


@records_actor
def membership_remove(*, project, user, role=None, actor=None):
    """Take one role (or all roles) of `user` in `project` away, with their permissions. Returns how many."""
    if actor is not None:
        require_project_perm(actor, project, MANAGE)
    with transaction.atomic():
        memberships = Membership.objects.filter(project=project, user=user)
        if role is not None:
            memberships = memberships.filter(role=role)
        removed = 0
        for membership in memberships:
            membership.delete()  # one by one, so each removal leaves a history row
            removed += 1
        membership_permissions_sync(project=project, user=user)
    return removed


@records_actor
def gate_create(*, project, actor, metric, comparator, threshold, min_samples=50, batch=None):
    if actor is not None:
        require_project_perm(actor, project, MANAGE)
    gate = QualityGate(project=project, batch=batch, metric=metric, comparator=comparator, threshold=threshold,
                       min_samples=min_samples)
    gate.full_clean()
    gate.save()
    return gate


@records_actor
def batch_create(*, project, name, actor=None, priority=0, due_date=None):
    if actor is not None:
        require_project_perm(actor, project, MANAGE)
    batch = Batch(project=project, name=(name or "").strip(), priority=priority, due_date=due_date)
    batch.full_clean()
    batch.save()
    return batch


# --- batch transitions ----------------------------------------------------------------------------------------------

def _batch_lock(batch, actor):
    batch = Batch.objects.select_for_update().select_related("project").get(pk=batch.pk)
    if actor is not None:
        require_project_perm(actor, batch.project, MANAGE)
    return batch


def _batch_refuse(batch, target):
    raise TransitionError(
        _("Batch “%(batch)s” is %(status)s and cannot move to %(target)s.")
        % {"batch": batch.name, "status": batch.status, "target": target},
        current=batch.status,
    )


def _batch_event(batch, type, actor, payload=None):
    from apps.tasks.services import _after_commit_refresh, event_record

    event_record(type=type, project=batch.project, batch=batch, actor=actor, payload=payload)
    _after_commit_refresh(batch.project_id)


def _batch_move(batch, status, actor, event_type, payload=None):
    from apps.tasks.models import TaskEvent

    batch.status = status
    batch.save(update_fields=["status", "updated_at"])
    _batch_event(batch, getattr(TaskEvent.Type, event_type), actor, payload)
    return batch


def _open_tasks_unfinished(batch):
    from apps.tasks.models import Task

    # Gold tasks are answered by many annotators and never close; they do not hold a batch back.
    return batch.tasks.filter(is_gold=False).exclude(status__in=[Task.Status.ACCEPTED, Task.Status.CANCELLED]).count()


@records_actor
def batch_activate(*, batch, actor):
    """Release a batch to annotators: draft|paused → active; a draft's tasks become open."""
    from apps.tasks.models import Task

    with transaction.atomic():
        batch = _batch_lock(batch, actor)
        if batch.status not in (BS.DRAFT, BS.PAUSED):
            _batch_refuse(batch, BS.ACTIVE)
        opened = 0
        if batch.status == BS.DRAFT:
            new_tasks = Task.objects.filter(batch=batch, status=Task.Status.NEW)
            opened = new_tasks.update(status=Task.Status.OPEN, updated_at=timezone.now())
            history_record_queryset(Task.objects.filter(batch=batch, status=Task.Status.OPEN), user=actor,
                                    reason="batch activated")
        return _batch_move(batch, BS.ACTIVE, actor, "BATCH_ACTIVATED", {"opened_tasks": opened})


@records_actor
def batch_pause(*, batch, actor):
    """Stop handing out the batch's tasks: active → paused. Work already assigned can still be submitted."""
    with transaction.atomic():
        batch = _batch_lock(batch, actor)
        if batch.status != BS.ACTIVE:
            _batch_refuse(batch, BS.PAUSED)
        return _batch_move(batch, BS.PAUSED, actor, "BATCH_PAUSED")


@records_actor
def batch_review(*, batch, actor):
    """Final review of the batch: active|paused → in_review; no new tasks are handed out."""
    with transaction.atomic():
        batch = _batch_lock(batch, actor)
        if batch.status not in (BS.ACTIVE, BS.PAUSED):
            _batch_refuse(batch, BS.IN_REVIEW)
        return _batch_move(batch, BS.IN_REVIEW, actor, "BATCH_IN_REVIEW")


def _gates_refuse(batch, gates, target):
    names = "; ".join(str(gate) for gate in gates)
    raise TransitionError(
        _("Batch “%(batch)s” cannot move to %(target)s: quality gate(s) breached: %(gates)s. "
          "A manager can override with a written reason.") % {"batch": batch.name, "target": target, "gates": names},
        current=batch.status, errors={"gates": [gate.pk for gate in gates]},
    )


@records_actor
def batch_complete(*, batch, actor):
    """in_review|blocked → completed, only when every task is final and no gate is breached."""
    with transaction.atomic():
        batch = _batch_lock(batch, actor)
        if batch.status not in (BS.IN_REVIEW, BS.BLOCKED):
            _batch_refuse(batch, BS.COMPLETED)
        unfinished = _open_tasks_unfinished(batch)
        if unfinished:
            raise TransitionError(_("Batch “%(batch)s” still has %(n)d task(s) that are not accepted or cancelled.")
                                  % {"batch": batch.name, "n": unfinished}, current=batch.status)
        breached = list(gates_breached_for_batch(batch))
        if breached:
            _gates_refuse(batch, breached, BS.COMPLETED)
        batch = _batch_move(batch, BS.COMPLETED, actor, "BATCH_COMPLETED")
        _batch_webhook(batch, "batch.completed")
    return batch


@records_actor
def batch_block(*, batch, actor=None, gates=()):
    """A gate is breached while the batch is in review: in_review → blocked (raised by the quality engine)."""
    with transaction.atomic():
        batch = _batch_lock(batch, None)
        if batch.status != BS.IN_REVIEW:
            _batch_refuse(batch, BS.BLOCKED)
        batch = _batch_move(batch, BS.BLOCKED, actor, "BATCH_BLOCKED", {"gates": [g.pk for g in gates]})
        _batch_webhook(batch, "batch.blocked")
    return batch


@records_actor
def batch_override(*, batch, actor, reason):
    """A manager completes a batch despite breached gates, with a written reason: in_review|blocked → completed."""
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError(_("An override needs a written reason."), errors={"reason": [_("This field is required.")]})
    with transaction.atomic():
        batch = _batch_lock(batch, actor)
        if batch.status not in (BS.IN_REVIEW, BS.BLOCKED):
            _batch_refuse(batch, BS.COMPLETED)
        unfinished = _open_tasks_unfinished(batch)
        if unfinished:
            raise TransitionError(_("Batch “%(batch)s” still has %(n)d task(s) that are not accepted or cancelled.")
                                  % {"batch": batch.name, "n": unfinished}, current=batch.status)
        breached = list(gates_breached_for_batch(batch))
        batch.override_reason = reason
        batch.overridden_by = actor
        batch.overridden_at = timezone.now()
        batch.status = BS.COMPLETED
        batch.save(update_fields=["override_reason", "overridden_by", "overridden_at", "status", "updated_at"])
        from apps.tasks.models import TaskEvent

        _batch_event(batch, TaskEvent.Type.BATCH_OVERRIDDEN, actor,
                     {"reason": reason, "gates": [g.pk for g in breached]})
        _batch_webhook(batch, "batch.completed")
    return batch


def _deliverable_check(batch):
    if batch.status != BS.COMPLETED:
        _batch_refuse(batch, BS.DELIVERED)
    breached = list(gates_breached_for_batch(batch))
    if breached and not batch.override_reason:
        _gates_refuse(batch, breached, BS.DELIVERED)


@records_actor
def batch_deliver_check(*, batch, actor):
    """Raise what batch_deliver would raise, changing nothing (an export checks before it streams)."""
    batch = Batch.objects.select_related("project").get(pk=batch.pk)
    if actor is not None:
        require_project_perm(actor, batch.project, MANAGE)
    _deliverable_check(batch)


@records_actor
def batch_deliver(*, batch, actor):
    """The batch was exported to the customer: completed → delivered, gates re-checked unless overridden."""
    with transaction.atomic():
        batch = _batch_lock(batch, actor)
        _deliverable_check(batch)
        return _batch_move(batch, BS.DELIVERED, actor, "BATCH_DELIVERED")


BATCH_TRANSITIONS = {
    BS.ACTIVE: batch_activate,
    BS.PAUSED: batch_pause,
    BS.IN_REVIEW: batch_review,
    BS.COMPLETED: batch_complete,
    BS.DELIVERED: batch_deliver,
}


@records_actor
def batch_transition(*, batch, actor, to, reason=""):
    """One entry point for the admin and the API: move to `to`; `completed` with a reason is an override."""
    if to == BS.COMPLETED and (reason or "").strip():
        try:
            return batch_complete(batch=batch, actor=actor)
        except TransitionError as error:
            if not error.errors.get("gates"):
                raise
            return batch_override(batch=batch, actor=actor, reason=reason)
    transition = BATCH_TRANSITIONS.get(to)
    if transition is None:
        raise ValidationError(_("Unknown target status %(to)r.") % {"to": to}, errors={"to": [_("Unknown status.")]})
    return transition(batch=batch, actor=actor)


def _batch_webhook(batch, event):
    from apps.quality.services import webhooks_notify

    webhooks_notify(project_id=batch.project_id, event=event,
                    payload={"batch": batch.pk, "name": batch.name, "status": batch.status})


PROJECT_EDITABLE = ("name", "description", "label_schema", "overlap", "gold_rate", "review_mode",
                    "review_sample_rate", "sampling", "lease_minutes")


@records_actor
def project_update(*, project, actor, **fields):
    """Change a project's settings (managers). A new label schema is validated against the task type."""
    unknown = set(fields) - set(PROJECT_EDITABLE)
    if unknown:
        raise ValidationError(_("These fields cannot be changed: %(f)s.") % {"f": ", ".join(sorted(unknown))})
    with transaction.atomic():
        project = Project.objects.select_for_update().get(pk=project.pk)
        require_project_perm(actor, project, MANAGE)
        if "label_schema" in fields:
            fields["label_schema"] = label_schema_validate(project.task_type, fields["label_schema"])
        for name, value in fields.items():
            setattr(project, name, value)
        project.full_clean(exclude=["slug"])
        project.save()
    return project


@records_actor
def batch_update(*, batch, actor, **fields):
    """Rename a batch or change its priority or due date (managers)."""
    unknown = set(fields) - {"name", "priority", "due_date"}
    if unknown:
        raise ValidationError(_("These fields cannot be changed: %(f)s.") % {"f": ", ".join(sorted(unknown))})
    with transaction.atomic():
        batch = _batch_lock(batch, actor)
        for name, value in fields.items():
            setattr(batch, name, value.strip() if isinstance(value, str) else value)
        batch.full_clean()
        batch.save()
    return batch


# --- paused annotators (automatic routing, issue #6) ---------------------------------------------------------------

MEMBERSHIP_PAUSED = "paused"  # history_change_reason of the rows a pause and a resume write
MEMBERSHIP_RESUMED = "resumed"


@records_actor
def membership_pause(*, membership, reason, actor=None, now=None):
    """Pause an annotator on a project: no new task is handed to them; what they hold already they may finish.
    `actor` None: the quality engine (pause_low_gold). Returns the membership, or None when it was paused already
    (nothing changes: safe to run twice)."""
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError(_("Say why the annotator is paused."), errors={"reason": [_("This field is required.")]})
    with transaction.atomic():
        membership = Membership.objects.select_for_update().select_related("project", "user").get(pk=membership.pk)
        if actor is not None:
            require_project_perm(actor, membership.project, MANAGE)
        if membership.role != Membership.Role.ANNOTATOR:
            raise ValidationError(_("Only an annotator membership can be paused."),
                                  errors={"role": [_("Not an annotator membership.")]})
        if membership.paused_at is not None:
            return None
        membership.paused_at = now or timezone.now()
        membership.pause_reason = reason
        membership._change_reason = MEMBERSHIP_PAUSED
        membership.save(update_fields=["paused_at", "pause_reason"])
    return membership


@records_actor
def membership_resume(*, membership, actor):
    """A manager lifts an annotator's pause: they get new tasks again. The history row names the manager, and the
    alert that announced the pause is resolved by them. Refused (409) when the membership is not paused."""
    from apps.quality.routing import pause_alerts_resolve

    with transaction.atomic():
        membership = Membership.objects.select_for_update().select_related("project", "user").get(pk=membership.pk)
        require_project_perm(actor, membership.project, MANAGE)
        if membership.paused_at is None:
            raise TransitionError(_("%(user)s is not paused on “%(project)s”.")
                                  % {"user": membership.user.username, "project": membership.project.name},
                                  current="active")
        membership.paused_at = None
        membership.pause_reason = ""
        membership._change_reason = MEMBERSHIP_RESUMED
        membership.save(update_fields=["paused_at", "pause_reason"])
        pause_alerts_resolve(project_id=membership.project_id, user_id=membership.user_id, actor=actor)
    return membership
