"""The records: everything that crosses a stage, process or storage boundary, as frozen
dataclasses, each module holding one boundary's records beside their one Arrow schema.

    listing   --Recording-->  cut (audio/)  --Blocks, then the CutOutcome-->        audio.py
    Ray hops  --BLOCK_ROWS (a block and its Prompt) / RESULT_ROWS-->         transport.py, prompt.py
    engines   --BlockResult (with Words)-->  assemble  --Segment + RecordingStatus-->  results.py
    run       --Settled: a recording's rows, all or nothing-->  lake                settled.py
    compliance --Hit, PiiSpan, Scanned-->  lake                                    compliance.py
    plan      --PlanRecording + PlanBlock-->  Parquet                              plan.py
    tables.py: every output record with its schema, and the datasets a commit holds; rows.py: how
    a record becomes a row.

Output records' fields are their schemas' columns, in order (a test holds them equal), so adding a
column is three edits: the record, its schema entry, and the code that fills it.

Every stage imports the records; they import nothing of the pipeline but its errors.

May import: errors.
"""
