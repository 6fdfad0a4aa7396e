"""Tiny models and character tokenizers built locally (nothing is downloaded).

The tiny default is a LlamaForCausalLM: with model_type qwen2, AutoTokenizer swaps a custom
tokenizer for Qwen2Tokenizer and silently drops newlines.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

PAD, BOS, EOS = "<pad>", "<s>", "</s>"
DEFAULT_ALPHABET = "0123456789+-*/=()<>[]{}.,:;?!#$%^&_|'\" \nabcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ\\"


def char_tokenizer(alphabet: Iterable[str] = DEFAULT_ALPHABET) -> PreTrainedTokenizerFast:
    """A character-level tokenizer: one id per character of ``alphabet`` plus pad/bos/eos.

    Unknown characters map to no token (they are dropped by the pre-tokenizer split); pass an
    alphabet that covers the task's text.
    """
    chars = list(dict.fromkeys(alphabet))
    vocab = {PAD: 0, BOS: 1, EOS: 2}
    for c in chars:
        vocab.setdefault(c, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=PAD))
    # Split into single characters, keeping whitespace as tokens of its own.
    tok.pre_tokenizer = pre_tokenizers.Split(pattern="", behavior="isolated")
    tok.decoder = decoders.Fuse()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token=PAD, bos_token=BOS, eos_token=EOS, unk_token=PAD
    )
    fast.padding_side = "left"
    return fast


def tiny_llama(
    vocab_size: int,
    hidden: int = 64,
    layers: int = 2,
    heads: int = 4,
    kv_heads: int = 2,
    max_positions: int = 256,
    seed: int = 0,
) -> LlamaForCausalLM:
    """A random-initialised Llama of the given size (deterministic in ``seed``)."""
    cfg = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=hidden * 4,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=max_positions,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        tie_word_embeddings=True,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(cfg)
    return model
