#include "contaccum/text/basic_tokenizer.h"

#include "test_util.h"

#include <thread>

namespace contaccum {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::ThrowsMessage;

// Expectations follow Hugging Face's BasicTokenizer (transformers'
// tokenization_bert.py), derived by hand from its code.
std::vector<std::string> uncased(std::string_view text) { return BasicTokenizer().tokenize(text); }

TEST(BasicTokenizer, OptionDefaults) {
  BasicTokenizerOptions o;
  EXPECT_TRUE(o.lower_case());
  EXPECT_FALSE(o.strip_accents().has_value());
  EXPECT_TRUE(o.tokenize_chinese_chars());
  EXPECT_TRUE(o.never_split().empty());
  // Unset strip_accents follows lower_case, as in Hugging Face.
  EXPECT_TRUE(o.strips_accents());
  EXPECT_FALSE(BasicTokenizerOptions().lower_case(false).strips_accents());
  EXPECT_FALSE(BasicTokenizerOptions().strip_accents(false).strips_accents());
  EXPECT_TRUE(BasicTokenizerOptions().lower_case(false).strip_accents(true).strips_accents());
}

TEST(BasicTokenizer, LowerCasesAndStripsAccents) {
  EXPECT_THAT(uncased("Héllo Wörld"), ElementsAre("hello", "world"));
  EXPECT_THAT(uncased(" \tHeLLo!how  \n Are yoU?  "), ElementsAre("hello", "!", "how", "are", "you", "?"));
  EXPECT_THAT(uncased("Ångström naïve CAFÉ"), ElementsAre("angstrom", "naive", "cafe"));
  // No canonical decomposition, so nothing to strip.
  EXPECT_THAT(uncased("Œuvre straße Ø"), ElementsAre("œuvre", "straße", "ø"));
  // Decomposed input loses its marks the same way.
  EXPECT_THAT(uncased("Cafe\xCC\x81"), ElementsAre("cafe"));
  // A word made only of combining marks disappears.
  EXPECT_THAT(uncased("a \xCC\x81\xCC\x88 b"), ElementsAre("a", "b"));
}

TEST(BasicTokenizer, AccentOptions) {
  const BasicTokenizer keep_accents(BasicTokenizerOptions().strip_accents(false));
  EXPECT_THAT(keep_accents.tokenize("Héllo Wörld"), ElementsAre("héllo", "wörld"));
  const BasicTokenizer cased(BasicTokenizerOptions().lower_case(false));
  EXPECT_THAT(cased.tokenize("Héllo Wörld"), ElementsAre("Héllo", "Wörld"));
  const BasicTokenizer cased_stripped(BasicTokenizerOptions().lower_case(false).strip_accents(true));
  EXPECT_THAT(cased_stripped.tokenize("Héllo Wörld"), ElementsAre("Hello", "World"));
  // Decomposed input is composed (NFC) when accents are kept.
  EXPECT_THAT(cased.tokenize("He\xCC\x81llo"), ElementsAre("H\xC3\xA9llo"));
}

TEST(BasicTokenizer, LowerCasingFollowsPython) {
  // Final sigma at the end of a word (punctuation after it does not count).
  const std::string odos_final = "\u03BF\u03B4\u03BF\u03C2", sa = "\u03C3\u03B1";
  EXPECT_THAT(uncased("ΟΔΟΣ ΣΑ ΟΔΟΣ."), ElementsAre(odos_final, sa, odos_final, "."));
  // U+0130 lowers to "i" + U+0307; the dot is then stripped as an accent.
  EXPECT_THAT(uncased("İstanbul"), ElementsAre("istanbul"));
  const BasicTokenizer keep_accents(BasicTokenizerOptions().strip_accents(false));
  EXPECT_THAT(keep_accents.tokenize("İstanbul"), ElementsAre("i\xCC\x87stanbul"));
}

TEST(BasicTokenizer, SplitsPunctuation) {
  EXPECT_THAT(uncased("don't"), ElementsAre("don", "'", "t"));
  EXPECT_THAT(uncased("a.b,c!"), ElementsAre("a", ".", "b", ",", "c", "!"));
  EXPECT_THAT(uncased("Hello,world!!"), ElementsAre("hello", ",", "world", "!", "!"));
  EXPECT_THAT(uncased("$5.00 (x+y)^2 ~/path_to"),
              ElementsAre("$", "5", ".", "00", "(", "x", "+", "y", ")", "^", "2", "~", "/", "path", "_", "to"));
  // Unicode category P*.
  EXPECT_THAT(uncased("«Bonjour» ¿Qué? em—dash"), ElementsAre("«", "bonjour", "»", "¿", "que", "?", "em", "—", "dash"));
  // Symbols outside the ASCII ranges and P* are kept in the word.
  EXPECT_THAT(uncased("5€ a©b x→y"), ElementsAre("5€", "a©b", "x→y"));
}

TEST(BasicTokenizer, SplitsCjkIdeographs) {
  EXPECT_THAT(uncased("我爱ML"), ElementsAre("我", "爱", "ml"));
  EXPECT_THAT(uncased("ab中文cd"), ElementsAre("ab", "中", "文", "cd"));
  // Kana are not in the CJK blocks: they stay together.
  EXPECT_THAT(uncased("日本語テキスト"), ElementsAre("日", "本", "語", "テキスト"));
  const BasicTokenizer whole(BasicTokenizerOptions().tokenize_chinese_chars(false));
  EXPECT_THAT(whole.tokenize("我爱ML"), ElementsAre("我爱ml"));
  // Hangul syllables are decomposed into jamo when accents are stripped
  // (NFD), a known quirk of uncased BERT.
  EXPECT_THAT(uncased("한국"), ElementsAre("\u1112\u1161\u11AB\u1100\u116E\u11A8"));
  const BasicTokenizer cased(BasicTokenizerOptions().lower_case(false));
  EXPECT_THAT(cased.tokenize("한국"), ElementsAre("한국"));
}

TEST(BasicTokenizer, DropsControlCharacters) {
  EXPECT_THAT(uncased(std::string("a\0b", 3)), ElementsAre("ab"));
  EXPECT_THAT(uncased("a\x01"
                      "b c\x7F"
                      "d"),
              ElementsAre("ab", "cd"));
  EXPECT_THAT(uncased("a\xEF\xBF\xBD"
                      "b"),
              ElementsAre("ab"));  // U+FFFD
  // Format characters (Cf): zero-width space, soft hyphen, byte order mark.
  EXPECT_THAT(uncased("foo\u200Bbar co\u00ADop \uFEFFx"), ElementsAre("foobar", "coop", "x"));
  // Private use (Co) and unassigned (Cn) code points.
  EXPECT_THAT(uncased("a\uE000b c\U000E0080d"), ElementsAre("ab", "cd"));
  // Vertical tab and form feed are control characters to Hugging Face, not
  // whitespace: they vanish and join their neighbours.
  EXPECT_THAT(uncased("a\x0B"
                      "b c\x0C"
                      "d"),
              ElementsAre("ab", "cd"));
}

TEST(BasicTokenizer, SplitsOnEveryWhitespace) {
  EXPECT_THAT(uncased("a\tb\nc\r\nd  e"), ElementsAre("a", "b", "c", "d", "e"));
  // No-break space, ideographic space, thin space (Zs), line and paragraph
  // separators.
  EXPECT_THAT(uncased("a\u00A0b\u3000c\u2009d\u2028e\u2029f"), ElementsAre("a", "b", "c", "d", "e", "f"));
}

TEST(BasicTokenizer, EmptyAndBlankTexts) {
  EXPECT_THAT(uncased(""), IsEmpty());
  EXPECT_THAT(uncased(" \t\r\n\u00A0\u3000 "), IsEmpty());
  EXPECT_THAT(uncased(std::string("\0\x01\u200B", 5)), IsEmpty());
}

TEST(BasicTokenizer, RejectsInvalidUtf8WithOffset) {
  EXPECT_THAT(
      [] {
        uncased(
            "ab\xFF"
            "cd");
      },
      ThrowsMessage<c10::Error>(HasSubstr("invalid UTF-8 at byte offset 2 (byte 0xFF)")));
  // Truncated sequence at the end.
  EXPECT_THAT([] { uncased("abc\xC3"); }, ThrowsMessage<c10::Error>(HasSubstr("invalid UTF-8 at byte offset 3")));
  // Overlong encoding of '/' and an encoded surrogate.
  EXPECT_THAT([] { uncased("\xC0\xAF"); }, ThrowsMessage<c10::Error>(HasSubstr("invalid UTF-8 at byte offset 0")));
  EXPECT_THAT([] { uncased("é\xED\xA0\x80"); }, ThrowsMessage<c10::Error>(HasSubstr("invalid UTF-8 at byte offset 2")));
  // A lone continuation byte.
  EXPECT_THAT([] { uncased("x \x80"); }, ThrowsMessage<c10::Error>(HasSubstr("invalid UTF-8 at byte offset 2")));
}

TEST(BasicTokenizer, NeverSplitPassesWordsThrough) {
  EXPECT_THAT(uncased("[CLS] Hi [SEP]"), ElementsAre("[", "cls", "]", "hi", "[", "sep", "]"));
  const BasicTokenizer tok(BasicTokenizerOptions().never_split({"[CLS]", "[SEP]"}));
  EXPECT_THAT(tok.tokenize("[CLS] Hi [SEP]"), ElementsAre("[CLS]", "hi", "[SEP]"));
  // Only whole whitespace-delimited words are protected.
  EXPECT_THAT(tok.tokenize("x[SEP]"), ElementsAre("x", "[", "sep", "]"));
}

TEST(BasicTokenizer, StreamingStopsEarly) {
  const BasicTokenizer tok;
  std::vector<std::string> got;
  // The invalid byte after the stop is never read.
  tok.tokenize("One, two three \xFF", [&](std::string_view w) {
    got.emplace_back(w);
    return got.size() < 3;
  });
  EXPECT_THAT(got, ElementsAre("one", ",", "two"));
}

TEST(BasicTokenizer, ConstMethodsAreThreadSafe) {
  const BasicTokenizer tok;
  const std::vector<std::string> texts = {"Héllo, Wörld!", "我爱ML ΟΔΟΣ", "don't stop", "İstanbul a.b,c"};
  std::vector<std::vector<std::string>> want;
  for (const auto& t : texts) want.push_back(tok.tokenize(t));
  std::vector<int> mismatches(4, 0);
  std::vector<std::thread> threads;
  for (int k = 0; k < 4; ++k) {
    threads.emplace_back([&, k] {
      for (int rep = 0; rep < 500; ++rep) {
        for (size_t i = 0; i < texts.size(); ++i) mismatches[k] += tok.tokenize(texts[i]) != want[i];
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_THAT(mismatches, ElementsAre(0, 0, 0, 0));
}

}  // namespace
}  // namespace contaccum
