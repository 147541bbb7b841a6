// Structured output through the C ABI: a JSON Schema constraining the answer of blocking and
// non-blocking chats (the same reply both ways), a GBNF grammar over raw generation, a grammar
// outliving its handle inside a running request, the schema's GBNF, option structs of older
// callers, and errors for bad grammars and arguments.
#include <sibyl/sibyl.h>

#include <gtest/gtest.h>

#include <cstring>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "capi_request_util.h"
#include "test_files.h"

namespace {

using sibyl_capi_test::Drained;

constexpr const char* kSchema =
    R"({"type": "object", "properties": {"answer": {"type": "integer", "minimum": 0, "maximum": 99999},
        "sure": {"type": "boolean"}}, "required": ["answer", "sure"]})";

class CapiGrammar : public ::testing::Test {
 protected:
  void SetUp() override {
    model_ = sibyl_capi_test::load_model(sibyl_test::reasoner_dir());
    ASSERT_NE(model_, nullptr);
    session_ = sibyl_capi_test::new_session(model_);
    ASSERT_EQ(sibyl_grammar_from_json_schema(kSchema, &schema_), SIBYL_OK) << sibyl_last_error_message();
  }
  void TearDown() override {
    sibyl_grammar_destroy(schema_);
    sibyl_session_destroy(session_);
    sibyl_model_destroy(model_);
  }
  sibyl_model* model_ = nullptr;
  sibyl_session* session_ = nullptr;
  sibyl_grammar* schema_ = nullptr;
};

struct Text {
  std::string reasoning, answer;
};

int collect(sibyl_channel channel, const char* piece, size_t len, void* user_data) {
  auto* t = static_cast<Text*>(user_data);
  (channel == SIBYL_CHANNEL_REASONING ? t->reasoning : t->answer).append(piece, len);
  return 0;
}

TEST_F(CapiGrammar, SchemaShapesTheAnswerBlockingAndNonBlocking) {
  const char* question = "What is 6238 + 76?";
  const sibyl_chat_message msg{"user", question, std::strlen(question)};
  sibyl_chat_options co;
  sibyl_chat_options_init(&co);
  co.max_new_tokens = 512;
  co.grammar = schema_;
  Text blocking;
  sibyl_chat_result res;
  std::memset(&res, 0, sizeof res);
  res.struct_size = sizeof res;
  ASSERT_EQ(sibyl_session_chat(session_, &msg, 1, &co, collect, &blocking, &res), SIBYL_OK)
      << sibyl_last_error_message();
  EXPECT_EQ(res.stop_reason, SIBYL_STOP_EOS);
  const nlohmann::json j = nlohmann::json::parse(blocking.answer);  // throws if not JSON
  ASSERT_TRUE(j.is_object()) << blocking.answer;
  EXPECT_TRUE(j["answer"].is_number_integer()) << blocking.answer;
  EXPECT_TRUE(j["sure"].is_boolean()) << blocking.answer;
  EXPECT_EQ(j.size(), 2u);
  EXPECT_FALSE(blocking.reasoning.empty());

  // The same chat as a request on a fresh session, with the grammar prepared for the model
  // first; the handle may go before the request ends.
  sibyl_session* other = sibyl_capi_test::new_session(model_);
  sibyl_grammar* copy = nullptr;
  ASSERT_EQ(sibyl_grammar_from_json_schema(kSchema, &copy), SIBYL_OK);
  ASSERT_EQ(sibyl_grammar_prepare(copy, model_, SIBYL_GRAMMAR_ANSWER), SIBYL_OK) << sibyl_last_error_message();
  co.grammar = copy;
  sibyl_request* r = nullptr;
  ASSERT_EQ(sibyl_session_submit_chat(other, &msg, 1, &co, nullptr, &r), SIBYL_OK) << sibyl_last_error_message();
  sibyl_grammar_destroy(copy);
  const Drained d = sibyl_capi_test::wait_done(r);
  EXPECT_EQ(d.status, SIBYL_OK) << d.message;
  EXPECT_EQ(d.stop, SIBYL_STOP_EOS);
  EXPECT_EQ(d.text[0], blocking.reasoning);
  EXPECT_EQ(d.text[1], blocking.answer);
  sibyl_request_destroy(r);
  sibyl_session_destroy(other);
}

// One grammar, two models (each with its own scheduler thread), four threads chatting and one
// preparing it at the same time: every answer equals the one computed alone.
TEST_F(CapiGrammar, OneGrammarServesTwoModelsFromFourThreads) {
  const char* questions[] = {"What is 6238 + 76?", "Which is bigger, 848 or 375?"};
  sibyl_model* second = sibyl_capi_test::load_model(sibyl_test::reasoner_dir());
  ASSERT_NE(second, nullptr);
  auto answer = [&](sibyl_model* m, const char* q, std::string& out) {
    sibyl_session* s = sibyl_capi_test::new_session(m);
    const sibyl_chat_message msg{"user", q, std::strlen(q)};
    sibyl_chat_options co;
    sibyl_chat_options_init(&co);
    co.max_new_tokens = 512;
    co.grammar = schema_;
    Text t;
    const sibyl_status st = sibyl_session_chat(s, &msg, 1, &co, collect, &t, nullptr);
    out = st == SIBYL_OK ? t.answer : std::string("error: ") + sibyl_last_error_message();
    sibyl_session_destroy(s);
  };
  std::string alone[2];
  {
    sibyl_grammar* fresh = nullptr;  // the references come from a grammar of their own
    ASSERT_EQ(sibyl_grammar_from_json_schema(kSchema, &fresh), SIBYL_OK);
    std::swap(fresh, schema_);
    for (int q = 0; q < 2; ++q) answer(model_, questions[q], alone[q]);
    std::swap(fresh, schema_);
    sibyl_grammar_destroy(fresh);
  }
  std::string got[4];
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i)
    threads.emplace_back([&, i] { answer(i % 2 ? second : model_, questions[i / 2], got[i]); });
  threads.emplace_back([&] { EXPECT_EQ(sibyl_grammar_prepare(schema_, second, SIBYL_GRAMMAR_ANSWER), SIBYL_OK); });
  for (std::thread& t : threads) t.join();
  for (int i = 0; i < 4; ++i) EXPECT_EQ(got[i], alone[i / 2]) << i;
  sibyl_model_destroy(second);
}

TEST_F(CapiGrammar, GbnfOverRawGeneration) {
  sibyl_grammar* digits = nullptr;
  ASSERT_EQ(sibyl_grammar_from_gbnf("start ::= [1-9] [0-9] [0-9]", "start", &digits), SIBYL_OK)
      << sibyl_last_error_message();
  const std::string prompt = "Numbers: 12, 7, ";
  std::vector<int32_t> ids(64);
  size_t n = 0;
  ASSERT_EQ(sibyl_model_tokenize(model_, prompt.data(), prompt.size(), ids.data(), ids.size(), &n), SIBYL_OK);
  ids.resize(n);
  sibyl_generate_options g = sibyl_capi_test::gen_options(16, true);
  g.grammar = digits;
  sibyl_sampler_options so;
  sibyl_sampler_options_init(&so);
  so.temperature = 2.0f;  // hot: the mask still holds
  g.sampler = &so;
  std::vector<int32_t> out;
  size_t generated = 0;
  auto on_token = [](int32_t token, void* ud) {
    static_cast<std::vector<int32_t>*>(ud)->push_back(token);
    return 0;
  };
  ASSERT_EQ(sibyl_session_generate(session_, ids.data(), ids.size(), &g, on_token, &out, &generated), SIBYL_OK)
      << sibyl_last_error_message();
  ASSERT_FALSE(out.empty());
  const int32_t eos = out.back();
  out.pop_back();  // the grammar accepted three digits: end-of-sequence came next
  std::string text(32, '\0');
  size_t len = 0;
  ASSERT_EQ(sibyl_model_detokenize(model_, out.data(), out.size(), text.data(), text.size(), &len), SIBYL_OK);
  text.resize(len);
  EXPECT_EQ(text.size(), 3u) << text;
  EXPECT_TRUE(text[0] >= '1' && text[0] <= '9' && std::isdigit(static_cast<unsigned char>(text[1])) &&
              std::isdigit(static_cast<unsigned char>(text[2])))
      << text;
  sibyl_model_info info;
  std::memset(&info, 0, sizeof info);
  info.struct_size = sizeof info;
  ASSERT_EQ(sibyl_model_get_info(model_, &info), SIBYL_OK);
  EXPECT_EQ(eos, info.eos_token_id);
  sibyl_grammar_destroy(digits);
}

TEST_F(CapiGrammar, AModelWithoutTokenizerRefusesGrammars) {
  sibyl_model* bare = sibyl_capi_test::load_model(sibyl_test::tiny_v3_dir());  // weights only
  ASSERT_NE(bare, nullptr);
  sibyl_session* s = sibyl_capi_test::new_session(bare);
  const int32_t prompt[] = {1, 2, 3};
  sibyl_generate_options g = sibyl_capi_test::gen_options(4, true);
  g.grammar = schema_;
  size_t n = 0;
  EXPECT_EQ(sibyl_session_generate(s, prompt, 3, &g, nullptr, nullptr, &n), SIBYL_ERR_UNSUPPORTED);
  EXPECT_NE(std::string(sibyl_last_error_message()).find("tokenizer"), std::string::npos) << sibyl_last_error_message();
  EXPECT_EQ(sibyl_grammar_prepare(schema_, bare, SIBYL_GRAMMAR_ANSWER), SIBYL_ERR_UNSUPPORTED);
  g.grammar = nullptr;  // the session is still usable
  EXPECT_EQ(sibyl_session_generate(s, prompt, 3, &g, nullptr, nullptr, &n), SIBYL_OK) << sibyl_last_error_message();
  EXPECT_EQ(n, 4u);
  sibyl_session_destroy(s);
  sibyl_model_destroy(bare);
}

TEST_F(CapiGrammar, SchemaGbnfFollowsTheTwoCallRule) {
  size_t len = 0;
  EXPECT_EQ(sibyl_json_schema_to_gbnf(kSchema, nullptr, 0, &len), SIBYL_ERR_BUFFER_TOO_SMALL);
  ASSERT_GT(len, 20u);
  std::string gbnf(len, '\0');
  ASSERT_EQ(sibyl_json_schema_to_gbnf(kSchema, gbnf.data(), gbnf.size(), &len), SIBYL_OK);
  EXPECT_EQ(gbnf.rfind("root ::= ", 0), 0u) << gbnf;
  sibyl_grammar* again = nullptr;  // the text compiles as GBNF
  EXPECT_EQ(sibyl_grammar_from_gbnf(gbnf.c_str(), nullptr, &again), SIBYL_OK) << sibyl_last_error_message();
  sibyl_grammar_destroy(again);
}

TEST_F(CapiGrammar, OlderOptionStructsAreRead) {
  const char* question = "Which is bigger, 848 or 375?";
  const sibyl_chat_message msg{"user", question, std::strlen(question)};
  sibyl_chat_options co;
  sibyl_chat_options_init(&co);
  co.struct_size = offsetof(sibyl_chat_options, trusted);  // a 0.4 caller
  sibyl_sampler_options so;
  sibyl_sampler_options_init(&so);
  so.struct_size = offsetof(sibyl_sampler_options, logit_bias);
  co.sampler = &so;
  Text t;
  EXPECT_EQ(sibyl_session_chat(session_, &msg, 1, &co, collect, &t, nullptr), SIBYL_OK) << sibyl_last_error_message();
  EXPECT_EQ(t.answer, "848 is bigger.");
  co.struct_size = offsetof(sibyl_chat_options, trusted) - 4;
  EXPECT_EQ(sibyl_session_chat(session_, &msg, 1, &co, collect, &t, nullptr), SIBYL_ERR_STRUCT_SIZE);
}

TEST_F(CapiGrammar, BadGrammarsAndArgumentsAreClearErrors) {
  sibyl_grammar* g = reinterpret_cast<sibyl_grammar*>(&g);
  EXPECT_EQ(sibyl_grammar_from_gbnf("root ::= \"a\"\nitem ::= [", nullptr, &g), SIBYL_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(sibyl_last_error_message()).find("line 2"), std::string::npos) << sibyl_last_error_message();
  EXPECT_EQ(g, nullptr);
  EXPECT_EQ(sibyl_grammar_from_gbnf("root ::= x", nullptr, &g), SIBYL_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(sibyl_grammar_from_gbnf("main ::= \"a\"", "nope", &g), SIBYL_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(sibyl_grammar_from_gbnf("root ::= \"\xff\"", nullptr, &g), SIBYL_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(sibyl_grammar_from_json_schema(R"({"type": "string", "format": "email"})", &g), SIBYL_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(sibyl_last_error_message()).find("\"format\""), std::string::npos);
  EXPECT_EQ(sibyl_grammar_from_json_schema("{", &g), SIBYL_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(sibyl_grammar_from_json_schema(nullptr, &g), SIBYL_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(sibyl_grammar_from_gbnf(nullptr, nullptr, &g), SIBYL_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(sibyl_grammar_from_gbnf("root ::= \"a\"", nullptr, nullptr), SIBYL_ERR_INVALID_ARGUMENT);
  size_t len = 0;
  EXPECT_EQ(sibyl_json_schema_to_gbnf("[]", nullptr, 0, &len), SIBYL_ERR_INVALID_ARGUMENT);
  sibyl_grammar_destroy(nullptr);
  EXPECT_EQ(sibyl_grammar_prepare(nullptr, model_, SIBYL_GRAMMAR_ANSWER), SIBYL_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(sibyl_grammar_prepare(schema_, nullptr, SIBYL_GRAMMAR_ANSWER), SIBYL_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(sibyl_grammar_prepare(schema_, model_, static_cast<sibyl_grammar_scope>(2)), SIBYL_ERR_INVALID_ARGUMENT);

  const char* question = "What is 2 + 2?";
  const sibyl_chat_message msg{"user", question, std::strlen(question)};
  sibyl_chat_options co;
  sibyl_chat_options_init(&co);
  co.grammar = schema_;
  co.grammar_scope = static_cast<sibyl_grammar_scope>(7);
  EXPECT_EQ(sibyl_session_chat(session_, &msg, 1, &co, nullptr, nullptr, nullptr), SIBYL_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(sibyl_last_error_message()).find("grammar_scope"), std::string::npos);
  // A grammar whose every token the logit bias bans: the request fails, clearly.
  sibyl_grammar* x = nullptr;
  ASSERT_EQ(sibyl_grammar_from_gbnf("root ::= \"x\"+", nullptr, &x), SIBYL_OK);
  std::vector<sibyl_logit_bias> bans;
  for (const char* piece : {"x", "xx", "xxx", "xxxx"}) {
    int32_t ids[4];
    size_t n = 0;
    if (sibyl_model_tokenize(model_, piece, std::strlen(piece), ids, 4, &n) == SIBYL_OK && n == 1)
      bans.push_back({ids[0], -INFINITY});
  }
  sibyl_sampler_options so;
  sibyl_sampler_options_init(&so);
  so.logit_bias = bans.data();
  so.n_logit_bias = bans.size();
  co.sampler = &so;
  co.grammar = x;
  co.grammar_scope = SIBYL_GRAMMAR_WHOLE;
  EXPECT_EQ(sibyl_session_chat(session_, &msg, 1, &co, nullptr, nullptr, nullptr), SIBYL_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(sibyl_last_error_message()).find("grammar allows"), std::string::npos)
      << sibyl_last_error_message();
  sibyl_grammar_destroy(x);
}

}  // namespace
