"""Inference backends behind one interface (base.Backend); create_backend() picks one."""
from .base import BACKEND_CHOICES, Backend, Limits, create_backend

__all__ = ["BACKEND_CHOICES", "Backend", "Limits", "create_backend"]
