// The reasoning stream on the embedded tiny-reasoner: exact token ids against the
// reference for every public eval problem (through the tokenizer and chat template),
// the thinking budget, thinking off, stop strings, cancellation and prefix reuse.
#include <gtest/gtest.h>

#include <cctype>
#include <map>
#include <nlohmann/json.hpp>
#include <tuple>

#include "engine/chat/channel_writer.h"
#include "engine/formats/file_util.h"
#include "fixture_util.h"
#include "engine/chat/reasoning.h"

namespace sibyl::engine::test {
namespace {

std::string model_dir() { return data_dir() + "/../../models/tiny-reasoner"; }

// The tiny-reasoner from any of its files, loaded once per path and precision.
const std::shared_ptr<Model>& reasoner(const std::string& path = model_dir(),
                                       backend::Precision precision = backend::Precision::exact) {
  static std::map<std::pair<std::string, backend::Precision>, std::shared_ptr<Model>> models;
  auto& m = models[{path, precision}];
  if (!m) {
    ModelLoadOptions o;
    o.backend_options.precision = precision;
    m = Model::load(path, o);
  }
  return m;
}

struct Reply {
  std::string reasoning, answer;
  ChatResult result;
  std::vector<int32_t> generated;  // the reply's token ids, as appended to the session
};

Reply chat(Session& s, const std::vector<ChatMessage>& messages, const ChatParams& params = {}) {
  Reply r;
  const std::shared_ptr<Model> model = s.model();
  r.result = run_chat(s, model->tokenizer(), model->chat_format(), messages, params,
                      [&](Channel c, std::string_view piece) {
                        (c == Channel::reasoning ? r.reasoning : r.answer).append(piece);
                        return false;
                      });
  // The reply: everything after the prompt (forced budget tokens included).
  r.generated.assign(s.tokens().begin() + r.result.reused_tokens + r.result.prompt_tokens, s.tokens().end());
  return r;
}

std::vector<ChatMessage> ask(const std::string& question) { return {{"user", question, {}}}; }

const nlohmann::json& eval_results() {
  static nlohmann::json j = nlohmann::json::parse(read_text_file(model_dir() + "/eval.public.json"))["results"];
  return j;
}

// All public eval problems, in four shards so CTest can run them side by side, from each file
// form of the model: its Hugging Face directory, llama.cpp's GGUF of it (tokenizer and chat
// template from the GGUF metadata), and packs converted to Q8_0 and Q4_K (greedy outputs must
// stay identical: quantization is judged on the trained model). "fast:" runs the file on the
// CPU fast path (8-bit / bf16 activations): llama.cpp's three GGUFs of it keep every output too.
class EvalShard : public ::testing::TestWithParam<std::tuple<std::string, int>> {};

TEST_P(EvalShard, GreedyReplyEqualsReferenceIdsAndAnswerIsCorrect) {
  auto [file, shard] = GetParam();
  backend::Precision precision = backend::Precision::exact;
  if (file.starts_with("fast:")) {
    precision = backend::Precision::fast;
    file = file.substr(5);
  }
  const std::string path = file == "hf"               ? model_dir()
                           : file.ends_with(".sibyl") ? converted_pack(model_dir(), file.substr(0, file.find('.')))
                                                      : data_dir() + "/" + file;
  const std::shared_ptr<Model>& model = reasoner(path, precision);
  const Tokenizer& tok = model->tokenizer();
  const ChatFormat& fmt = model->chat_format();
  const nlohmann::json& results = eval_results();
  for (size_t i = static_cast<size_t>(shard); i < results.size(); i += 4) {
    const nlohmann::json& r = results[i];
    const std::string question = r["question"];
    ASSERT_EQ(tok.encode(fmt.render(ask(question), true)), r["prompt_ids"].get<std::vector<int32_t>>()) << question;
    Session s(model, {});
    Reply reply = chat(s, ask(question));
    ASSERT_EQ(reply.generated, r["output_ids"].get<std::vector<int32_t>>()) << question;
    EXPECT_EQ(reply.result.stop, StopReason::eos);
    // The channels are the reference text split at </think>, without the tags and the format's blank lines.
    const std::string text = r["output_text"];
    const size_t close = text.find("</think>");
    ASSERT_NE(close, std::string::npos);
    std::string reasoning = text.substr(0, close);
    while (!reasoning.empty() && reasoning.back() == '\n') reasoning.pop_back();
    EXPECT_EQ(reply.reasoning, reasoning) << question;
    EXPECT_NE(reply.answer.find(r["key"].get<std::string>()), std::string::npos) << reply.answer;
    EXPECT_EQ(reply.answer.find("<"), std::string::npos) << "no tags or special tokens: " << reply.answer;
  }
}

INSTANTIATE_TEST_SUITE_P(TinyReasoner, EvalShard,
                         ::testing::Combine(::testing::Values("hf", "gguf/tiny-reasoner-bf16.gguf", "q8_0.sibyl", "q4_k.sibyl",
                                                              "fast:gguf/tiny-reasoner-bf16.gguf",
                                                              "fast:gguf/tiny-reasoner-q8_0.gguf",
                                                              "fast:gguf/tiny-reasoner-q4_k_m.gguf"),
                                            ::testing::Range(0, 4)),
                         [](const auto& info) {
                           std::string n = std::get<0>(info.param) + "_" + std::to_string(std::get<1>(info.param));
                           for (char& ch : n)
                             if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
                           return n;
                         });

TEST(Reasoning, ThinkingBudgetForcesTheAnswer) {
  Session s(reasoner(), {});
  ChatParams p;
  p.think_budget = 8;
  Reply r = chat(s, ask("What is 6238 + 76?"), p);
  EXPECT_EQ(r.result.reasoning_tokens, 8);
  EXPECT_EQ(r.result.stop, StopReason::eos);
  EXPECT_FALSE(r.reasoning.empty());
  EXPECT_FALSE(r.answer.empty());  // a tiny model cut off mid-reasoning answers, if not always right
  for (const std::string* t : {&r.reasoning, &r.answer}) {
    EXPECT_EQ(t->find("<think>"), std::string::npos) << *t;
    EXPECT_EQ(t->find("</think>"), std::string::npos) << *t;
  }
  // The budget's forced tokens, right after the 8 reasoning tokens, are the format's own close.
  std::vector<int32_t> close = reasoner()->tokenizer().encode("\n</think>\n\n");
  const auto at = s.tokens().begin() + r.result.prompt_tokens + r.result.reused_tokens + 8;
  EXPECT_TRUE(std::equal(close.begin(), close.end(), at));
}

TEST(Reasoning, ZeroBudgetAndThinkingOffAnswerDirectly) {
  for (int variant = 0; variant < 2; ++variant) {
    Session s(reasoner(), {});
    ChatParams p;
    if (variant == 0) p.think_budget = 0;
    else p.thinking = false;
    Reply r = chat(s, ask("What is 12 + 30?"), p);
    EXPECT_EQ(r.result.reasoning_tokens, 0);
    EXPECT_TRUE(r.reasoning.empty()) << r.reasoning;
    EXPECT_FALSE(r.answer.empty());
    EXPECT_EQ(r.result.stop, StopReason::eos);
  }
}

TEST(Reasoning, StopStringEndsTheAnswerBeforeIt) {
  Session s(reasoner(), {});
  ChatParams p;
  p.stop_strings = {" = "};
  Reply r = chat(s, ask("What is 6238 + 76?"), p);
  EXPECT_EQ(r.result.stop, StopReason::stop_string);
  EXPECT_EQ(r.answer, "6238 + 76");
}

TEST(Reasoning, CancelAndMaxTokensStop) {
  Session s(reasoner(), {});
  std::atomic<bool> cancel{true};
  ChatParams p;
  p.cancel = &cancel;
  Reply r = chat(s, ask("What is 1 + 1?"), p);
  EXPECT_EQ(r.result.stop, StopReason::cancelled);
  EXPECT_EQ(r.result.reasoning_tokens + r.result.answer_tokens, 0);
  cancel = false;
  p.max_new_tokens = 5;
  r = chat(s, ask("What is 1 + 1?"), p);
  EXPECT_EQ(r.result.stop, StopReason::max_tokens);
  EXPECT_EQ(r.result.reasoning_tokens + r.result.answer_tokens, 5);
}

TEST(Reasoning, SecondTurnReusesTheCachedPrefix) {
  Session s(reasoner(), {});
  std::vector<ChatMessage> conv = ask("What is 6238 + 76?");
  Reply first = chat(s, conv);
  conv.push_back({"assistant", first.answer, {}});
  conv.push_back({"user", "What is 12 + 30?", {}});
  Reply second = chat(s, conv);
  EXPECT_GT(second.result.reused_tokens, 8);  // at least the first question
  Session fresh(reasoner(), {});
  Reply again = chat(fresh, conv);
  EXPECT_EQ(second.generated, again.generated);
  EXPECT_EQ(second.answer, again.answer);
}

TEST(ChannelWriter, TrimsFormatWhitespaceAndHoldsPartialStops) {
  std::vector<std::pair<Channel, std::string>> out;
  TextSink sink = [&](Channel c, std::string_view t) {
    out.push_back({c, std::string(t)});
    return false;
  };
  ChannelWriter w(sink, {"STOP"});
  EXPECT_FALSE(w.write(Channel::reasoning, "think"));
  EXPECT_FALSE(w.write(Channel::reasoning, " more\n"));
  EXPECT_FALSE(w.write(Channel::answer, "\n\nHello ST"));
  EXPECT_FALSE(w.write(Channel::answer, "Ops"));
  EXPECT_FALSE(w.write(Channel::answer, " end ST"));
  EXPECT_FALSE(w.finish());
  std::string reasoning, answer;
  for (auto& [c, t] : out) (c == Channel::reasoning ? reasoning : answer) += t;
  EXPECT_EQ(reasoning, "think more");
  EXPECT_EQ(answer, "Hello STOps end ST");
}

TEST(ChannelWriter, StopStringSplitAcrossPieces) {
  std::string answer;
  TextSink sink = [&](Channel, std::string_view t) {
    answer += t;
    return false;
  };
  ChannelWriter w(sink, {"</answer>"});
  EXPECT_FALSE(w.write(Channel::answer, "42 </ans"));
  EXPECT_EQ(answer, "42 ");
  EXPECT_TRUE(w.write(Channel::answer, "wer> tail"));
  EXPECT_TRUE(w.hit_stop_string());
  EXPECT_EQ(answer, "42 ");
}

}  // namespace
}  // namespace sibyl::engine::test
