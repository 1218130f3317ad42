"""sentence-transformers' CachedMultipleNegativesRankingLoss (GradCache in
PyTorch) beside contaccum's benchmark in scripts/device-check.sh: the same
BERT-base shape with random weights, the same token lengths and total
batches, bf16 autocast on one GPU. Prints one JSON line per total batch:
examples per second and peak GPU memory (torch.cuda.max_memory_allocated),
or the error that stopped it (sentence-transformers missing, out of memory).

Usage: python3 scripts/device_check_st.py --total-batch 128,512 --micro-batch 64
"""
import argparse
import json
import time

import torch


def bert_base(vocab):
    from transformers import BertConfig, BertModel

    config = BertConfig(vocab_size=vocab, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                        intermediate_size=3072, max_position_embeddings=512)
    return BertModel(config)


class Tower(torch.nn.Module):
    """A BERT-base tower with mean pooling, as sentence-transformers' modules
    (Transformer + Pooling) return it: features in, features with
    'sentence_embedding' out."""

    def __init__(self, vocab):
        super().__init__()
        self.bert = bert_base(vocab)

    def forward(self, features):
        out = self.bert(input_ids=features["input_ids"], attention_mask=features["attention_mask"])
        mask = features["attention_mask"].unsqueeze(-1).to(out.last_hidden_state.dtype)
        pooled = (out.last_hidden_state * mask).sum(1) / mask.sum(1).clamp_min(1)
        return dict(features, sentence_embedding=pooled)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--total-batch", default="128,512,1024,4096")
    parser.add_argument("--micro-batch", type=int, default=64)
    parser.add_argument("--query-length", type=int, default=32)
    parser.add_argument("--passage-length", type=int, default=128)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--vocab", type=int, default=30522)
    args = parser.parse_args()
    try:
        from sentence_transformers.losses import CachedMultipleNegativesRankingLoss
    except Exception as e:  # noqa: BLE001 - report whatever stopped the import
        print(json.dumps({"impl": "sentence-transformers", "error": f"import: {e}"}))
        return
    device = torch.device("cuda")
    for total in [int(t) for t in args.total_batch.split(",")]:
        row = {"impl": "sentence-transformers CachedMNRL", "total_batch": total, "micro_batch": args.micro_batch,
               "precision": "bf16"}
        try:
            torch.manual_seed(0)
            # A Sequential, as a SentenceTransformer is (the loss looks at model[0]).
            model = torch.nn.Sequential(Tower(args.vocab)).to(device)
            loss = CachedMultipleNegativesRankingLoss(model, mini_batch_size=args.micro_batch)
            optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)

            def features(length):
                ids = torch.randint(1000, args.vocab, (total, length), device=device)
                return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}

            torch.cuda.reset_peak_memory_stats(device)
            times = []
            for step in range(args.steps + 1):
                batch = [features(args.query_length), features(args.passage_length)]
                torch.cuda.synchronize(device)
                start = time.perf_counter()
                optimizer.zero_grad()
                with torch.autocast("cuda", dtype=torch.bfloat16):
                    value = loss(batch, None)
                value.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 2.0)
                optimizer.step()
                torch.cuda.synchronize(device)
                if step > 0:  # the first step warms up
                    times.append(time.perf_counter() - start)
            times.sort()
            seconds = times[len(times) // 2]
            row.update(ms_per_step=1e3 * seconds, examples_per_second=total / seconds,
                       peak_gpu_mb=torch.cuda.max_memory_allocated(device) / 2**20)
        except Exception as e:  # noqa: BLE001 - an out-of-memory is a result too
            row["error"] = str(e).splitlines()[0][:300]
        print(json.dumps(row), flush=True)
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
