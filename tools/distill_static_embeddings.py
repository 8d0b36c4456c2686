#!/usr/bin/env python3
"""Distils `models/wordpiece-static-384.bin`, the static word-piece embeddings the offline intent
classifier adds to its TF-IDF features (see `src/llm/embedding.rs`).

Each of the 30,522 word pieces of sentence-transformers/all-MiniLM-L6-v2 (Apache-2.0) is run
through the model alone, as `[CLS] piece [SEP]`, and the mean-pooled output is kept: a table in
which a sentence's vector is a weighted mean of its pieces' rows, with no transformer at run time.

Usage: pip install safetensors numpy scipy; download the model's files (config, vocab.txt,
model.safetensors) into DIR; then `python3 tools/distill_static_embeddings.py DIR`.

File format (little-endian): b"PWPE", u32 version (1), u32 pieces, u32 dims, then per piece a
u16 byte length and its UTF-8 text (vocab order), then per piece an f32 scale, then the
pieces x dims matrix as i8 (a piece's row is i8 * scale).
"""
import struct, sys
import numpy as np
from safetensors.numpy import load_file
from scipy.special import erf

model_dir = sys.argv[1]
W = load_file(f"{model_dir}/model.safetensors")
vocab = open(f"{model_dir}/vocab.txt", encoding="utf-8").read().split("\n")
if vocab and vocab[-1] == "":
    vocab.pop()
HEADS, HIDDEN, LAYERS = 12, 384, 6


def layer_norm(x, g, b):
    m = x.mean(-1, keepdims=True)
    v = ((x - m) ** 2).mean(-1, keepdims=True)
    return (x - m) / np.sqrt(v + 1e-12) * g + b


def dense(x, name):
    flat = x.reshape(-1, x.shape[-1]) @ W[name + ".weight"].T + W[name + ".bias"]
    return flat.reshape(*x.shape[:-1], -1)


def encode(ids):
    n, t = ids.shape
    x = (W["embeddings.word_embeddings.weight"][ids]
         + W["embeddings.position_embeddings.weight"][:t][None]
         + W["embeddings.token_type_embeddings.weight"][0])
    x = layer_norm(x, W["embeddings.LayerNorm.weight"], W["embeddings.LayerNorm.bias"])
    d = HIDDEN // HEADS
    for l in range(LAYERS):
        p = f"encoder.layer.{l}."
        q, k, v = (dense(x, p + f"attention.self.{w}").reshape(n, t, HEADS, d).transpose(0, 2, 1, 3)
                   for w in ("query", "key", "value"))
        a = q @ k.transpose(0, 1, 3, 2) / np.sqrt(d)
        a = np.exp(a - a.max(-1, keepdims=True))
        a /= a.sum(-1, keepdims=True)
        c = (a @ v).transpose(0, 2, 1, 3).reshape(n, t, HIDDEN)
        x = layer_norm(x + dense(c, p + "attention.output.dense"),
                       W[p + "attention.output.LayerNorm.weight"], W[p + "attention.output.LayerNorm.bias"])
        h = dense(x, p + "intermediate.dense")
        h = 0.5 * h * (1 + erf(h / np.sqrt(2)))
        x = layer_norm(x + dense(h, p + "output.dense"),
                       W[p + "output.LayerNorm.weight"], W[p + "output.LayerNorm.bias"])
    return x.mean(1)


cls, sep = vocab.index("[CLS]"), vocab.index("[SEP]")
rows = []
for start in range(0, len(vocab), 2048):
    ids = np.arange(start, min(start + 2048, len(vocab)))
    batch = np.stack([np.full_like(ids, cls), ids, np.full_like(ids, sep)], axis=1)
    rows.append(encode(batch).astype(np.float32))
table = np.vstack(rows)
scale = np.abs(table).max(1) / 127.0
scale[scale == 0] = 1.0
quantized = np.round(table / scale[:, None]).clip(-127, 127).astype(np.int8)

with open("models/wordpiece-static-384.bin", "wb") as out:
    out.write(b"PWPE" + struct.pack("<III", 1, len(vocab), table.shape[1]))
    for piece in vocab:
        data = piece.encode("utf-8")
        out.write(struct.pack("<H", len(data)) + data)
    out.write(scale.astype("<f4").tobytes())
    out.write(quantized.tobytes())
print(f"wrote {len(vocab)} pieces x {table.shape[1]} dims")
