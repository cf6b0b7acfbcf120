"""Old module paths of the reader (before it was grouped into folders) keep importing, with a warning.

``import lerowds.reader.split`` yields the very module ``lerowds.reader.env`` (same objects, so
``isinstance`` and monkeypatching behave), and warns once with the new path.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings
from types import ModuleType

# old name under lerowds.reader -> new module (old names that are now packages re-export instead)
MOVED = {
    "split": "env",
    "segments": "order.segments",
    "pool": "order.pool",
    "mix_order": "order.mix_draws",
    "state": "resume.state",
    "elastic": "resume.elastic",
    "store": "io.store",
    "remote": "io.remote",
    "remote_options": "io.options",
    "cache": "io.cache",
    "prefetch": "io.prefetch",
    "hub": "io.hub",
    "http": "io.http",
    "retry": "io.retry",
    "sources": "io.sources",
    "integrity": "io.integrity",
    "decoder_cache": "decode.cache",
    "episode": "sample.episode",
    "rows": "sample.rows",
    "windows": "sample.windows",
    "augment": "sample.augment",
    "consumer": "pipeline",
    "threads": "loader.core",
    "buffers": "loader.buffers",
    "stateful": "loader.stateful",
    "stats": "extras.stats",
    "plan": "extras.dryrun",
    "plan_view": "extras.dryrun_view",
}
_PREFIX = "lerowds.reader."


class _Alias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds ``lerowds.reader.<old>`` and loads it as the module at its new path."""

    def find_spec(
        self, fullname: str, path: object = None, target: object = None
    ) -> importlib.machinery.ModuleSpec | None:
        if not fullname.startswith(_PREFIX) or fullname[len(_PREFIX) :] not in MOVED:
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        new = _PREFIX + MOVED[spec.name[len(_PREFIX) :]]
        warnings.warn(f"{spec.name} moved to {new}; import it from there", DeprecationWarning, stacklevel=2)
        return importlib.import_module(new)

    def exec_module(self, module: ModuleType) -> None:
        """Nothing to run: the module at the new path is already loaded."""


def install() -> None:
    """Add the alias finder once (idempotent: a reload of ``lerowds.reader`` does not stack finders)."""
    if not any(isinstance(f, _Alias) for f in sys.meta_path):
        sys.meta_path.append(_Alias())
