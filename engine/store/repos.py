"""The repositories, one module each; imported here for :class:`engine.store.store.Store`."""

from __future__ import annotations

from engine.store.api_keys import ApiKeyRepo
from engine.store.audit import AuditRepo
from engine.store.base import Repo
from engine.store.flows import FlowRepo
from engine.store.grants import GrantRepo
from engine.store.leases import LeaseRepo
from engine.store.meta import MetaRepo

__all__ = ["ApiKeyRepo", "AuditRepo", "FlowRepo", "GrantRepo", "LeaseRepo", "MetaRepo", "Repo"]
