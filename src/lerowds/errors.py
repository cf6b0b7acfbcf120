"""The named exception types of lerowds. Every message names the bad file, episode or key and what to do."""

from __future__ import annotations


class LerowdsError(Exception):
    """Base class of every error lerowds raises on purpose."""


class SourceError(LerowdsError):
    """The LeRobot v3 source dataset is missing, of another version, or inconsistent."""


class ConversionError(LerowdsError):
    """A conversion step failed (e.g. a clip cannot be cut on a keyframe, output dir holds another dataset)."""


class FormatError(LerowdsError):
    """A converted lerowds dataset (index, episode table or shard) is missing, corrupt or of another version."""


class VerifyError(LerowdsError):
    """`lerowds verify` found shards or episodes that disagree with the index."""


class ConfigError(LerowdsError, ValueError):
    """A reader or converter argument is invalid (delta_timestamps, episodes, world size, ...)."""


class VideoDecodeError(LerowdsError):
    """A video frame could not be decoded; the message names the episode, camera and timestamp."""


class ResumeMismatchError(LerowdsError, ValueError):
    """A resume state does not match the dataset's configuration; the message names the field and both values."""


class OrderVersionError(ResumeMismatchError):
    """A resume state was saved under another sample-order version than this lerowds produces."""


class RemoteError(LerowdsError, OSError):
    """A remote read failed after all retries; the message names the URL, episode and status."""
