"""The micro-batch runner: batches cut from the stream, run columnar on Arrow where possible."""

from tidal.runners.microbatch.executor import BatchInfo, MicroBatchExecutor
from tidal.runners.microbatch.runner import MicroBatchPipelineResult, MicroBatchRunner

__all__ = ["MicroBatchRunner", "MicroBatchPipelineResult", "MicroBatchExecutor", "BatchInfo"]
