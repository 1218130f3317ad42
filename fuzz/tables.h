#pragma once
// The fixed query and corpus tables the qrels and hard-negative fuzzers
// resolve ids against (the seeds use these ids).
#include <contaccum/data/text_table.h>

#include <memory>

namespace contaccum_fuzz {

inline std::shared_ptr<const contaccum::TextTable> fixed_queries() {
  static const auto table = [] {
    auto t = std::make_shared<contaccum::TextTable>();
    t->add("q1", "", "a");
    t->add("q2", "", "b");
    t->add("q3", "", "c");
    return std::shared_ptr<const contaccum::TextTable>(t);
  }();
  return table;
}

inline std::shared_ptr<const contaccum::TextTable> fixed_corpus() {
  static const auto table = [] {
    auto t = std::make_shared<contaccum::TextTable>();
    t->add("d1", "T1", "first text");
    t->add("d2", "", "second");
    t->add("d3", "", "caf\xC3\xA9");
    t->add("d4", "T4", "fourth");
    return std::shared_ptr<const contaccum::TextTable>(t);
  }();
  return table;
}

}  // namespace contaccum_fuzz
