// The grammar engine: GBNF parsing and its errors, UTF-8 classes, what the matcher accepts,
// and the token mask from the trie walk against the exact answer (each token's bytes read by
// a copy of the matcher) on the tiny-reasoner's and DeepSeek-V3's vocabularies.
#include <gtest/gtest.h>

#include "engine/core/failure.h"
#include "fixture_util.h"
#include "engine/grammar/gbnf.h"
#include "engine/grammar/matcher.h"
#include "engine/grammar/utf8_ranges.h"
#include "mask_check.h"
#include "engine/text/tokenizer.h"

namespace sibyl::engine::test {
namespace {

// A JSON value grammar, written the way llama.cpp users write them.
constexpr const char* kJson = R"gbnf(
root   ::= value
value  ::= object | array | string | number | ("true" | "false" | "null") ws
object ::=
  "{" ws (
            string ":" ws value
    ("," ws string ":" ws value)*
  )? "}" ws
array  ::= "[" ws ( value ("," ws value)* )? "]" ws
string ::= "\"" ( [^"\\\x7F\x00-\x1F] | "\\" (["\\/bfnrt] | "u" [0-9a-fA-F]{4}) )* "\"" ws
number ::= ("-"? ([0-9] | [1-9] [0-9]{0,15})) ("." [0-9]+)? ([eE] [-+]? [0-9] [1-9]{0,15})? ws
# at most one newline and some indentation between tokens
ws ::= | " " | "\n" [ \t]{0,20}
)gbnf";

bool matches(const std::shared_ptr<const Grammar>& g, std::string_view text) {
  GrammarMatcher m(g);
  return m.accept(text) && m.can_end();
}

std::string error_of(std::string_view text) {
  try {
    parse_gbnf(text);
  } catch (const Failure& f) {
    EXPECT_EQ(f.code(), Errc::invalid_argument);
    return f.what();
  }
  return "";
}

TEST(Grammar, JsonGrammarAcceptsJsonAndNothingElse) {
  const auto g = parse_gbnf(kJson);
  for (const char* ok : {"{}", "[]", "\"\"", "0", "-12.5e+3", "true", "null",
                         "{\"name\": \"Mira\", \"items\": [1, 2, {\"sword\": true}]}",
                         "{\n  \"a\": \"\\u00e9\\n\",\n  \"b\": []\n}", "\"caf\xc3\xa9 \xe6\x97\xa5 \xf0\x9f\x98\x80\""})
    EXPECT_TRUE(matches(g, ok)) << ok;
  for (const char* bad : {"", "{", "{]", "[1,]", "01x", "\"a", "{\"a\" 1}", "tru", "\"\x01\"", "\"\\x\"",
                          "\"\xc3\"", "\"\xed\xa0\x80\"", "nul l"})
    EXPECT_FALSE(matches(g, bad)) << bad;
}

TEST(Grammar, RepetitionCountsAndClasses) {
  const auto g = parse_gbnf("root ::= [a-c]{2,3} \"-\" [^a-z]+ \".\"? x{2}\nx ::= \"\\u00E9\" | [\\x41]");
  EXPECT_TRUE(matches(g, "ab-1\xc3\xa9\xc3\xa9"));
  EXPECT_TRUE(matches(g, "abc-XY.AA"));
  EXPECT_TRUE(matches(g, "abc-\xf0\x9f\x98\x80.A\xc3\xa9"));
  EXPECT_FALSE(matches(g, "a-1AA"));     // too few
  EXPECT_FALSE(matches(g, "abca-1AA"));  // too many
  EXPECT_FALSE(matches(g, "ab-a.AA"));   // a lowercase letter in [^a-z]
  EXPECT_FALSE(matches(g, "ab-1.A"));
  const auto any = parse_gbnf("root ::= . .");
  EXPECT_TRUE(matches(any, "a\xe6\x97\xa5"));
  EXPECT_FALSE(matches(any, "a"));
  EXPECT_FALSE(matches(any, "a\xff"));
}

TEST(Grammar, MatcherStateSurvivesARejectedRead) {
  GrammarMatcher m(parse_gbnf("root ::= \"ab\" [0-9]* \"!\""));
  EXPECT_FALSE(m.can_end());
  EXPECT_TRUE(m.accept("ab1"));
  EXPECT_FALSE(m.accept("2x"));  // rejected: nothing of it was read
  EXPECT_TRUE(m.accept("2!"));
  EXPECT_TRUE(m.can_end());
  EXPECT_TRUE(m.finished());
  EXPECT_FALSE(m.accept("!"));
  m.reset();
  EXPECT_TRUE(m.accept("ab!"));
}

TEST(Grammar, LongRepetitionsKeepTheStateSmall) {
  GrammarMatcher m(parse_gbnf(kJson));
  ASSERT_TRUE(m.accept("[\""));
  for (int i = 0; i < 200000; ++i) ASSERT_TRUE(m.accept("x"));
  ASSERT_TRUE(m.accept("\"]"));
  EXPECT_TRUE(m.can_end());
}

// An automaton past its budget of states starts over; readers find their place again and
// their masks stay those of an automaton without a budget.
TEST(Grammar, AutomatonStartsOverPastItsBudget) {
  const auto tok = Tokenizer::load(data_dir() + "/../../models/tiny-reasoner/tokenizer.json");
  const auto g = parse_gbnf(kJson);
  auto small = std::make_shared<GrammarAutomaton>(g, 64);
  GrammarMatcher bounded(small), free(g), other(small);
  std::string text;
  for (int i = 0; i < 40; ++i) text += "[{\"k" + std::to_string(i) + "\": ";
  text += "\"caf\xc3\xa9\"";
  for (int i = 0; i < 40; ++i) text += "}]";
  TokenMask a, b;
  ASSERT_TRUE(other.accept("[1, "));
  for (size_t at = 0; at < text.size(); at += 3) {
    const std::string chunk = text.substr(at, 3);
    ASSERT_TRUE(bounded.accept(chunk)) << at;
    ASSERT_TRUE(free.accept(chunk));
    bounded.fill_mask(tok->text_trie(), a);
    free.fill_mask(tok->text_trie(), b);
    ASSERT_EQ(a, b) << "after " << at + chunk.size() << " bytes";
    EXPECT_EQ(bounded.can_end(), free.can_end());
  }
  EXPECT_TRUE(bounded.can_end());
  EXPECT_GT(small->generation(), 3u);  // it did start over, more than once
  EXPECT_TRUE(other.accept("2]"));     // a reader left behind finds its place too
  EXPECT_TRUE(other.can_end());
}

TEST(Grammar, ErrorsNameTheProblemAndWhere) {
  EXPECT_NE(error_of("root ::= item\n").find("'item' is used but not defined"), std::string::npos);
  EXPECT_NE(error_of("start ::= \"a\"").find("no rule 'root'"), std::string::npos);
  EXPECT_NE(error_of("root ::= root \"a\" | \"b\"").find("'root' can reach itself"), std::string::npos);
  EXPECT_NE(error_of("root ::= (\"a\"?)*").find("can reach itself"), std::string::npos);
  EXPECT_NE(error_of("root ::= \"a\"\nx ::= \"\\q\"").find("line 2, column 9: unknown escape"), std::string::npos);
  EXPECT_NE(error_of("root ::= [a").find("unterminated character class"), std::string::npos);
  EXPECT_NE(error_of("root ::= \"a\" {3,2}").find("below its minimum"), std::string::npos);
  EXPECT_NE(error_of("root ::= \"a\"{99999}").find("limited to"), std::string::npos);
  EXPECT_NE(error_of("root ::= \"a\"\nroot ::= \"b\"").find("defined twice"), std::string::npos);
  EXPECT_NE(error_of("root ::= \"a\" )").find("expected a new rule"), std::string::npos);
  EXPECT_NE(error_of("").find("empty"), std::string::npos);
  EXPECT_NE(error_of("root ::= " + std::string(100000, '(')).find("nest deeper"), std::string::npos);
}

// Every code point is matched by exactly the sequences of the ranges holding it (the encoder
// below is the test's own: utf8_sequences uses the engine's append_utf8).
TEST(Grammar, Utf8SequencesCoverExactlyTheRange) {
  auto encode = [](uint32_t cp) {
    std::string s;
    if (cp < 0x80) {
      s += static_cast<char>(cp);
    } else if (cp < 0x800) {
      s += static_cast<char>(0xC0 | (cp >> 6));
      s += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      s += static_cast<char>(0xE0 | (cp >> 12));
      s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      s += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      s += static_cast<char>(0xF0 | (cp >> 18));
      s += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      s += static_cast<char>(0x80 | (cp & 0x3F));
    }
    return s;
  };
  const std::pair<uint32_t, uint32_t> ranges[] = {{0x41, 0x5A}, {0x7F, 0x800}, {0x3A5, 0x10FFFF}, {0x10000, 0x10FFFF},
                                                  {0xD000, 0xE100}, {0x1234, 0x2345}, {0x20, 0x10FFFF}};
  for (const auto& [first, last] : ranges) {
    const auto seqs = utf8_sequences(first, last);
    for (uint32_t cp = 0; cp <= 0x10FFFF; cp += (cp < 0x11000 ? 1 : 97)) {
      if (cp >= 0xD800 && cp <= 0xDFFF) continue;
      const std::string e = encode(cp);
      int hits = 0;
      for (const Utf8Sequence& s : seqs) {
        if (s.length != static_cast<int>(e.size())) continue;
        bool in = true;
        for (int k = 0; k < s.length; ++k)
          in = in && static_cast<uint8_t>(e[k]) >= s.lo[k] && static_cast<uint8_t>(e[k]) <= s.hi[k];
        hits += in;
      }
      ASSERT_EQ(hits, cp >= first && cp <= last ? 1 : 0) << std::hex << cp << " in " << first << ".." << last;
    }
  }
}

TEST(Grammar, TrieMaskIsExactOnTheTinyReasonerVocabulary) {
  const auto tok = Tokenizer::load(data_dir() + "/../../models/tiny-reasoner/tokenizer.json");
  expect_exact_masks(*tok, parse_gbnf(kJson), "{\"name\": \"Mira \xc3\xa9\", \"hp\": [12, -3.5e2],\n  \"ok\": true}");
  expect_exact_masks(*tok, parse_gbnf("root ::= [0-9]+ (\" + \" [0-9]+)* \" = \" [0-9]+"), "347 + 589 = 936");
}

TEST(Grammar, TrieMaskIsExactOnTheDeepSeekV3Vocabulary) {
  const auto tok = Tokenizer::load(data_dir() + "/tokenizers/deepseek-v3/tokenizer.json");
  expect_exact_masks(*tok, parse_gbnf(kJson), "{\"action\": \"give\", \"item\": \"sword \xe6\x97\xa5\", \"n\": 2}");
  // Long bounded repetitions (their states share masks far from the bound) and tokens longer
  // than a cut state decides (V3 has runs of up to 128 spaces or dashes).
  const std::string spaces(70, ' '), dashes(40, '-');
  expect_exact_masks(*tok, parse_gbnf("root ::= \"<\" [^<>]{0,90} \">\" [ ]{0,75} [-]{3,50} \"!\""),
                     "<" + spaces + "x>" + std::string(60, ' ') + dashes + "!");
}

}  // namespace
}  // namespace sibyl::engine::test
