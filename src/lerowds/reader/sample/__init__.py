"""From an episode's rows to one training sample: parse rows, delta windows, build the sample dict, augment seeds."""

from lerowds.reader.sample.build import SampleSpec, VideoFn, build_sample, decode_image, frames_to_tensor
from lerowds.reader.sample.episode import EpisodeRows
from lerowds.reader.sample.windows import DeltaWindows, window_positions

__all__ = [
    "DeltaWindows",
    "EpisodeRows",
    "SampleSpec",
    "VideoFn",
    "build_sample",
    "decode_image",
    "frames_to_tensor",
    "window_positions",
]
