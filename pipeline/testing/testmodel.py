"""Build an offline Granite 4.0 1B Speech model folder with random weights, for tests and benchmarks.

The Hugging Face hub is out of reach where the tests and CI run, so `build_test_model` writes a
folder that `transformers` (`AutoProcessor`, `GraniteSpeechForConditionalGeneration`) and vLLM
(`LLM(model=dir)`, architecture `granite_speech`) load exactly like the real checkpoint:

- The architecture is the real one (conformer CTC encoder with 4-second attention blocks, windowed
  Q-Former projector, Granite LLM). Only sizes shrink in the tiny model; everything that decides
  shapes or token counts the pipeline relies on keeps its real value: 160-dim stacked mel input,
  `context_size` 200 (4 s blocks), CTC head of 348 classes, window 15 / downsample 5 (so 3 audio
  tokens per 15 encoder frames: 42 audio tokens for 4 s), 4096 positions, the real multipliers
  (written as floats: transformers 5 rejects the hub's integer `embedding_multiplier`), untied
  output layer, GQA in the LLM, no LoRA adapter.
- The tokenizer is a byte-level BPE trained here from a short built-in English text (no download),
  plus the real special tokens: `<|audio|>` (the audio placeholder, `audio_token_index`),
  `<|end_of_text|>` (eos and bos) and `<|pad|>`. In the full-size model filler tokens pad the
  vocabulary to the real 100,353 ids so that pad = 100256, eos = bos = 100257 and
  `<|audio|>` = 100352, as in the real tokenizer; fillers sit in the BPE vocabulary (no merge makes
  them), not among the added tokens, so loading stays fast.
- The chat template renders one user turn as `USER: {content}\\n ASSISTANT:`, as the real one does
  for the transcription prompt (the real file could not be fetched; other roles raise, so code
  that relies on unverified template behaviour fails loudly instead of silently differing).
- The processor (`GraniteSpeechProcessor` + `GraniteSpeechFeatureExtractor`: 80 mels, n_fft 512,
  window 400, hop 160) is saved with transformers' own `save_pretrained`, so its files are whatever
  the installed transformers expects. Its construction needs `import torchaudio` to work.

Tiny (default): 0.8 M parameters, 3.2 MB, float32 (so transformers and vLLM give identical greedy
ids on CPU), built in ~4 s, byte-identical for a given seed. Full size: the published real-size
architecture (2,313 M parameters) in bfloat16, 4.3 GiB, ~45 s to build and save on 2 cores, for
speed and memory benchmarks. The weights are random: outputs are meaningless, only shapes, token
counts and throughput are real. The weights go out under the hub checkpoint's names
(`language_model.model.*`, `encoder.*`, `projector.*`), the names vLLM's loader expects.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tokenizers import Tokenizer

__all__ = ["AUDIO_TOKEN", "CHAT_TEMPLATE", "EOS_TOKEN", "PAD_TOKEN", "REAL_CONFIG", "build_test_model"]

AUDIO_TOKEN = "<|audio|>"
EOS_TOKEN = "<|end_of_text|>"  # also the bos token, as in the real tokenizer
PAD_TOKEN = "<|pad|>"

# Real-size token ids (the full-size model reproduces them exactly).
_FULL_VOCAB = 100_353
_FULL_PAD_ID = 100_256
_FULL_EOS_ID = 100_257
_FULL_AUDIO_ID = 100_352

# Byte-level BPE: 256 byte tokens plus merges learned from _TEXT.
_TINY_BPE_VOCAB = 372

CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'user' -%}"
    "{{- 'USER: ' + message['content'] + '\\n' -}}"
    "{%- else -%}"
    "{{- raise_exception('test model chat template: only user messages are supported') -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- ' ASSISTANT:' -}}{%- endif -%}"
)

# Architecture of ibm-granite/granite-4.0-1b-speech as published (shared/reference/
# granite-4.0-1b-speech.config.json, kept here so the product does not read shared/).
# Token ids are filled in by the builder.
REAL_CONFIG: dict[str, Any] = {
    "downsample_rate": 5,
    "window_size": 15,
    "has_lora_adapter": False,
    "tie_word_embeddings": False,
    "encoder_config": {
        "input_dim": 160,
        "num_layers": 16,
        "hidden_dim": 1024,
        "num_heads": 8,
        "dim_head": 128,
        "feedforward_mult": 4,
        "output_dim": 348,
        "context_size": 200,
        "max_pos_emb": 512,
        "conv_kernel_size": 15,
        "conv_expansion_factor": 2,
    },
    "projector_config": {
        "model_type": "blip_2_qformer",
        "num_hidden_layers": 2,
        "hidden_size": 1024,
        "num_attention_heads": 16,
        "intermediate_size": 4096,
        "encoder_hidden_size": 1024,
        "cross_attention_frequency": 1,
    },
    "text_config": {
        "model_type": "granite",
        "hidden_size": 2048,
        "num_hidden_layers": 40,
        "num_attention_heads": 16,
        "num_key_value_heads": 4,
        "intermediate_size": 4096,
        "rope_theta": 10000.0,
        "max_position_embeddings": 4096,
        "embedding_multiplier": 12.0,
        "attention_multiplier": 0.0078125,
        "residual_multiplier": 0.22,
        "logits_scaling": 8.0,
        "tie_word_embeddings": False,
    },
}

# Tiny sizes: 2 conformer blocks of 64, 2 Q-Former layers of 64, 2 Granite layers of 128 (GQA 4/2).
# Weights are drawn with std 0.2 instead of transformers' 0.02: at 0.02 the Q-Former's unit-variance
# queries drown the audio (projector output changes by <1% between different inputs) and every audio
# gives the same ids; at 0.2, different 4 s blocks give different ids, so tests can tell outputs apart.
_TINY_OVERRIDES: dict[str, Any] = {
    "initializer_range": 0.2,
    "encoder_config": {"num_layers": 2, "hidden_dim": 64, "num_heads": 4, "dim_head": 16},
    "projector_config": {
        "hidden_size": 64,
        "num_attention_heads": 4,
        "intermediate_size": 128,
        "encoder_hidden_size": 64,
        "initializer_range": 0.2,
    },
    "text_config": {
        "initializer_range": 0.2,
        "hidden_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "intermediate_size": 256,
        "attention_multiplier": 1.0 / 32,  # 1/head_dim, as the real 1/128
    },
}

# Training text for the tiny BPE: the prompts the pipeline sends, and ordinary English.
_TEXT = """\
can you transcribe the speech into a written format?
translate the speech to English. translate the speech to French. translate the speech to German.
translate the speech to Spanish. translate the speech to Portuguese. translate the speech to Japanese.
Keywords: Granite, IBM, Kubernetes, Parquet, vLLM.
the quick brown fox jumps over the lazy dog while the children watch from the window.
thank you for calling customer support, my name is anna, how can i help you today?
i would like to check the status of my order, it was supposed to arrive on monday.
we are sorry for the delay, the package left our warehouse this morning and should be there tomorrow.
the meeting starts at nine in the morning and the report has to be written before the end of the week.
she said that the weather would be better in the afternoon, so we waited and then walked to the station.
there is nothing more important than a good night of sleep, a glass of water and a walk in the park.
please speak slowly and clearly so that the recording can be transcribed into text without errors.
one two three four five six seven eight nine ten eleven twelve hundred thousand million.
"""


def build_test_model(out_dir: Path, full_size: bool = False, seed: int = 0) -> Path:
    """Write a random-weight Granite Speech model folder to `out_dir` and return it.

    `full_size=False`: tiny float32 model (3.2 MB). `full_size=True`: real-size bfloat16 model
    (4.3 GiB on disk, ~5 GiB of memory while building). The same seed gives the same files; files
    of the same names already in `out_dir` are replaced. Needs torch, transformers >= 5 and an
    importable torchaudio (the feature extractor's MelSpectrogram); never touches the network.
    """
    from .. import cpu_torch

    cpu_torch.install()
    import torch
    from transformers import (
        GenerationConfig,
        GraniteSpeechConfig,
        GraniteSpeechFeatureExtractor,
        GraniteSpeechForConditionalGeneration,
        GraniteSpeechProcessor,
        PreTrainedTokenizerFast,
    )

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=_train_tokenizer(full_size),
        bos_token=EOS_TOKEN,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        model_max_length=REAL_CONFIG["text_config"]["max_position_embeddings"],
        chat_template=CHAT_TEMPLATE,
    )
    audio_id, eos_id, pad_id = (tokenizer.convert_tokens_to_ids(t) for t in (AUDIO_TOKEN, EOS_TOKEN, PAD_TOKEN))
    ids = (len(tokenizer), audio_id, eos_id, pad_id)
    if full_size and ids != (_FULL_VOCAB, _FULL_AUDIO_ID, _FULL_EOS_ID, _FULL_PAD_ID):
        raise RuntimeError("full-size tokenizer does not reproduce the real token ids")

    cfg = _config_dict(full_size)
    cfg["audio_token_index"] = audio_id
    cfg["text_config"].update(vocab_size=len(tokenizer), bos_token_id=eos_id, eos_token_id=eos_id, pad_token_id=pad_id)
    config = GraniteSpeechConfig(**cfg)
    config.architectures = ["GraniteSpeechForConditionalGeneration"]

    dtype = torch.bfloat16 if full_size else torch.float32
    with torch.random.fork_rng(devices=[]):  # seeded weights without touching the caller's RNG
        torch.manual_seed(seed)
        model = GraniteSpeechForConditionalGeneration._from_config(config, dtype=dtype)
    model.generation_config = GenerationConfig(bos_token_id=eos_id, eos_token_id=eos_id, pad_token_id=pad_id)
    # The CTC head never picks classes whose text we cannot write: Katakana (256..347, mapping
    # unpublished; a block with any has no CTC text) and control characters. Its greedy text is then
    # printable Latin-1, so every path of speculative decoding can be exercised on random weights.
    with torch.no_grad():
        bias = model.model.encoder.out.bias
        for lo, hi in ((1, 32), (127, 160), (256, bias.numel())):
            bias[lo:hi] = -30.0
    # Checkpoint names as on the hub: transformers 5.19 writes `language_model.model.model.*` (its
    # reverse key mapping applies twice), which transformers reads back but vLLM cannot load.
    state = {_hub_name(k): t for k, t in model.state_dict().items()}
    model.save_pretrained(out_dir, state_dict=state, save_original_format=False)  # safetensors
    del model, state

    feature_extractor = GraniteSpeechFeatureExtractor(
        sampling_rate=16_000,
        n_fft=512,
        win_length=400,
        hop_length=160,
        n_mels=80,
        projector_window_size=cfg["window_size"],
        projector_downsample_rate=cfg["downsample_rate"],
    )
    processor = GraniteSpeechProcessor(feature_extractor, tokenizer, AUDIO_TOKEN, chat_template=CHAT_TEMPLATE)
    processor.save_pretrained(out_dir)  # tokenizer files, chat template, processor + feature-extractor config
    return out_dir


# transformers' in-memory module names -> the hub checkpoint's names (what vLLM's loader expects).
_HUB_PREFIXES = (
    ("model.language_model.", "language_model.model."),
    ("lm_head.", "language_model.lm_head."),
    ("model.encoder.", "encoder."),
    ("model.projector.", "projector."),
)


def _hub_name(name: str) -> str:
    """The hub checkpoint's name for one of transformers' state-dict keys."""
    for ours, hub in _HUB_PREFIXES:
        if name.startswith(ours):
            return hub + name[len(ours) :]
    raise ValueError(f"unexpected parameter name {name!r}: transformers' module layout changed")


def _config_dict(full_size: bool) -> dict[str, Any]:
    """The real-size config, or its tiny version; a deep copy the caller may change."""
    cfg = json.loads(json.dumps(REAL_CONFIG))
    if not full_size:
        for key, value in _TINY_OVERRIDES.items():
            if isinstance(value, dict):
                cfg[key].update(value)
            else:
                cfg[key] = value
    return cfg


def _train_tokenizer(full_size: bool) -> Tokenizer:
    """Byte-level BPE trained on `_TEXT`, with the special tokens at their real relative places.

    Ids: BPE tokens first, then `<|pad|>`, `<|end_of_text|>`, `<|audio|>` last. For the full size,
    filler tokens `<|filler_N|>` are put into the BPE vocabulary so that the ids land exactly on
    the real ones.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=_TINY_BPE_VOCAB, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    tok.train_from_iterator(_TEXT.splitlines(), trainer)

    spec = json.loads(tok.to_str())
    vocab: dict[str, int] = spec["model"]["vocab"]
    n = len(vocab)
    if full_size:
        pad_id, eos_id, audio_id = _FULL_PAD_ID, _FULL_EOS_ID, _FULL_AUDIO_ID
        fillers = [i for i in range(n, _FULL_VOCAB) if i not in (pad_id, eos_id, audio_id)]
        vocab.update({f"<|filler_{i}|>": i for i in fillers})
    else:
        pad_id, eos_id, audio_id = n, n + 1, n + 2
    # Special tokens live in the BPE vocabulary too: `tokenizers` ignores an added token's stored id
    # unless the vocabulary holds it, and would renumber them after the last vocabulary id.
    vocab.update({PAD_TOKEN: pad_id, EOS_TOKEN: eos_id, AUDIO_TOKEN: audio_id})
    flags = {"single_word": False, "lstrip": False, "rstrip": False, "normalized": False, "special": True}
    specials = ((pad_id, PAD_TOKEN), (eos_id, EOS_TOKEN), (audio_id, AUDIO_TOKEN))
    spec["added_tokens"] = [{"id": i, "content": t, **flags} for i, t in specials]
    return Tokenizer.from_str(json.dumps(spec))
