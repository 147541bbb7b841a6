// Tool calls in the engine: the section grammar on DeepSeek-V3's vocabulary — markers only
// as their own tokens (never spelled by text tokens that look like them), every sampled
// section reachable token by token and read back into the calls it holds — a forced tool's
// single call, the definitions' format, and tool sets that are errors.
#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "engine/core/failure.h"
#include "fixture_util.h"
#include "engine/grammar/token_constraint.h"
#include "sentence_generator.h"
#include "engine/chat/tool_calls.h"

namespace sibyl::engine::test {
namespace {

const Tokenizer& v3() {
  static const auto tok = Tokenizer::load(data_dir() + "/tokenizers/deepseek-v3/tokenizer.json");
  return *tok;
}

std::vector<ToolSpec> npc_tools() {
  return {{"give_item", "Give the player an item.",
           R"({"type":"object","properties":{"item":{"enum":["sword","bread"]},"count":{"type":"integer",
               "minimum":1,"maximum":3}},"required":["item"]})"},
          {"walk_to", "", R"({"type":"object","properties":{"place":{"type":"string","maxLength":8}},
               "required":["place"],"additionalProperties":false})"},
          {"wave", "Wave.", ""}};
}

// A section's bytes as the model's tokens: marker bytes become marker tokens, the text
// between them the tokenizer's own encoding.
std::vector<int32_t> section_tokens(const std::string& bytes, const ToolTokens& t) {
  std::vector<int32_t> ids;
  std::string text;
  auto flush = [&] {
    const std::vector<int32_t> part = v3().encode(text, {TextRange{0, text.size()}});
    ids.insert(ids.end(), part.begin(), part.end());
    text.clear();
  };
  for (char c : bytes) {
    const auto b = static_cast<uint8_t>(c);
    if (b >= ToolTokens::kFirstByte && b < ToolTokens::kFirstByte + ToolTokens::count) {
      flush();
      ids.push_back(t.id[b - ToolTokens::kFirstByte]);
    } else {
      text += c;
    }
  }
  flush();
  return ids;
}

// Follows `ids`, each of which the mask must allow.
void feed(TokenConstraint& c, const std::vector<int32_t>& ids) {
  for (int32_t id : ids) {
    ASSERT_TRUE(mask_has(c.mask(), id)) << v3().token_bytes(id);
    c.follow(id);
  }
}

TEST(ToolCalls, MarkersAreReadOnlyByTheirOwnTokens) {
  const ToolTokens t = ToolTokens::of(v3());
  ToolSet tools(npc_tools(), ToolChoice::automatic);
  const int32_t eos = 1;
  TokenConstraint c(std::make_shared<GrammarAutomaton>(tools.section()), v3(), {eos}, v3().vocab_size(),
                    t.specials());
  auto allowed = [&] {
    std::vector<int32_t> ids;
    const TokenMask& m = c.mask();
    for (int32_t id = 0; id < v3().vocab_size(); ++id)
      if (mask_has(m, id)) ids.push_back(id);
    return ids;
  };
  EXPECT_EQ(allowed(), std::vector<int32_t>{t.id[ToolTokens::calls_begin]});
  c.follow(t.id[ToolTokens::calls_begin]);
  EXPECT_EQ(allowed(), std::vector<int32_t>{t.id[ToolTokens::call_begin]});
  c.follow(t.id[ToolTokens::call_begin]);
  for (int32_t id : allowed()) {  // text spelling the start of "function", no marker
    EXPECT_EQ(t.marker_of(id), -1);
    EXPECT_EQ(std::string("function").rfind(v3().token_bytes(id), 0), 0u) << v3().token_bytes(id);
  }
  feed(c, v3().encode("function"));
  EXPECT_EQ(allowed(), std::vector<int32_t>{t.id[ToolTokens::sep]});
}

TEST(ToolCalls, SampledSectionsAreReachableAndReadBack) {
  const ToolTokens t = ToolTokens::of(v3());
  for (ToolChoice choice : {ToolChoice::automatic, ToolChoice::required}) {
    ToolSet tools(npc_tools(), choice);
    SentenceGenerator gen(*tools.section());
    std::mt19937 rng(5);
    for (int i = 0; i < 40; ++i) {
      const std::string bytes = gen.sentence(rng);
      const std::vector<int32_t> ids = section_tokens(bytes, t);
      TokenConstraint c(std::make_shared<GrammarAutomaton>(tools.section()), v3(), {1}, v3().vocab_size(),
                        t.specials());
      ToolCallReader reader(t);
      std::vector<ToolCallOut> calls;
      for (size_t k = 0; k < ids.size(); ++k) {
        ASSERT_TRUE(mask_has(c.mask(), ids[k])) << "token " << k << " of section " << i;
        c.follow(ids[k]);
        if (auto call = reader.read(ids[k], v3().token_bytes(ids[k]))) calls.push_back(*call);
      }
      EXPECT_TRUE(mask_has(c.mask(), 1));  // the end may follow, nothing else
      EXPECT_TRUE(reader.ended());
      // The calls as the bytes spell them: <cb>function<sep>NAME\n```json\nARGS\n```<ce>.
      std::vector<ToolCallOut> expected;
      const std::string sep(1, static_cast<char>(ToolTokens::kFirstByte + ToolTokens::sep));
      const std::string end(1, static_cast<char>(ToolTokens::kFirstByte + ToolTokens::call_end));
      for (size_t at = bytes.find(sep); at != std::string::npos; at = bytes.find(sep, at + 1)) {
        const size_t nl = bytes.find('\n', at);
        const size_t close = bytes.find(end, at);
        expected.push_back({bytes.substr(at + 1, nl - at - 1), bytes.substr(nl + 9, close - nl - 9 - 4)});
      }
      ASSERT_EQ(calls.size(), expected.size()) << i;
      for (size_t k = 0; k < calls.size(); ++k) {
        EXPECT_EQ(calls[k].name, expected[k].name);
        EXPECT_EQ(calls[k].arguments, expected[k].arguments);
      }
    }
  }
}

TEST(ToolCalls, AForcedToolIsCalledOnce) {
  const ToolTokens t = ToolTokens::of(v3());
  ToolSet tools(npc_tools(), ToolChoice::required, "wave");
  TokenConstraint c(std::make_shared<GrammarAutomaton>(tools.section()), v3(), {1}, v3().vocab_size(), t.specials());
  const std::string call = "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>wave\n```json\n{}\n```"
                           "<｜tool▁call▁end｜>";
  feed(c, v3().encode(call));
  const TokenMask& m = c.mask();
  EXPECT_TRUE(mask_has(m, t.id[ToolTokens::calls_end]));
  EXPECT_FALSE(mask_has(m, v3().encode("\n")[0]));  // no second call
  ToolSet any(npc_tools(), ToolChoice::required);
  TokenConstraint c2(std::make_shared<GrammarAutomaton>(any.section()), v3(), {1}, v3().vocab_size(), t.specials());
  feed(c2, v3().encode(call));
  EXPECT_TRUE(mask_has(c2.mask(), v3().encode("\n")[0]));
  // Only the forced tool's name can follow the separator.
  TokenConstraint c3(std::make_shared<GrammarAutomaton>(tools.section()), v3(), {1}, v3().vocab_size(), t.specials());
  feed(c3, v3().encode("<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>"));
  EXPECT_FALSE(mask_has(c3.mask(), v3().encode("give")[0]));
}

TEST(ToolCalls, DefinitionsListEveryToolAndTheCallFormat) {
  const std::string d = ToolSet(npc_tools(), ToolChoice::automatic).definitions();
  EXPECT_EQ(d.rfind("## Tools\n", 0), 0u);
  EXPECT_NE(d.find("<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>TOOL_NAME\n```json\nARGUMENTS\n```"
                   "<｜tool▁call▁end｜><｜tool▁calls▁end｜>"),
            std::string::npos);
  EXPECT_NE(d.find("\n### give_item\nDescription: Give the player an item.\nParameters: {\"type\":\"object\","
                   "\"properties\":{\"item\":{\"enum\":[\"sword\",\"bread\"]},"),
            std::string::npos);
  EXPECT_NE(d.find("\n### walk_to\nParameters: "), std::string::npos);  // no description line
  EXPECT_NE(d.find("\n### wave\nDescription: Wave.\nParameters: {\"type\":\"object\"}\n"), std::string::npos);
  // The choice does not change the prompt (turns with other choices reuse its cache).
  EXPECT_EQ(d, ToolSet(npc_tools(), ToolChoice::required, "wave").definitions());
}

TEST(ToolCalls, BadToolSetsAreErrorsNamingTheTool) {
  auto expect_error = [](std::vector<ToolSpec> tools, ToolChoice choice, std::string forced, const std::string& needle) {
    try {
      ToolSet set(std::move(tools), choice, std::move(forced));
      ADD_FAILURE() << "accepted; expected: " << needle;
    } catch (const Failure& e) {
      EXPECT_EQ(e.code(), Errc::invalid_argument);
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  expect_error({}, ToolChoice::automatic, "", "at least one tool");
  expect_error({{"", "", ""}}, ToolChoice::automatic, "", "tool 0 (\"\")");
  expect_error({{std::string(65, 'a'), "", ""}}, ToolChoice::automatic, "", "1 to 64");
  expect_error({{"a", "", ""}, {"a", "", ""}}, ToolChoice::automatic, "", "tool 1 (\"a\"): the name is used");
  expect_error({{"a", "", "{"}}, ToolChoice::automatic, "", "tool 0 (\"a\"): parameters");
  expect_error({{"a", "", R"({"type":"string","format":"date"})"}}, ToolChoice::automatic, "", "format");
  expect_error({{"a", "", R"({"type":"string"})"}}, ToolChoice::automatic, "", "must describe a JSON object");
  expect_error({{"a", "", ""}}, ToolChoice::automatic, "a", "goes with the choice \"required\"");
  expect_error({{"a", "", ""}}, ToolChoice::required, "b", "\"b\" is not among the tools");
}

TEST(ToolCalls, TheCacheSharesSetsByContentAndKeepsTheLatest) {
  ToolSetCache cache;
  const auto a = cache.get(npc_tools(), ToolChoice::automatic, "");
  EXPECT_EQ(cache.get(npc_tools(), ToolChoice::automatic, ""), a);  // same automata: warm masks
  EXPECT_NE(cache.get(npc_tools(), ToolChoice::required, ""), a);
  std::vector<ToolSpec> other = npc_tools();
  other[2].description = "Wave twice.";
  EXPECT_NE(cache.get(other, ToolChoice::automatic, ""), a);
  for (size_t i = 0; i < ToolSetCache::kKept; ++i) cache.get({{std::to_string(i) + "t", "", ""}}, ToolChoice::automatic, "");
  EXPECT_NE(cache.get(npc_tools(), ToolChoice::automatic, ""), a);  // evicted, compiled again
  EXPECT_THROW(cache.get({{"bad name", "", ""}}, ToolChoice::automatic, ""), Failure);
}

TEST(ToolCalls, TheTinyReasonerFormatRefusesTools) {
  const ChatFormat tiny = ChatFormat::load(data_dir() + "/../../models/tiny-reasoner/tokenizer_config.json");
  try {
    with_tool_definitions({{"user", "hi", {}, false}}, ToolSet(npc_tools(), ToolChoice::automatic), tiny);
    ADD_FAILURE() << "accepted";
  } catch (const Failure& e) {
    EXPECT_EQ(e.code(), Errc::unsupported);
    EXPECT_NE(std::string(e.what()).find("tiny-reasoner chat format has no tool calls"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace sibyl::engine::test
