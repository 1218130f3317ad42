#include "contaccum/text/wordpiece_tokenizer.h"

#include "test_util.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <random>

namespace contaccum {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::ThrowsMessage;

// The vocabulary of Hugging Face's BertTokenizer unit tests
// (tests/models/bert/test_tokenization_bert.py), so the expectations below
// are theirs.
Vocabulary hf_test_vocab() {
  return Vocabulary({"[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]", "want", "##want", "##ed", "wa", "un", "runn",
                     "##ing", ",", "low", "lowest"});
}
constexpr int kUnk = 0, kCls = 1, kSep = 2, kPad = 3;

torch::Tensor longs(const torch::Tensor& t) { return t.to(torch::kLong); }

TEST(WordPieceTokenizer, OptionDefaults) {
  WordPieceTokenizerOptions o;
  EXPECT_EQ(o.max_input_chars_per_word(), 100);
  EXPECT_EQ(o.cls_token(), "[CLS]");
  EXPECT_EQ(o.sep_token(), "[SEP]");
  EXPECT_EQ(o.pad_token(), "[PAD]");
  EXPECT_EQ(o.unk_token(), "[UNK]");
  EXPECT_EQ(o.max_length(), 512);
  EXPECT_TRUE(o.add_special_tokens());
  EXPECT_TRUE(o.basic().lower_case());
  const WordPieceTokenizer tok(hf_test_vocab());
  EXPECT_EQ(tok.cls_id(), kCls);
  EXPECT_EQ(tok.sep_id(), kSep);
  EXPECT_EQ(tok.pad_id(), kPad);
  EXPECT_EQ(tok.unk_id(), kUnk);
}

TEST(WordPieceTokenizer, MatchesHuggingFaceTests) {
  const WordPieceTokenizer tok(hf_test_vocab());
  // test_full_tokenizer
  EXPECT_THAT(tok.tokenize("UNwant\u00E9d,running"), ElementsAre("un", "##want", "##ed", ",", "runn", "##ing"));
  EXPECT_THAT(tok.encode("UNwant\u00E9d,running"), ElementsAre(kCls, 9, 6, 7, 12, 10, 11, kSep));
  // test_wordpiece_tokenizer
  EXPECT_THAT(tok.tokenize(""), IsEmpty());
  EXPECT_THAT(tok.tokenize("unwanted running"), ElementsAre("un", "##want", "##ed", "runn", "##ing"));
  EXPECT_THAT(tok.tokenize("unwantedX running"), ElementsAre("[UNK]", "runn", "##ing"));
}

TEST(WordPieceTokenizer, GreedyLongestMatchFirst) {
  const WordPieceTokenizer tok(hf_test_vocab());
  EXPECT_THAT(tok.tokenize("lowest low wa want"), ElementsAre("lowest", "low", "wa", "want"));
  // "low" matches but "##er" does not: the whole word is one [UNK], and its
  // neighbours are unaffected.
  EXPECT_THAT(tok.tokenize("low lower low"), ElementsAre("low", "[UNK]", "low"));
  // Greedy, no backtracking: "wa" + "##nt" would need "##nt".
  EXPECT_THAT(tok.tokenize("wan"), ElementsAre("[UNK]"));
  EXPECT_THAT(tok.tokenize("xyz, want"), ElementsAre("[UNK]", ",", "want"));
}

TEST(WordPieceTokenizer, LongWordsAreUnknown) {
  const WordPieceTokenizer tok(hf_test_vocab(), WordPieceTokenizerOptions().max_input_chars_per_word(6));
  EXPECT_THAT(tok.tokenize("unwanted want lowest"), ElementsAre("[UNK]", "want", "lowest"));
  // The limit counts characters, not bytes.
  auto options = WordPieceTokenizerOptions().max_input_chars_per_word(3);
  options.basic().lower_case(false);
  const WordPieceTokenizer accents(Vocabulary({"[UNK]", "[CLS]", "[SEP]", "[PAD]", "é", "##é"}), options);
  EXPECT_THAT(accents.tokenize("ééé éééé"), ElementsAre("é", "##é", "##é", "[UNK]"));
  // Default limit: 100 characters.
  const WordPieceTokenizer defaults(Vocabulary({"[UNK]", "[CLS]", "[SEP]", "[PAD]", "a", "##a"}));
  EXPECT_EQ(defaults.tokenize(std::string(100, 'a')).size(), 100u);
  EXPECT_THAT(defaults.tokenize(std::string(101, 'a')), ElementsAre("[UNK]"));
}

TEST(WordPieceTokenizer, CjkAndAccents) {
  const WordPieceTokenizer tok(Vocabulary({"[PAD]", "[UNK]", "[CLS]", "[SEP]", "我", "爱", "ml", "cafe"}));
  EXPECT_THAT(tok.tokenize("我爱ML Café"), ElementsAre("我", "爱", "ml", "cafe"));
  EXPECT_THAT(tok.tokenize("你"), ElementsAre("[UNK]"));
}

TEST(WordPieceTokenizer, EncodeAddsSpecialTokensAndTruncates) {
  const WordPieceTokenizer tok(hf_test_vocab());
  EXPECT_THAT(tok.encode("unwanted running"), ElementsAre(kCls, 9, 6, 7, 10, 11, kSep));
  // Truncation keeps [SEP] and may cut a word.
  EXPECT_THAT(tok.encode("unwanted running", 4), ElementsAre(kCls, 9, 6, kSep));
  EXPECT_THAT(tok.encode("unwanted running", 7), ElementsAre(kCls, 9, 6, 7, 10, 11, kSep));
  EXPECT_THAT(tok.encode("unwanted running", 2), ElementsAre(kCls, kSep));
  EXPECT_THAT([&] { tok.encode("x", 1); },
              ThrowsMessage<c10::Error>(HasSubstr("max_length must be >= 2 (room for [CLS] and [SEP]), got 1")));
  // The options' max_length is the default.
  const WordPieceTokenizer short_tok(hf_test_vocab(), WordPieceTokenizerOptions().max_length(5));
  EXPECT_THAT(short_tok.encode("unwanted running"), ElementsAre(kCls, 9, 6, 7, kSep));
}

TEST(WordPieceTokenizer, EncodeWithoutSpecialTokens) {
  const WordPieceTokenizer tok(hf_test_vocab(), WordPieceTokenizerOptions().add_special_tokens(false));
  EXPECT_THAT(tok.encode("unwanted running"), ElementsAre(9, 6, 7, 10, 11));
  EXPECT_THAT(tok.encode("unwanted running", 2), ElementsAre(9, 6));
  EXPECT_THAT(tok.encode(""), IsEmpty());
}

TEST(WordPieceTokenizer, EmptyAndBlankTextsGiveOnlySpecialTokens) {
  const WordPieceTokenizer tok(hf_test_vocab());
  EXPECT_THAT(tok.encode(""), ElementsAre(kCls, kSep));
  EXPECT_THAT(tok.encode(" \t\n\u00A0 "), ElementsAre(kCls, kSep));
  EXPECT_THAT(tok.encode(std::string("\0\x01", 2)), ElementsAre(kCls, kSep));
}

TEST(WordPieceTokenizer, InvalidUtf8) {
  const WordPieceTokenizer tok(hf_test_vocab());
  EXPECT_THAT([&] { tok.encode("want \xFF"); }, ThrowsMessage<c10::Error>(HasSubstr("invalid UTF-8 at byte offset 5")));
  // Tokenization stops once max_length is reached: the tail is not read.
  EXPECT_THAT(tok.encode("want \xFF", 3), ElementsAre(kCls, 5, kSep));
}

TEST(WordPieceTokenizer, EncodeBatchPadsToTheLongestRow) {
  const WordPieceTokenizer tok(hf_test_vocab());
  const auto batch = tok.encode_batch({"unwanted running", "want", "", "lowest, low"});
  const auto want_ids = longs(torch::tensor({{kCls, 9, 6, 7, 10, 11, kSep},
                                             {kCls, 5, kSep, kPad, kPad, kPad, kPad},
                                             {kCls, kSep, kPad, kPad, kPad, kPad, kPad},
                                             {kCls, 14, 12, 13, kSep, kPad, kPad}}));
  const auto want_mask = longs(
      torch::tensor({{1, 1, 1, 1, 1, 1, 1}, {1, 1, 1, 0, 0, 0, 0}, {1, 1, 0, 0, 0, 0, 0}, {1, 1, 1, 1, 1, 0, 0}}));
  EXPECT_EQ(batch.input_ids.scalar_type(), torch::kLong);
  EXPECT_EQ(batch.attention_mask.scalar_type(), torch::kLong);
  EXPECT_TRUE(torch::equal(batch.input_ids, want_ids)) << batch.input_ids;
  EXPECT_TRUE(torch::equal(batch.attention_mask, want_mask)) << batch.attention_mask;
  ASSERT_EQ(batch.extras.count("token_type_ids"), 1u);
  const auto& types = batch.extras.at("token_type_ids");
  EXPECT_EQ(types.scalar_type(), torch::kLong);
  EXPECT_TRUE(torch::equal(types, torch::zeros({4, 7}, torch::kLong)));
  EXPECT_EQ(batch.size(), 4);
}

TEST(WordPieceTokenizer, EncodeBatchTruncates) {
  const WordPieceTokenizer tok(hf_test_vocab());
  const auto batch = tok.encode_batch({"unwanted running", "want", "", "lowest, low"}, 4);
  const auto want_ids =
      longs(torch::tensor({{kCls, 9, 6, kSep}, {kCls, 5, kSep, kPad}, {kCls, kSep, kPad, kPad}, {kCls, 14, 12, kSep}}));
  EXPECT_TRUE(torch::equal(batch.input_ids, want_ids)) << batch.input_ids;
  EXPECT_TRUE(torch::equal(batch.attention_mask, want_ids.ne(kPad).to(torch::kLong)));
  // Short rows are not padded up to max_length.
  EXPECT_EQ(tok.encode_batch({"want", "low"}, 64).input_ids.size(1), 3);
  EXPECT_THAT([&] { tok.encode_batch({"want"}, 1); }, ThrowsMessage<c10::Error>(HasSubstr("max_length must be >= 2")));
}

TEST(WordPieceTokenizer, EncodeBatchOfNothing) {
  const WordPieceTokenizer tok(hf_test_vocab());
  const auto batch = tok.encode_batch({});
  EXPECT_EQ(batch.input_ids.sizes(), (std::vector<int64_t>{0, 0}));
  EXPECT_EQ(batch.attention_mask.sizes(), (std::vector<int64_t>{0, 0}));
  EXPECT_EQ(batch.extras.at("token_type_ids").sizes(), (std::vector<int64_t>{0, 0}));
}

TEST(WordPieceTokenizer, LargeBatchesMatchEncode) {
  const WordPieceTokenizer tok(hf_test_vocab());
  const std::vector<std::string> words = {"want", "unwanted", "running", "low", "lowest", ",", "xyz", "wa"};
  std::mt19937 rng(7);
  std::vector<std::string> texts;
  for (int i = 0; i < 600; ++i) {
    std::string t;
    const int n = static_cast<int>(rng() % 12);
    for (int k = 0; k < n; ++k) t += words[rng() % words.size()] + " ";
    texts.push_back(t);
  }
  const auto batch = tok.encode_batch(texts, 10);
  for (size_t i = 0; i < texts.size(); ++i) {
    const auto ids = tok.encode(texts[i], 10);
    const auto len = static_cast<int64_t>(ids.size());
    const auto row = batch.input_ids[static_cast<int64_t>(i)];
    ASSERT_TRUE(torch::equal(row.slice(0, 0, len), torch::tensor(ids, torch::kLong))) << "row " << i;
    ASSERT_TRUE(row.slice(0, len).eq(kPad).all().item<bool>()) << "row " << i;
    ASSERT_EQ(batch.attention_mask[static_cast<int64_t>(i)].sum().item<int64_t>(), len) << "row " << i;
  }
}

TEST(WordPieceTokenizer, NeverSplitLetsLiteralSpecialTokensThrough) {
  const WordPieceTokenizer plain(hf_test_vocab());
  EXPECT_THAT(plain.tokenize("want [SEP] want"), ElementsAre("want", "[UNK]", "[UNK]", "[UNK]", "want"));
  auto options = WordPieceTokenizerOptions();
  options.basic().never_split({"[SEP]", "[NOPE]"});
  const WordPieceTokenizer tok(hf_test_vocab(), options);
  EXPECT_THAT(tok.encode("want [SEP] want"), ElementsAre(kCls, 5, kSep, 5, kSep));
  // A protected word the vocabulary lacks is unknown, as in Hugging Face.
  EXPECT_THAT(tok.tokenize("[NOPE]"), ElementsAre("[UNK]"));
}

TEST(WordPieceTokenizer, ChecksSpecialTokensAndOptions) {
  EXPECT_THAT(
      [] {
        WordPieceTokenizer(Vocabulary({"[CLS]", "[SEP]", "[UNK]", "a"}));
      },
      ThrowsMessage<c10::Error>(HasSubstr("pad_token '[PAD]' is not in the vocabulary")));
  EXPECT_THAT(
      [] {
        WordPieceTokenizer(Vocabulary({"[CLS]", "[PAD]", "[UNK]"}));
      },
      ThrowsMessage<c10::Error>(HasSubstr("sep_token '[SEP]' is not in the vocabulary")));
  EXPECT_THAT([] { WordPieceTokenizer(hf_test_vocab(), WordPieceTokenizerOptions().max_input_chars_per_word(0)); },
              ThrowsMessage<c10::Error>(HasSubstr("max_input_chars_per_word must be > 0, got 0")));
  EXPECT_THAT([] { WordPieceTokenizer(hf_test_vocab(), WordPieceTokenizerOptions().max_length(1)); },
              ThrowsMessage<c10::Error>(HasSubstr("max_length must be >= 2")));
  // Other names for the special tokens.
  const WordPieceTokenizer custom(
      Vocabulary({"<pad>", "<s>", "</s>", "<unk>", "hi"}),
      WordPieceTokenizerOptions().pad_token("<pad>").cls_token("<s>").sep_token("</s>").unk_token("<unk>"));
  EXPECT_THAT(custom.encode("hi ho"), ElementsAre(1, 4, 3, 2));
  EXPECT_THAT(custom.ids_to_tokens(custom.encode("hi ho")), ElementsAre("<s>", "hi", "<unk>", "</s>"));
  EXPECT_EQ(custom.pad_id(), 0);
}

TEST(WordPieceTokenizer, LoadsFromAVocabFile) {
  const auto path =
      (std::filesystem::temp_directory_path() / ("contaccum_wordpiece_test_" + std::to_string(::getpid()) + ".txt"))
          .string();
  hf_test_vocab().save(path);
  const WordPieceTokenizer tok(path);
  std::filesystem::remove(path);
  EXPECT_EQ(tok.vocab().size(), 15);
  EXPECT_THAT(tok.tokenize("unwanted"), ElementsAre("un", "##want", "##ed"));
  EXPECT_THAT([] { WordPieceTokenizer("/nonexistent/vocab.txt"); },
              ThrowsMessage<c10::Error>(HasSubstr("cannot open '/nonexistent/vocab.txt'")));
}

}  // namespace
}  // namespace contaccum
