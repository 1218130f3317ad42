#include "contaccum/text/vocabulary.h"

#include "test_util.h"

#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>

namespace contaccum {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::ThrowsMessage;

// A fresh directory, removed with its contents at the end of the test.
class TempDir {
 public:
  TempDir() {
    static std::atomic<int> counter{0};
    path_ = fs::temp_directory_path() /
            ("contaccum_vocab_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ignored;
    fs::remove_all(path_, ignored);
  }
  std::string file(const std::string& name, const std::string& contents) const {
    const auto p = (path_ / name).string();
    std::ofstream(p, std::ios::binary) << contents;
    return p;
  }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

std::vector<std::string> dir_entries(const fs::path& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

TEST(Vocabulary, IdIsTheLineNumber) {
  TempDir dir;
  const auto vocab = Vocabulary::load(dir.file("vocab.txt", "[PAD]\n[UNK]\nhello\n##lo\n\xC3\xA9t\xC3\xA9\n"));
  EXPECT_EQ(vocab.size(), 5);
  EXPECT_FALSE(vocab.empty());
  EXPECT_EQ(vocab.id("[PAD]"), 0);
  EXPECT_EQ(vocab.id("hello"), 2);
  EXPECT_EQ(vocab.id("##lo"), 3);
  EXPECT_EQ(vocab.id("été"), 4);
  EXPECT_EQ(vocab.id("missing"), std::nullopt);
  EXPECT_EQ(vocab.id("lo"), std::nullopt);
  EXPECT_TRUE(vocab.contains("[UNK]"));
  EXPECT_FALSE(vocab.contains("[CLS]"));
  EXPECT_FALSE(vocab.contains(""));
  EXPECT_EQ(vocab.token(2), "hello");
  EXPECT_EQ(vocab.token(4), "été");
  EXPECT_THAT(vocab.tokens(), ::testing::ElementsAre("[PAD]", "[UNK]", "hello", "##lo", "été"));
}

TEST(Vocabulary, AcceptsCrLfAndAMissingFinalNewline) {
  TempDir dir;
  const auto vocab = Vocabulary::load(dir.file("vocab.txt", "a\r\nb\r\nc"));
  EXPECT_THAT(vocab.tokens(), ::testing::ElementsAre("a", "b", "c"));
}

TEST(Vocabulary, EmptyFileIsAnEmptyVocabulary) {
  TempDir dir;
  const auto vocab = Vocabulary::load(dir.file("vocab.txt", ""));
  EXPECT_TRUE(vocab.empty());
  EXPECT_EQ(Vocabulary().size(), 0);
}

TEST(Vocabulary, FileErrorsNameFileAndLine) {
  TempDir dir;
  const auto dup = dir.file("dup.txt", "a\nb\na\n");
  EXPECT_THAT([&] { Vocabulary::load(dup); },
              ThrowsMessage<c10::Error>(HasSubstr(dup + ":3: duplicate token 'a' (first on line 1)")));
  const auto empty = dir.file("empty.txt", "a\n\nb\n");
  EXPECT_THAT([&] { Vocabulary::load(empty); }, ThrowsMessage<c10::Error>(HasSubstr(empty + ":2: empty line")));
  const auto trailing = dir.file("trailing.txt", "a\nb\n\n");
  EXPECT_THAT([&] { Vocabulary::load(trailing); }, ThrowsMessage<c10::Error>(HasSubstr(trailing + ":3: empty line")));
  const auto bad = dir.file("bad.txt", "a\nb\xFFz\n");
  EXPECT_THAT([&] { Vocabulary::load(bad); },
              ThrowsMessage<c10::Error>(HasSubstr(bad + ":2: invalid UTF-8 (at byte 1 of the line)")));
  const auto truncated = dir.file("truncated.txt", "ok\n\xC3\n");
  EXPECT_THAT([&] { Vocabulary::load(truncated); },
              ThrowsMessage<c10::Error>(HasSubstr(truncated + ":2: invalid UTF-8")));
  const auto missing = (dir.path() / "missing.txt").string();
  EXPECT_THAT([&] { Vocabulary::load(missing); },
              ThrowsMessage<c10::Error>(HasSubstr("cannot open '" + missing + "'")));
}

TEST(Vocabulary, ConstructorValidatesTokens) {
  EXPECT_THAT(
      [] {
        Vocabulary({"a", "b", "a"});
      },
      ThrowsMessage<c10::Error>(HasSubstr("token 2 'a' duplicates token 0")));
  EXPECT_THAT([] { Vocabulary({"a", ""}); }, ThrowsMessage<c10::Error>(HasSubstr("token 1 is empty")));
  EXPECT_THAT([] { Vocabulary({"a\nb"}); }, ThrowsMessage<c10::Error>(HasSubstr("token 0 contains a line break")));
  EXPECT_THAT([] { Vocabulary({"ok", "\xE2\x82"}); }, ThrowsMessage<c10::Error>(HasSubstr("token 1 is invalid UTF-8")));
}

TEST(Vocabulary, TokenRejectsIdsOutOfRange) {
  const Vocabulary vocab({"a", "b"});
  EXPECT_THAT([&] { vocab.token(2); }, ThrowsMessage<c10::Error>(HasSubstr("id must be in [0, 2), got 2")));
  EXPECT_THAT([&] { vocab.token(-1); }, ThrowsMessage<c10::Error>(HasSubstr("got -1")));
}

TEST(Vocabulary, CopiesShareTheTable) {
  const Vocabulary vocab({"a", "b"});
  const Vocabulary copy = vocab;  // NOLINT(performance-unnecessary-copy-initialization)
  EXPECT_EQ(&copy.tokens(), &vocab.tokens());
  EXPECT_EQ(copy.id("b"), 1);
}

TEST(Vocabulary, SaveRoundTripsAtomically) {
  TempDir dir;
  const Vocabulary vocab({"[PAD]", "[UNK]", "\xE4\xB8\xAD", "##s", "a b"});
  const auto path = (dir.path() / "vocab.txt").string();
  vocab.save(path);
  EXPECT_THAT(dir_entries(dir.path()), ::testing::ElementsAre("vocab.txt"));
  std::ifstream in(path, std::ios::binary);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(text, "[PAD]\n[UNK]\n\xE4\xB8\xAD\n##s\na b\n");
  EXPECT_EQ(Vocabulary::load(path).tokens(), vocab.tokens());

  // Overwrites an existing file; still no temporary left behind.
  Vocabulary({"x"}).save(path);
  EXPECT_THAT(Vocabulary::load(path).tokens(), ::testing::ElementsAre("x"));
  EXPECT_THAT(dir_entries(dir.path()), ::testing::ElementsAre("vocab.txt"));
}

TEST(Vocabulary, SaveFailureLeavesNothingBehind) {
  TempDir dir;
  const auto path = (dir.path() / "no_such_dir" / "vocab.txt").string();
  EXPECT_THAT([&] { Vocabulary({"a"}).save(path); }, ThrowsMessage<c10::Error>(HasSubstr("cannot open")));
  EXPECT_TRUE(dir_entries(dir.path()).empty());
  // A directory in the way of the rename: the temporary is cleaned up.
  fs::create_directories(dir.path() / "taken" / "child");
  const auto taken = (dir.path() / "taken").string();
  EXPECT_THAT([&] { Vocabulary({"a"}).save(taken); }, ThrowsMessage<c10::Error>(HasSubstr("cannot rename")));
  EXPECT_THAT(dir_entries(dir.path()), ::testing::ElementsAre("taken"));
}

}  // namespace
}  // namespace contaccum
