// The masks keep decoding inside the language, checked independently of the matcher:
// - sentences drawn from a grammar's rules (a generator over the Grammar, not the matcher) are
//   reachable token by token, as the tokenizers split them, with end-of-sequence at the end;
// - greedy and sampled chats of the tiny-reasoner (its Hugging Face files and llama.cpp's
//   Q4_K_M GGUF of it) under grammars and schemas produce what std::regex and nlohmann::json
//   say the language is.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <random>
#include <regex>

#include "fixture_util.h"
#include "engine/grammar/compiled_grammar.h"
#include "engine/grammar/gbnf.h"
#include "engine/grammar/json_schema.h"
#include "engine/grammar/token_constraint.h"
#include "engine/chat/reasoning.h"
#include "sentence_generator.h"

namespace sibyl::engine::test {
namespace {

const char* const kGrammars[] = {
    R"(root ::= ("yes" | "no") ", " [a-z ]{1,12} "!")",
    R"(root ::= [0-9]{1,4} (" + " [0-9]{1,4})* " = " [0-9]{1,5} ".")",
    R"(root ::= "<" tag ">" [^<>]{0,40} "</" tag ">"
       tag  ::= [a-z] [a-z0-9]{0,6})",
    R"(root ::= item ("\n" item){0,3}
       item ::= "- " ( [A-Z] [a-z]+ | "\u00e9t\u00e9" | [\u4e00-\u4e0f]{1,3} | "\U0001F600" ) " x" [1-9])",
};
const char* const kSchemas[] = {
    R"({"type": "object", "properties": {"answer": {"type": "integer"}, "sure": {"type": "boolean"}},
        "required": ["answer", "sure"]})",
    R"({"type": "object", "properties": {"action": {"enum": ["give", "walk", "say"]},
        "items": {"type": "array", "items": {"type": "string", "maxLength": 12}, "maxItems": 3},
        "count": {"type": "integer", "minimum": -20, "maximum": 250}}, "required": ["action"]})",
    R"({"$ref": "#/$defs/n", "$defs": {"n": {"type": "object", "properties": {"v": {"type": "number"},
        "next": {"anyOf": [{"$ref": "#/$defs/n"}, {"type": "null"}]}}, "required": ["v", "next"]}}})",
};

std::vector<std::shared_ptr<const Grammar>> all_grammars() {
  std::vector<std::shared_ptr<const Grammar>> out;
  for (const char* g : kGrammars) out.push_back(parse_gbnf(g));
  for (const char* s : kSchemas) out.push_back(parse_json_schema(s));
  return out;
}

void expect_reachable(const Tokenizer& tok, const std::shared_ptr<const Grammar>& g, const std::string& sentence) {
  const int32_t eos = tok.vocab_size();  // a stand-in id past the vocabulary
  TokenConstraint constraint(std::make_shared<GrammarAutomaton>(g), tok, {eos}, tok.vocab_size() + 1);
  const std::vector<int32_t> ids = tok.encode(sentence, {TextRange{0, sentence.size()}});
  for (size_t i = 0; i <= ids.size(); ++i) {
    const int32_t id = i < ids.size() ? ids[i] : eos;
    ASSERT_TRUE(mask_has(constraint.mask(), id)) << "token " << i << " of \"" << sentence << "\"";
    constraint.follow(id);
  }
}

TEST(GrammarLanguage, SampledSentencesAreReachableTokenByToken) {
  const auto tiny = Tokenizer::load(data_dir() + "/../../models/tiny-reasoner/tokenizer.json");
  const auto v3 = Tokenizer::load(data_dir() + "/tokenizers/deepseek-v3/tokenizer.json");
  std::mt19937 rng(11);
  for (const auto& g : all_grammars()) {
    SentenceGenerator gen(*g);
    for (int i = 0; i < 25; ++i) {
      const std::string s = gen.sentence(rng);
      expect_reachable(*tiny, g, s);
      expect_reachable(*v3, g, s);
    }
  }
}

// What the language is, written independently of the grammars above.
bool in_language(size_t which, const std::string& text) {
  static const std::regex patterns[] = {
      std::regex("(yes|no), [a-z ]{1,12}!"),
      std::regex("[0-9]{1,4}( \\+ [0-9]{1,4})* = [0-9]{1,5}\\."),
      std::regex("<([a-z][a-z0-9]{0,6})>[^<>]{0,40}</([a-z][a-z0-9]{0,6})>"),
  };
  if (which < 3) return std::regex_match(text, patterns[which]);
  if (which == 3) return true;  // not used for decoding (non-ASCII classes)
  const nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return false;
  if (which == 4)
    return j.size() == 2 && j.contains("answer") && j["answer"].is_number_integer() && j.contains("sure") &&
           j["sure"].is_boolean();
  if (which == 5) {
    if (!j.contains("action") || !j["action"].is_string()) return false;
    const std::string a = j["action"];
    if (a != "give" && a != "walk" && a != "say") return false;
    if (j.contains("items")) {
      if (!j["items"].is_array() || j["items"].size() > 3) return false;
      for (const auto& item : j["items"])
        if (!item.is_string() || item.get<std::string>().size() > 12 * 4) return false;
    }
    if (j.contains("count") && (!j["count"].is_number_integer() || j["count"] < -20 || j["count"] > 250)) return false;
    for (const auto& [key, value] : j.items())
      if (key != "action" && key != "items" && key != "count") return false;
    return true;
  }
  for (const nlohmann::json* n = &j; !n->is_null(); n = &(*n)["next"])  // which == 6
    if (!n->is_object() || n->size() != 2 || !(*n)["v"].is_number() || !n->contains("next")) return false;
  return true;
}

TEST(GrammarLanguage, GreedyAndSampledChatsStayInTheLanguage) {
  const auto grammars = all_grammars();
  const std::string model_dir = data_dir() + "/../../models/tiny-reasoner";
  for (const std::string& path : {model_dir, data_dir() + "/gguf/tiny-reasoner-q4_k_m.gguf"}) {
    const std::shared_ptr<Model> model = Model::load(path, {});
    int ended = 0, runs = 0;
    for (size_t which = 0; which < grammars.size(); ++which) {
      if (which == 3) continue;
      const CompiledGrammar grammar(grammars[which]);
      for (uint64_t seed = 0; seed < 5; ++seed) {
        Session session(model, {});
        ChatParams p;
        p.max_new_tokens = 300;
        p.grammar = grammar.answer;
        p.sampler.temperature = seed == 0 ? 0.0f : 1.3f;  // greedy, then sampled
        p.reseed = true;
        p.seed = seed;
        std::string answer;
        const ChatResult r = run_chat(session, model->tokenizer(), model->chat_format(),
                                      {{"user", "Which is bigger, 848 or 375?", {}}}, p,
                                      [&](Channel c, std::string_view piece) {
                                        if (c == Channel::answer) answer.append(piece);
                                        return false;
                                      });
        ++runs;
        if (r.stop == StopReason::max_tokens) continue;  // cut off: nothing to check
        ASSERT_EQ(r.stop, StopReason::eos);
        EXPECT_TRUE(in_language(which, answer)) << path << ", grammar " << which << ", seed " << seed << ": " << answer;
        ++ended;
      }
    }
    EXPECT_GE(ended * 2, runs) << path;
  }
}

}  // namespace
}  // namespace sibyl::engine::test
