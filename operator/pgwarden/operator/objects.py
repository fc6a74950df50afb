"""Kubernetes objects as the operator reads and builds them: the types `pgwarden.api.objects` defines, under
the name every operator module imports them by."""

from __future__ import annotations

from pgwarden.api.objects import Manifest, Obj

__all__ = ["Manifest", "Obj"]
