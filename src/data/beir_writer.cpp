#include "contaccum/data/beir_writer.h"

#include "contaccum/core/error_text.h"

#include "contaccum/io/atomic_file.h"

#include <c10/util/Exception.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <functional>
#include <sstream>

namespace fs = std::filesystem;

namespace contaccum {
namespace {

// Through an AtomicFile: a full disk is an error naming the file and the
// system's reason (an ofstream only says that it failed).
void write_file(const fs::path& path, const std::function<void(std::ostream&)>& body) {
  std::ostringstream text;
  body(text);
  write_file_atomically(path.string(), text.str());
}

// ordered_json keeps BEIR's field order; dump() escapes and rejects invalid
// UTF-8.
void json_line(std::ostream& file, nlohmann::ordered_json&& record, std::string_view id) {
  try {
    file << record.dump() << '\n';
  } catch (const nlohmann::json::exception& e) {
    TORCH_CHECK(false, "record '", id, "': ", e.what());
  }
}

void write_qrels(const fs::path& path, const std::vector<BeirQuery>& split) {
  write_file(path, [&split](std::ostream& file) {
    file << "query-id\tcorpus-id\tscore\n";
    for (const auto& q : split) file << q.id << '\t' << q.positive << "\t1\n";
  });
}

}  // namespace

void write_beir_dataset(const std::string& out_dir, const std::vector<BeirPassage>& corpus,
                        const std::vector<BeirQuery>& train, const std::vector<BeirQuery>& dev, const char* caller) {
  TORCH_CHECK(!out_dir.empty(), caller, ": out_dir must not be empty");
  try {
    AtomicDirectory directory(out_dir);
    const fs::path tmp(directory.temporary_path());
    fs::create_directory(tmp / "qrels");
    write_file(tmp / "corpus.jsonl", [&](std::ostream& file) {
      for (const auto& p : corpus) json_line(file, {{"_id", p.id}, {"title", ""}, {"text", p.text}}, p.id);
    });
    write_file(tmp / "queries.jsonl", [&](std::ostream& file) {
      for (const auto* split : {&train, &dev}) {
        for (const auto& q : *split) json_line(file, {{"_id", q.id}, {"text", q.text}}, q.id);
      }
    });
    write_qrels(tmp / "qrels" / "train.tsv", train);
    write_qrels(tmp / "qrels" / "dev.tsv", dev);
    directory.commit();
  } catch (const std::exception& e) {
    TORCH_CHECK(false, caller, ": cannot write ", out_dir, ": ", error_text(e));
  }
}

}  // namespace contaccum
