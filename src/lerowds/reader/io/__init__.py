"""Byte stores: where an episode's bytes come from (local shards, remote HTTP/fsspec through a bounded cache
with prefetch). No torch and no video library is imported here.
"""
