"""Make `import torchaudio` work where its compiled extension cannot load.

PyPI's torchaudio is a CUDA build; next to the CPU torch that vLLM's CPU build pins, its `.so`
files fail to load (`libc10_cuda.so` missing) and `import torchaudio` raises. transformers'
Granite feature extractor needs only torchaudio's pure-Python `MelSpectrogram`, so on that
failure we register an empty stand-in for `torchaudio._extension` and import again. Where the
extension loads (GPU images), nothing changes. The stand-in lives in this process only: code
that spawns Python processes which import torchaudio must keep that work in-process (see
engines/vllm.py).
"""

from __future__ import annotations

import sys
import types


def ensure_torchaudio() -> bool:
    """Import torchaudio; True when its compiled extension had to be replaced by the stand-in."""
    if isinstance(sys.modules.get("torchaudio._extension"), types.ModuleType) and getattr(
        sys.modules["torchaudio._extension"], "_GRANITE_BATCH_STUB", False
    ):
        return True
    try:
        import torchaudio  # noqa: F401

        return False
    except ImportError:
        return False  # not installed: transformers reports what it needs
    except OSError:
        pass
    for name in [m for m in sys.modules if m == "torchaudio" or m.startswith("torchaudio.")]:
        del sys.modules[name]
    stub = types.ModuleType("torchaudio._extension")
    stub._IS_TORCHAUDIO_EXT_AVAILABLE = False  # type: ignore[attr-defined]
    stub._IS_ALIGN_AVAILABLE = False  # type: ignore[attr-defined]
    stub.fail_if_no_align = lambda func: func  # type: ignore[attr-defined]
    stub._check_cuda_version = lambda: None  # type: ignore[attr-defined]
    stub._GRANITE_BATCH_STUB = True  # type: ignore[attr-defined]
    sys.modules["torchaudio._extension"] = stub
    import torchaudio  # noqa: F401,F811

    return True
