// Constrained decoding on the embedded tiny-reasoner: a grammar that admits the model's own
// replies leaves every greedy reply identical to the reference; a grammar that asks for
// another shape gets it (greedy and sampled), ended by end-of-sequence where the grammar
// accepts; the whole-output scope covers the reasoning and the think markers.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "engine/core/failure.h"
#include "engine/formats/file_util.h"
#include "fixture_util.h"
#include "engine/grammar/compiled_grammar.h"
#include "engine/grammar/gbnf.h"
#include "engine/chat/reasoning.h"

namespace sibyl::engine::test {
namespace {

std::string model_dir() { return data_dir() + "/../../models/tiny-reasoner"; }

const std::shared_ptr<Model>& reasoner() {
  static std::shared_ptr<Model> m = [] {
    ModelLoadOptions o;
    o.backend_options.precision = backend::Precision::exact;
    return Model::load(model_dir(), o);
  }();
  return m;
}

const nlohmann::json& eval_results() {
  static nlohmann::json j = nlohmann::json::parse(read_text_file(model_dir() + "/eval.public.json"))["results"];
  return j;
}

// Every answer shape of the eval problems.
constexpr const char* kAnswers = R"gbnf(
root   ::= sum | times | gold | count | bigger
sum    ::= num (" + " | " - ") num " = " num "."
times  ::= num " times " num " is " num "."
gold   ::= "That is " num " gold."
count  ::= "There " ("is" | "are") " " num " " [a-z] " in " [a-z]+ "."
bigger ::= num " is bigger."
num    ::= [0-9]+
)gbnf";

struct Reply {
  std::string reasoning, answer;
  ChatResult result;
  std::vector<int32_t> generated;
};

Reply chat(Session& s, const std::string& question, const ChatParams& params) {
  Reply r;
  const std::shared_ptr<Model>& model = reasoner();
  r.result = run_chat(s, model->tokenizer(), model->chat_format(), {{"user", question, {}}}, params,
                      [&](Channel c, std::string_view piece) {
                        (c == Channel::reasoning ? r.reasoning : r.answer).append(piece);
                        return false;
                      });
  r.generated.assign(s.tokens().begin() + r.result.reused_tokens + r.result.prompt_tokens, s.tokens().end());
  return r;
}

// A fresh session's greedy reply to `question`, its answer under `grammar`.
Reply chat_under(const std::shared_ptr<GrammarAutomaton>& grammar, const std::string& question) {
  Session session(reasoner(), {});
  ChatParams p;
  p.max_new_tokens = 512;
  p.grammar = grammar;
  return chat(session, question, p);
}

bool sentence_of(const std::shared_ptr<const Grammar>& g, const std::string& text) {
  GrammarMatcher m(g);
  return m.accept(text) && m.can_end();
}

TEST(Constrained, GrammarAdmittingTheRepliesKeepsThemExactly) {
  const CompiledGrammar grammar(parse_gbnf(kAnswers));
  const nlohmann::json& results = eval_results();
  for (size_t i = 0; i < results.size(); i += 5) {  // 32 problems, every task
    const nlohmann::json& r = results[i];
    const Reply reply = chat_under(grammar.answer, r["question"].get<std::string>());
    EXPECT_EQ(reply.generated, r["output_ids"].get<std::vector<int32_t>>()) << r["question"];
    EXPECT_EQ(reply.result.stop, StopReason::eos);
  }
}

// The model never answers this way: the grammar shapes the answer, the reasoning before it is
// the model's own (identical to the unconstrained reference).
TEST(Constrained, GrammarAsksForJsonAndGetsIt) {
  const auto g = parse_gbnf(R"(root ::= "{\"answer\": " [0-9]{1,7} "}")");
  const CompiledGrammar grammar(g);
  const int32_t think_close = *reasoner()->tokenizer().token_id("</think>");
  const nlohmann::json& results = eval_results();
  for (size_t i = 0; i < results.size(); i += 16) {
    const nlohmann::json& r = results[i];
    const Reply reply = chat_under(grammar.answer, r["question"].get<std::string>());
    EXPECT_EQ(reply.result.stop, StopReason::eos) << reply.answer;
    EXPECT_TRUE(sentence_of(g, reply.answer)) << reply.answer;
    const auto reference = r["output_ids"].get<std::vector<int32_t>>();
    const auto close = std::find(reference.begin(), reference.end(), think_close);
    ASSERT_NE(close, reference.end());
    ASSERT_GT(reply.generated.size(), static_cast<size_t>(close - reference.begin()));
    EXPECT_TRUE(std::equal(reference.begin(), close + 1, reply.generated.begin())) << r["question"];
  }
}

TEST(Constrained, SampledRepliesAlwaysMatch) {
  const auto g = parse_gbnf(R"(root ::= ("yes" | "no") ", " [a-z ]{1,12} "!")");
  const CompiledGrammar grammar(g);
  int ended = 0;
  for (uint64_t seed = 0; seed < 12; ++seed) {
    auto session = std::make_unique<Session>(reasoner(), SessionOptions{});
    ChatParams p;
    p.max_new_tokens = 400;
    p.grammar = grammar.answer;
    p.sampler.temperature = 1.5f;
    p.reseed = true;
    p.seed = seed;
    const Reply reply = chat(*session, "Which is bigger, 848 or 375?", p);
    if (reply.result.stop == StopReason::max_tokens) continue;  // a hot sampler may ramble in its reasoning
    EXPECT_EQ(reply.result.stop, StopReason::eos);
    EXPECT_TRUE(sentence_of(g, reply.answer)) << "seed " << seed << ": " << reply.answer;
    ++ended;
  }
  EXPECT_GE(ended, 6);
}

TEST(Constrained, WholeOutputGrammarCoversTheReasoning) {
  const auto g = parse_gbnf(R"(root ::= [^<]+ "</think>\n\n" [0-9]+ " + " [0-9]+ " = " [0-9]+ ".")");
  const CompiledGrammar grammar(g);
  const nlohmann::json& r = eval_results()[0];
  auto session = std::make_unique<Session>(reasoner(), SessionOptions{});
  ChatParams p;
  p.max_new_tokens = 512;
  p.grammar = grammar.whole;
  p.grammar_whole = true;
  const Reply reply = chat(*session, r["question"].get<std::string>(), p);
  EXPECT_EQ(reply.generated, r["output_ids"].get<std::vector<int32_t>>());

  // Only digits, from the first token: the think block never closes, the reply is a number.
  const CompiledGrammar digits(parse_gbnf("root ::= [0-9]{1,4}"));
  p.grammar = digits.whole;
  const Reply number = chat(*session, r["question"].get<std::string>(), p);
  EXPECT_EQ(number.result.stop, StopReason::eos);
  EXPECT_TRUE(number.answer.empty());
  EXPECT_TRUE(sentence_of(parse_gbnf("root ::= [0-9]{1,4}"), number.reasoning)) << number.reasoning;

  // think_budget forces "</think>", which that grammar cannot read: a clear error.
  p.think_budget = 2;
  try {
    chat(*session, r["question"].get<std::string>(), p);
    ADD_FAILURE() << "expected an error";
  } catch (const Failure& f) {
    EXPECT_EQ(f.code(), Errc::invalid_argument);
    EXPECT_NE(std::string(f.what()).find("think_budget"), std::string::npos) << f.what();
  }
}

}  // namespace
}  // namespace sibyl::engine::test
