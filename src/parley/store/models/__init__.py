"""SQLAlchemy models. Every area has its own module; all share one `Base.metadata`.

Importing this package imports every model module, so Alembic and `create_all` see them all.
"""

from __future__ import annotations

import importlib
import pkgutil

from parley.store.models.base import Base

for _module in pkgutil.iter_modules(__path__):
    if _module.name != "base":
        importlib.import_module(f"{__name__}.{_module.name}")

metadata = Base.metadata

__all__ = ["Base", "metadata"]
