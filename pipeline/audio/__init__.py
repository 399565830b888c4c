"""Audio-in: one recording opened from its source, decoded, and cut into blocks of speech, streaming
(a few seconds of audio per channel in memory, whatever the recording's length). decode.py turns
any container and codec into 16 kHz float32 per channel; vad.py is Silero's VAD without torch
(vad_export.py writes its ONNX graph); blocks.py finds speech and cuts it at pauses; limits.py
bounds a recording's decode time and memory; cut.py puts them together: `cut_recording` yields a
recording's blocks and returns its outcome. See docs/architecture.md#decoding and #blocks.

May import: sources, records, config, errors.
"""
