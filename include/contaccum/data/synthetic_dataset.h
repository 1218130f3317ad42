#pragma once

#include <torch/arg.h>

#include <cstdint>
#include <string>

namespace contaccum {

/// Options of `build_synthetic_dataset`.
struct SyntheticDatasetOptions {
  /// Seed of every random choice. Default: 13.
  TORCH_ARG(uint64_t, seed) = 13;
  /// Latent topics, each with its own vocabulary. Default: 20.
  TORCH_ARG(int64_t, topics) = 20;
  /// Words in each topic's vocabulary. Default: 100.
  TORCH_ARG(int64_t, words_per_topic) = 100;
  /// Topic-free noise words shared by all passages, drawn Zipf-distributed.
  /// Default: 2000.
  TORCH_ARG(int64_t, background_words) = 2000;
  /// Passages in the corpus. Default: 10000.
  TORCH_ARG(int64_t, passages) = 10000;
  /// Training queries, each about a different passage. Default: 8000.
  TORCH_ARG(int64_t, train_queries) = 8000;
  /// Dev queries, about passages no training query is about. Default: 1000.
  TORCH_ARG(int64_t, dev_queries) = 1000;
  /// Words in a passage. Default: 30.
  TORCH_ARG(int64_t, passage_words) = 30;
  /// Distinct topic words that make a passage distinctive; each occurs in it
  /// at least once. Default: 4.
  TORCH_ARG(int64_t, focus_words) = 4;
  /// Words in a query, drawn without replacement from its passage's focus
  /// words (so at most `focus_words`). Default: 4.
  TORCH_ARG(int64_t, query_words) = 4;
  /// Share of a passage's remaining words drawn from its topic's vocabulary;
  /// the rest are background words. Default: 0.4.
  TORCH_ARG(double, topic_fraction) = 0.4;
  /// Chance that a query word is replaced by its paraphrase: a word that
  /// never occurs in a passage, so lexical matching misses it and a trained
  /// encoder has to learn it. Default: 0.3.
  TORCH_ARG(double, paraphrase_rate) = 0.3;
};

/// Writes a synthetic BEIR retrieval set to `out_dir` in the layout of
/// `build_debian_dataset` (`corpus.jsonl` with ids `d:<n>`, `queries.jsonl`
/// with ids `q:<n>` about passage `n`, train then dev, `qrels/train.tsv`,
/// `qrels/dev.tsv`), with the same all-or-nothing replacement of `out_dir`.
///
/// For when no Debian index can be fetched. Each passage belongs to a latent
/// topic: its words are its focus words, words of its topic and background
/// noise, shuffled. A query is some of its passage's focus words, shuffled,
/// some replaced by paraphrases. Other passages of the topic share some focus
/// words, so with the defaults BM25 ranks about half of the dev answers first
/// (word overlap alone a third, nearly all without paraphrases): a trained
/// encoder can do better by learning the paraphrases. Words are made-up
/// lowercase syllable strings. The data depend on the options alone (not on
/// the platform or standard library).
void build_synthetic_dataset(const std::string& out_dir, const SyntheticDatasetOptions& options = {});

}  // namespace contaccum
