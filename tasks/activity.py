"""The activity sample (on the `delivery` queue): each organization's backlog and lag, into its
minute for the dashboard's charts, as beat asks once a minute."""

from __future__ import annotations

from celery import shared_task

from app.activity.sampling import sample as sample_activity
from app.core.services import current_services
from app.core.task_names import ACTIVITY_SAMPLE


@shared_task(name=ACTIVITY_SAMPLE)
def sample() -> None:
    """Sample every organization's backlog and lag into the current minute."""
    sample_activity(current_services())
