"""The local stage's outbox: the notification mail SES on moto accepted, for the console to show.

Registered only where SES is moto (``KEYWARD_AWS_ENDPOINT``, which the local stage alone may set):
on AWS the mail is in the members' mailboxes, not here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from chalice import Blueprint

from chalicelib.access.actions import Action
from chalicelib.api.http import caller_of, route
from chalicelib.base.deferred import deferred

# Only this page reads the outbox; a cold start of the local stage does not load it.
if TYPE_CHECKING:
    from chalicelib.delivery import notifications
else:
    notifications = deferred("chalicelib.delivery.notifications")

local_outbox = Blueprint(__name__)


@route(local_outbox, "/dev/outbox", methods=["GET"])
def sent_mail() -> dict[str, Any]:
    caller_of(local_outbox.current_request, action=Action.READ)
    return {"mail": notifications.local_outbox()}
