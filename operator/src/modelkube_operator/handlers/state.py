"""What the handlers share for the operator's lifetime, kept in kopf's memo."""

import asyncio
from dataclasses import dataclass, field
from typing import Any

import kopf
from aiohttp import web

from modelkube_operator.k8s.client import Kube
from modelkube_operator.reconcilers.resync import OwnerKey


@dataclass
class OperatorState:
    """One instance, made at startup: kopf gives each object a shallow copy of the memo, so
    every copy holds this same object."""

    kube: Kube
    metrics: web.AppRunner | None = None
    resync: "asyncio.Task[None] | None" = None
    # What the ModelServices last saw of each FineTuneJob and program ConfigMap, by
    # (namespace, name): a change that matters to them reconciles them, others cost nothing.
    handoff: dict[tuple[str, str], Any] = field(default_factory=dict)
    program_sources: dict[tuple[str, str], str] = field(default_factory=dict)
    # Owners whose event-driven reconcile failed in a way that may pass: kopf does not retry
    # event handlers, so the next resync pass does.
    retry: set[OwnerKey] = field(default_factory=set)


def state_of(memo: kopf.Memo) -> OperatorState:
    state = memo["state"]
    if not isinstance(state, OperatorState):
        raise TypeError("memo.state is set by the startup handler")
    return state
