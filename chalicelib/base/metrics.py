"""keyward's metrics: lines in CloudWatch's embedded metric format (EMF) on standard output, from
which CloudWatch Logs makes metrics in the ``keyward`` namespace, with no call to CloudWatch and
nothing a request waits for. docs/operations.md#metrics lists them.

Each event writes its own line as it happens, rather than one line flushed as the invocation ends:
an invocation that fails or times out loses none of what it counted.

A metric's dimensions are the stage and, for some, one of a closed set of values (a reason code, a
sign-in method, a delivery channel). Each distinct combination of dimension values is a metric of
its own, billed by the month, so who a line is about (the organization, the member) is never a
dimension: it is a property of the line, which Logs Insights finds, as it finds the request ID.
:data:`Dimension` names the dimensions there are, so that mypy refuses any other.

keyward writes the format itself rather than through Powertools' Metrics: the format is a
documented JSON object (AWS's "Specification: Embedded metric format"), and the import would cost
the cold start what logs.py's docstring says Powertools' Logger costs it.
"""

from __future__ import annotations

import json
import sys
import time
from enum import StrEnum
from typing import Literal

from chalicelib.base import logs
from chalicelib.base.config import settings

NAMESPACE = "keyward"

# The dimensions a metric may have besides the stage; their values come from closed sets.
type Dimension = Literal["Reason", "Method", "Channel"]
# A metric broken down by one dimension: its name and the value of this line.
type Breakdown = tuple[Dimension, str]


class Unit(StrEnum):
    """The CloudWatch units keyward's metrics use (CloudWatch has no unit for hours: ``NONE``)."""

    COUNT = "Count"
    SECONDS = "Seconds"
    NONE = "None"


def count(*names: str, by: Breakdown | None = None, value: int = 1, **properties: object) -> None:
    """``value`` more of each metric of ``names`` (which share one line), broken down ``by`` one
    dimension when given; ``properties`` go on the line for Logs Insights, never as dimensions."""
    _write({name: (value, Unit.COUNT) for name in names}, by=by, properties=properties)


def measure(name: str, value: float, *, unit: Unit, **properties: object) -> None:
    """One value of the metric ``name`` in ``unit`` (an age, say), dimensioned by the stage alone."""
    _write({name: (value, unit)}, by=None, properties=properties)


def line(metrics: dict[str, tuple[float, Unit]], *, by: Breakdown | None, properties: dict[str, object]) -> str:
    """The EMF line: the metrics' values and dimensions as members of the root, with the ``_aws``
    directive that names which members are which. A metric broken down ``by`` a dimension is
    counted by the stage alone as well, so that an alarm can watch its total."""
    stage = settings().stage or "unnamed"
    dimension_sets = [["Stage"], ["Stage", by[0]]] if by is not None else [["Stage"]]
    document: dict[str, object] = {
        # Who and which invocation, first, so that a dimension or a metric of the same name wins.
        **logs.invocation_keys(),
        **{name: value for name, value in properties.items() if value is not None},
        "_aws": {
            "Timestamp": int(time.time() * 1000),
            "CloudWatchMetrics": [
                {
                    "Namespace": NAMESPACE,
                    "Dimensions": dimension_sets,
                    "Metrics": [{"Name": name, "Unit": unit.value} for name, (_, unit) in metrics.items()],
                }
            ],
        },
        "Stage": stage,
        **({by[0]: by[1]} if by is not None else {}),
        **{name: value for name, (value, _) in metrics.items()},
    }
    return json.dumps(document, separators=(",", ":"), default=str)


def _write(metrics: dict[str, tuple[float, Unit]], *, by: Breakdown | None, properties: dict[str, object]) -> None:
    # The ``sys.stdout`` of the moment, as logs.py writes: the Lambda runtime and test runners replace it.
    sys.stdout.write(line(metrics, by=by, properties=properties) + "\n")
    sys.stdout.flush()
