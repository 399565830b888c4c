"""All of the Ray glue of `granite-batch run` (docs/run.md). The stages themselves are Ray-free,
and every block and result crosses between processes as typed Arrow rows (records/transport.py:
BLOCK_ROWS, RESULT_ROWS), the hop from a dispatcher to an engine worker included. What Ray pickles
is only the set-up and the bookkeeping: an engine worker's JobConfig and PoolConfig when it
starts, and the broker's `Slot` (a small frozen record) that travels with each call.

Per window of recordings, one Ray Data pipeline:

    from_items(recordings) -> map_batches(cut_batches)  CPU tasks: fetch, decode, VAD, blocks (cut.py)
                           -> map_batches(Dispatch)     0-CPU actors: hand batches to engines (dispatch.py)
                           -> iter_rows() in the driver (run/driver.py: assemble, commit)

Engines are long-lived actors outside Ray Data (engine_worker.py), one group per `engine.pools`
entry (GPU workers with CUDA vLLM, CPU workers with vLLM's CPU build). Ray Data's actor pools are
homogeneous, and `streaming_split(equal=False)` divided work evenly in our tests (a slow consumer
throttled the fast one), so a broker actor (broker.py) hands out engine *slots* instead: each
engine has `pool.slots` slots, a dispatcher takes a free one (earlier pools first) for every
batch and gives it back when the engine answers. A faster engine frees its slots sooner and so
gets more batches: the split follows measured speed, not a ratio. backend.py starts it all.

May import: audio, engines, sources, prompt, records, config, errors.
"""

from .backend import RayBackend

__all__ = ["RayBackend"]
