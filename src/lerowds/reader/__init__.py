"""The reader: converted shards in, training samples out. The flow, top-down:

``io/``       bytes of an episode (local shards, or remote through a bounded cache with prefetch)
``order/``    which episodes and frames, in what order: rank/worker split, episode pool (pure math)
``sample/``   an episode's rows -> delta windows -> the sample dict
``decode/``   the video frames a sample needs, decoded on exit
``pipeline``  one consumer's loop tying them together; ``dataset`` / ``mix`` are the public datasets
``stream``    what both share: the epoch clock, resume and per-consumer iteration
``resume/``   the saved state and the arithmetic to restore it (also on another world size)
``loader/``   the in-process ``Loader`` and the DataLoader wrapper ``StatefulLoader``
``extras/``   statistics and the ``lerowds plan`` dry run
``shared``    numbers shared with DataLoader workers: the epoch clock, statistics, remote counters
"""
