"""Resume: the saved state (``state``), the batch arithmetic that maps it back to counters (``batches``), and
resuming on another world size (``elastic``).
"""

from lerowds.reader.resume.batches import ResumePlan, dataloader_batch_order, resume_plan, worker_batch_counts

__all__ = ["ResumePlan", "dataloader_batch_order", "resume_plan", "worker_batch_counts"]
