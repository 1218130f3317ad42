#!/usr/bin/python3
"""An independent BERT forward pass in plain PyTorch, for the C++ test
`TransformerEncoder.MatchesThePythonReference`.

Usage: bert_reference.py DIR

Reads DIR/model/config.json and DIR/model/model.safetensors (as written by
`TransformerEncoderImpl::save_hf_pretrained`; the safetensors file is parsed
here by hand with struct + json + numpy, the `safetensors` package is not
needed) and DIR/inputs.json (raw little-endian tensors: input_ids,
attention_mask and optionally token_type_ids). Runs Hugging Face's
`BertModel` architecture without the pooler, in eval mode (no dropout), in
float32, written from the BERT paper and Hugging Face's conventions (post
LayerNorm, additive mask `(1 - mask) * finfo.min`, exact erf GELU) with
elementary operations, not from the C++ code. Writes DIR/cls.bin and
DIR/mean.bin (float32, [batch, hidden]) and DIR/result.json with the shapes.
"""
import json
import math
import os
import struct
import sys

import numpy as np
import torch

NP_DTYPES = {"F64": np.float64, "F32": np.float32, "I64": np.int64, "int64": np.int64}


def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    header.pop("__metadata__", None)
    data = raw[8 + n:]
    tensors = {}
    for name, info in header.items():
        begin, end = info["data_offsets"]
        array = np.frombuffer(data[begin:end], dtype=NP_DTYPES[info["dtype"]]).reshape(info["shape"])
        tensors[name] = torch.from_numpy(array.copy()).to(torch.float32)
    return tensors


def load_raw(directory, entry):
    array = np.fromfile(os.path.join(directory, entry["file"]), dtype=NP_DTYPES[entry["dtype"]])
    return torch.from_numpy(array.reshape(entry["shape"]).copy())


def layer_norm(x, weight, bias, eps):
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * weight + bias


def linear(x, w, prefix):
    return x @ w[prefix + ".weight"].t() + w[prefix + ".bias"]


def gelu(x):
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


def bert(w, cfg, ids, mask, types):
    eps = cfg.get("layer_norm_eps", 1e-12)
    heads = cfg["num_attention_heads"]
    batch, seq = ids.shape
    hidden = cfg["hidden_size"]
    size = hidden // heads
    positions = torch.arange(seq)
    x = (w["embeddings.word_embeddings.weight"][ids] + w["embeddings.token_type_embeddings.weight"][types]
         + w["embeddings.position_embeddings.weight"][positions][None])
    x = layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], eps)
    additive = (1.0 - mask.to(torch.float32))[:, None, None, :] * torch.finfo(torch.float32).min
    for i in range(cfg["num_hidden_layers"]):
        p = "encoder.layer.%d." % i
        q, k, v = (linear(x, w, p + "attention.self." + n).view(batch, seq, heads, size)
                   for n in ("query", "key", "value"))
        scores = torch.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(size) + additive
        scores = scores - scores.max(-1, keepdim=True).values
        probs = torch.exp(scores)
        probs = probs / probs.sum(-1, keepdim=True)
        context = torch.einsum("bhqk,bkhd->bqhd", probs, v).reshape(batch, seq, hidden)
        x = layer_norm(linear(context, w, p + "attention.output.dense") + x,
                       w[p + "attention.output.LayerNorm.weight"], w[p + "attention.output.LayerNorm.bias"], eps)
        inner = gelu(linear(x, w, p + "intermediate.dense"))
        x = layer_norm(linear(inner, w, p + "output.dense") + x,
                       w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"], eps)
    return x


def main(directory):
    model = os.path.join(directory, "model")
    with open(os.path.join(model, "config.json")) as f:
        cfg = json.load(f)
    assert cfg["model_type"] == "bert" and cfg["architectures"] == ["BertModel"], cfg
    assert cfg["hidden_act"] == "gelu", cfg["hidden_act"]
    weights = read_safetensors(os.path.join(model, "model.safetensors"))
    with open(os.path.join(directory, "inputs.json")) as f:
        inputs = json.load(f)
    ids = load_raw(directory, inputs["input_ids"])
    mask = load_raw(directory, inputs["attention_mask"])
    types = load_raw(directory, inputs["token_type_ids"]) if "token_type_ids" in inputs else torch.zeros_like(ids)
    with torch.no_grad():
        states = bert(weights, cfg, ids, mask, types)
        m = mask.to(torch.float32)[:, :, None]
        outputs = {"cls": states[:, 0], "mean": (states * m).sum(1) / m.sum(1).clamp_min(1.0)}
    result = {}
    for name, tensor in outputs.items():
        tensor.contiguous().numpy().astype("<f4").tofile(os.path.join(directory, name + ".bin"))
        result[name] = {"file": name + ".bin", "shape": list(tensor.shape)}
    with open(os.path.join(directory, "result.json"), "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main(sys.argv[1])
