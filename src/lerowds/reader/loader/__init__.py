"""The in-process ``Loader`` (threads, pinned buffers) and the DataLoader wrapper ``StatefulLoader``."""

from lerowds.reader.loader.core import Loader
from lerowds.reader.loader.stateful import StatefulLoader

__all__ = ["Loader", "StatefulLoader"]
