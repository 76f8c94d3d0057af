"""Template tags of the project dashboard and the admin index's project summaries."""

from django import template
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe
from django.utils.translation import gettext as _

register = template.Library()


def _cell(value):
    return "—" if value is None else value


@register.simple_tag
def dashboard_table(table, name, query="", open=False):
    """One table of the dashboard behind a disclosure (`open`: shown unfolded, for a table with no chart above
    it), with its CSV link. Built with format_html (every value escaped) rather than template loops: the heatmap
    alone has 168 rows, and the page renders eleven tables."""
    href = f"?{query}&format=csv&table={name}" if query else f"?format=csv&table={name}"
    head = format_html_join("", '<th scope="col">{}</th>', ((column,) for column in table["columns"]))
    if table["rows"]:
        body = format_html_join("", "<tr>{}</tr>", (
            (format_html_join("", "<td>{}</td>", ((_cell(cell),) for cell in row)),) for row in table["rows"]))
    else:
        body = format_html('<tr><td colspan="{}" class="muted">{}</td></tr>', len(table["columns"]),
                           _("No data yet."))
    return format_html(
        '<details class="chart-table"{}><summary>{}</summary><table class="data">'
        '<caption>{} · <a href="{}" download>{}</a></caption><thead><tr>{}</tr></thead><tbody>{}</tbody>'
        "</table></details>",
        mark_safe(" open") if open else "", _("Show the numbers"), table["title"], href, _("Download CSV"), head,
        body)


@register.simple_tag(takes_context=True)
def admin_project_summaries(context):
    """The admin index's project lines, for the projects this admin user may administer."""
    from apps.core.admin_base import managed_projects

    from ..project_figures import admin_index_summaries

    request = context.get("request")
    if request is None or not request.user.is_authenticated:
        return {"projects": [], "more": False}
    return admin_index_summaries(projects=managed_projects(request))


@register.filter
def seconds_as_age(seconds):
    """"3 days, 22 hours" for a number of seconds (how long the oldest item has waited)."""
    from datetime import timedelta

    from django.utils import timezone
    from django.utils.timesince import timesince

    if seconds is None:
        return ""
    now = timezone.now()
    return timesince(now - timedelta(seconds=float(seconds)), now)
