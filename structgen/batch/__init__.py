"""``structgen batch``: OpenAI Batch files (or records and one schema) run to OpenAI result lines — every success
valid for its request, every failure a typed error, each ``custom_id`` written exactly once, resumable after a
crash — on the local engine, an OpenAI-compatible endpoint, or a Ray cluster (``structgen.batch.ray``).

    lines.py      the input lines and their problems        records.py   JSONL / CSV / .txt records as lines
    plans.py      lines as plans (serve's translation), the whole-file check
    results.py    result and error lines; one line run      journal.py   the output files: append, fsync, resume
    manifest.py   what results depend on, checked on resume executors.py local engine / endpoint, a window in flight
    run.py        a job from check to summary               progress.py  rich bar or plain lines
    ray.py        the Ray Data executor (optional extra ``structgen[ray]``)
"""

from .executors import AsyncExecutor, endpoint_model
from .journal import Journal
from .lines import BatchLine, LineProblem, read_batch_file
from .manifest import endpoint_manifest, local_manifest
from .records import RecordSpec, read_records
from .run import JobOptions, Summary, error_path, run_job

__all__ = ["AsyncExecutor", "BatchLine", "JobOptions", "Journal", "LineProblem", "RecordSpec", "Summary",
           "endpoint_manifest", "endpoint_model", "error_path", "local_manifest", "read_batch_file", "read_records",
           "run_job"]
