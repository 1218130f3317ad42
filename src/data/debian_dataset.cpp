// build_debian_dataset: which packages become queries and passages, and in
// which split, exactly as build.py chooses them.
#include "contaccum/data/debian_descriptions.h"

#include "contaccum/data/beir_writer.h"

#include "debian_package.h"
#include "python_random.h"
#include "python_text.h"

#include <c10/util/Exception.h>

#include <algorithm>
#include <unordered_map>

namespace contaccum {

using detail::py_word_count;
using detail::PythonRandom;
using detail::strip_restatement;
using detail::valid_package;

namespace {

struct Kept {
  std::string_view package, synopsis, text;
};

void check_options(const std::vector<DebianDescription>& descriptions, const DebianDatasetOptions& options) {
  TORCH_CHECK(options.dev_queries() >= 0, "DebianDatasetOptions::dev_queries must be >= 0, got ",
              options.dev_queries());
  TORCH_CHECK(options.reserved_queries() >= 0, "DebianDatasetOptions::reserved_queries must be >= 0, got ",
              options.reserved_queries());
  TORCH_CHECK(options.max_train_queries() >= -1, "DebianDatasetOptions::max_train_queries must be >= -1, got ",
              options.max_train_queries());
  // At least one word each: the readers reject empty texts.
  TORCH_CHECK(options.min_passage_words() >= 1, "DebianDatasetOptions::min_passage_words must be >= 1, got ",
              options.min_passage_words());
  TORCH_CHECK(options.min_query_words() >= 1, "DebianDatasetOptions::min_query_words must be >= 1, got ",
              options.min_query_words());
  TORCH_CHECK(descriptions.size() < (size_t{1} << 32), "build_debian_dataset: at most 2^32 - 1 descriptions, got ",
              descriptions.size());
}

// build.py's selection: a package, synopsis or long description shared by
// several packages drops them all, and so does a passage shared after its
// restatement is removed; too short ones go too. Counts into `summary`.
std::vector<Kept> select_packages(const std::vector<DebianDescription>& descriptions,
                                  const DebianDatasetOptions& options, DebianDatasetSummary& summary) {
  std::unordered_map<std::string_view, int64_t> packages, synopses, texts;
  for (size_t i = 0; i < descriptions.size(); ++i) {
    const auto& d = descriptions[i];
    TORCH_CHECK(valid_package(d.package), "build_debian_dataset: descriptions[", i,
                "].package must be non-empty without whitespace, got '", d.package, "'");
    packages[d.package] += 1;
    synopses[d.synopsis] += 1;
    texts[d.long_description] += 1;
  }

  summary.packages = static_cast<int64_t>(descriptions.size());
  std::vector<Kept> candidates;
  for (const auto& d : descriptions) {
    if (packages[d.package] != 1 || synopses[d.synopsis] != 1 || texts[d.long_description] != 1) {
      summary.dropped_duplicate += 1;
    } else {
      candidates.push_back({d.package, d.synopsis, strip_restatement(d.synopsis, d.long_description)});
    }
  }
  // Descriptions that differ only in their restating first sentence (davix,
  // davix-dev, davix-tests) leave equal passages: no query could tell them
  // apart, so they go too.
  std::unordered_map<std::string_view, int64_t> passages;
  for (const auto& c : candidates) passages[c.text] += 1;
  std::vector<Kept> kept;
  for (const auto& c : candidates) {
    if (passages[c.text] != 1) {
      summary.dropped_duplicate += 1;
    } else if (py_word_count(c.text) < options.min_passage_words() ||
               py_word_count(c.synopsis) < options.min_query_words()) {
      summary.dropped_too_short += 1;
    } else {
      kept.push_back(c);
    }
  }
  return kept;
}

}  // namespace

DebianDatasetSummary build_debian_dataset(const std::vector<DebianDescription>& descriptions,
                                          const std::string& out_dir, const DebianDatasetOptions& options) {
  check_options(descriptions, options);
  DebianDatasetSummary summary;
  auto kept = select_packages(descriptions, options, summary);
  summary.kept = static_cast<int64_t>(kept.size());
  const int64_t held = options.reserved_queries() + options.dev_queries();
  TORCH_CHECK(summary.kept > held, "build_debian_dataset: ", summary.kept, " of ", summary.packages, " packages kept (",
              summary.dropped_duplicate, " duplicates, ", summary.dropped_too_short,
              " too short), need more than reserved_queries + dev_queries = ", held, " to leave training queries");

  std::sort(kept.begin(), kept.end(), [](const Kept& a, const Kept& b) { return a.package < b.package; });
  std::vector<Kept> order = kept;
  PythonRandom(options.seed()).shuffle(order);
  summary.reserved = options.reserved_queries();
  summary.dev = options.dev_queries();
  summary.train = summary.kept - held;
  if (options.max_train_queries() >= 0) summary.train = std::min(summary.train, options.max_train_queries());

  // Ids live here; reserved up front so the views into them stay valid.
  std::vector<std::string> ids;
  ids.reserve(kept.size() + static_cast<size_t>(summary.dev + summary.train) * 2);
  auto id = [&](const char* prefix, std::string_view package) -> std::string_view {
    ids.push_back(prefix + std::string(package));
    return ids.back();
  };
  std::vector<BeirPassage> corpus;
  corpus.reserve(kept.size());
  for (const auto& k : kept) corpus.push_back({id("d:", k.package), k.text});
  auto queries = [&](int64_t begin, int64_t count) {
    std::vector<BeirQuery> rows;
    rows.reserve(static_cast<size_t>(count));
    for (int64_t i = begin; i < begin + count; ++i) {
      const auto& k = order[static_cast<size_t>(i)];
      rows.push_back({id("q:", k.package), k.synopsis, id("d:", k.package)});
    }
    return rows;
  };
  const auto dev = queries(options.reserved_queries(), summary.dev);
  const auto train = queries(held, summary.train);
  write_beir_dataset(out_dir, corpus, train, dev, "build_debian_dataset");
  return summary;
}

}  // namespace contaccum
