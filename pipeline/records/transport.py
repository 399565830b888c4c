"""The rows between the Ray stages of `granite-batch run` (ray_run/), as typed Arrow tables:

cut tasks --BLOCK_ROWS: a block with its prompt, or last its recording's CutOutcome-->
dispatch --(the same rows, a batch per engine call)--> an engine worker --RESULT_ROWS-->
dispatch --RESULT_ROWS: a BlockResult, or the CutOutcome passed through--> the driver (an `Item` each)
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from .audio import BLOCK_TYPE, OUTCOME_TYPE, Block, CutOutcome, Outcome
from .prompt import PROMPT_TYPE, Prompt
from .results import BLOCK_RESULT_TYPE, BlockResult

Item = CutOutcome | BlockResult  # what reaches the driver: a recording's cut outcome, or one transcribed block

BLOCK_ROWS = pa.schema(
    [("block", BLOCK_TYPE), ("prompt", PROMPT_TYPE), ("outcome", OUTCOME_TYPE), ("emitted", pa.int32())]
)
RESULT_ROWS = pa.schema([("result", BLOCK_RESULT_TYPE), ("outcome", OUTCOME_TYPE), ("emitted", pa.int32())])


def block_row(item: tuple[Block, Prompt] | CutOutcome) -> dict[str, Any]:
    if isinstance(item, CutOutcome):
        return {"block": None, "prompt": None, "outcome": item.outcome.to_row(), "emitted": item.emitted}
    block, prompt = item
    return {"block": block.to_row(), "prompt": prompt.to_row(), "outcome": None, "emitted": None}


def from_block_row(row: dict[str, Any]) -> tuple[Block, Prompt] | CutOutcome:
    if row["block"] is None:
        return CutOutcome(Outcome.from_row(row["outcome"]), int(row["emitted"]))
    return Block.from_row(row["block"]), Prompt.from_row(row["prompt"])


def result_row(item: Item) -> dict[str, Any]:
    if isinstance(item, CutOutcome):
        return {"result": None, "outcome": item.outcome.to_row(), "emitted": item.emitted}
    return {"result": item.to_row(), "outcome": None, "emitted": None}


def from_result_row(row: dict[str, Any]) -> Item:
    if row["result"] is None:
        return CutOutcome(Outcome.from_row(row["outcome"]), int(row["emitted"]))
    return BlockResult.from_row(row["result"])
