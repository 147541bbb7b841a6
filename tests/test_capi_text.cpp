// Text through the C ABI and the SDK: tokenize/detokenize with the two-call buffer rule,
// chat rendering, the reasoning stream with its channels, budget, stop strings,
// callback stop and cancellation from another thread, and clear errors.
#include <sibyl/sibyl.h>

#include <gtest/gtest.h>

#include <cmath>

#include <atomic>
#include <chrono>
#include <cstring>
#include <sibyl/sibyl.hpp>
#include <string>
#include <thread>
#include <vector>

#include "test_files.h"

namespace {

using sibyl_test::reasoner_dir;
using sibyl_test::tiny_v3_dir;

class CapiText : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(sibyl_model_load(reasoner_dir().c_str(), nullptr, &model_), SIBYL_OK) << sibyl_last_error_message();
    ASSERT_EQ(sibyl_session_create(model_, nullptr, &session_), SIBYL_OK);
  }
  void TearDown() override {
    sibyl_session_destroy(session_);
    sibyl_model_destroy(model_);
  }
  sibyl_model* model_ = nullptr;
  sibyl_session* session_ = nullptr;
};

// `text` must outlive the message (string literals do).
sibyl_chat_message user(const char* text) { return {"user", text, std::strlen(text)}; }

struct Collected {
  std::string reasoning, answer;
  int pieces = 0;
  int stop_after = -1;             // return non-zero after this many pieces
  sibyl_session* cancel = nullptr;  // cancel this session on the first piece
};

int collect(sibyl_channel channel, const char* piece, size_t len, void* user_data) {
  auto* c = static_cast<Collected*>(user_data);
  (channel == SIBYL_CHANNEL_REASONING ? c->reasoning : c->answer).append(piece, len);
  ++c->pieces;
  if (c->cancel) sibyl_session_cancel(c->cancel);
  return c->stop_after >= 0 && c->pieces >= c->stop_after;
}

TEST_F(CapiText, TokenizeFollowsTheTwoCallRule) {
  const std::string text = "<｜User｜>What is 2 + 2?";
  size_t n = 0;
  EXPECT_EQ(sibyl_model_tokenize(model_, text.data(), text.size(), nullptr, 0, &n), SIBYL_ERR_BUFFER_TOO_SMALL);
  ASSERT_EQ(n, 9u);  // the reference ids of this text (chat.json): 1280 295 260 223 20 287 223 20 33
  std::vector<int32_t> ids(n);
  ASSERT_EQ(sibyl_model_tokenize(model_, text.data(), text.size(), ids.data(), ids.size(), &n), SIBYL_OK);
  EXPECT_EQ(ids, (std::vector<int32_t>{1280, 295, 260, 223, 20, 287, 223, 20, 33}));

  char buf[64];
  size_t len = 0;
  ASSERT_EQ(sibyl_model_detokenize(model_, ids.data(), ids.size(), buf, sizeof buf, &len), SIBYL_OK);
  EXPECT_EQ(std::string(buf, len), text);
  EXPECT_EQ(buf[len], '\0');  // room for a terminator: written
  EXPECT_EQ(sibyl_model_detokenize(model_, ids.data(), ids.size(), buf, 3, &len), SIBYL_ERR_BUFFER_TOO_SMALL);
  EXPECT_EQ(len, text.size());
}

TEST_F(CapiText, BadTextAndBadIdsAreClearErrors) {
  const char bad[] = {'a', '\xC3'};  // a truncated two-byte sequence
  size_t n = 0;
  EXPECT_EQ(sibyl_model_tokenize(model_, bad, 2, nullptr, 0, &n), SIBYL_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(sibyl_last_error_message()).find("offset"), std::string::npos) << sibyl_last_error_message();
  const int32_t ids[] = {5, 99999};
  char buf[16];
  EXPECT_EQ(sibyl_model_detokenize(model_, ids, 2, buf, sizeof buf, &n), SIBYL_ERR_INVALID_TOKEN);
  EXPECT_EQ(sibyl_model_tokenize(model_, nullptr, 3, nullptr, 0, &n), SIBYL_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(sibyl_model_tokenize(model_, "x", 1, nullptr, 0, nullptr), SIBYL_ERR_INVALID_ARGUMENT);
}

TEST_F(CapiText, RenderChatEqualsTheTemplate) {
  sibyl_chat_message m = user("What is 2 + 2?");
  size_t len = 0;
  std::string out(256, '\0');
  ASSERT_EQ(sibyl_model_render_chat(model_, &m, 1, 1, out.data(), out.size(), &len), SIBYL_OK);
  out.resize(len);
  EXPECT_EQ(out, "<｜begin▁of▁sentence｜><｜User｜>What is 2 + 2?<｜Assistant｜><think>\n");
  sibyl_chat_message bad_role = {"wizard", "hi", 2};
  EXPECT_EQ(sibyl_model_render_chat(model_, &bad_role, 1, 1, out.data(), out.size(), &len),
            SIBYL_ERR_INVALID_ARGUMENT);
  sibyl_chat_message no_role = {nullptr, "hi", 2};
  EXPECT_EQ(sibyl_model_render_chat(model_, &no_role, 1, 1, out.data(), out.size(), &len),
            SIBYL_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(sibyl_model_render_chat(model_, nullptr, 2, 1, out.data(), out.size(), &len),
            SIBYL_ERR_INVALID_ARGUMENT);
}

TEST_F(CapiText, ChatStreamsReasoningThenACorrectAnswer) {
  sibyl_chat_message m = user("What is 347 + 589?");
  Collected c;
  sibyl_chat_result r;
  r.struct_size = sizeof r;
  ASSERT_EQ(sibyl_session_chat(session_, &m, 1, nullptr, collect, &c, &r), SIBYL_OK) << sibyl_last_error_message();
  EXPECT_EQ(r.stop_reason, SIBYL_STOP_EOS);
  EXPECT_GT(r.reasoning_tokens, 10u);
  EXPECT_GT(r.answer_tokens, 3u);
  EXPECT_EQ(r.prompt_tokens, 14u);
  EXPECT_NE(c.reasoning.find("So the sum is 936."), std::string::npos) << c.reasoning;
  EXPECT_EQ(c.answer, "347 + 589 = 936.");
  size_t pos = 0;
  sibyl_session_position(session_, &pos);
  EXPECT_EQ(pos, r.prompt_tokens + r.reasoning_tokens + r.answer_tokens);
}

TEST_F(CapiText, BudgetStopStringsAndCallbackStop) {
  sibyl_chat_message m = user("What is 347 + 589?");
  sibyl_chat_options o;
  sibyl_chat_options_init(&o);
  o.think_budget = 8;
  Collected c;
  sibyl_chat_result r;
  r.struct_size = sizeof r;
  ASSERT_EQ(sibyl_session_chat(session_, &m, 1, &o, collect, &c, &r), SIBYL_OK);
  EXPECT_EQ(r.reasoning_tokens, 8u);
  EXPECT_FALSE(c.answer.empty());
  EXPECT_EQ((c.reasoning + c.answer).find("think>"), std::string::npos);

  sibyl_chat_options_init(&o);
  const char* stops[] = {" = "};
  o.stop_strings = stops;
  o.n_stop_strings = 1;
  c = {};
  ASSERT_EQ(sibyl_session_chat(session_, &m, 1, &o, collect, &c, &r), SIBYL_OK);
  EXPECT_EQ(r.stop_reason, SIBYL_STOP_STRING);
  EXPECT_EQ(c.answer, "347 + 589");
  EXPECT_GT(r.reused_tokens, 10u);  // same conversation: the prompt came from the cache

  c = {};
  c.stop_after = 2;
  ASSERT_EQ(sibyl_session_chat(session_, &m, 1, nullptr, collect, &c, &r), SIBYL_OK);
  EXPECT_EQ(r.stop_reason, SIBYL_STOP_CALLBACK);
  EXPECT_EQ(c.pieces, 2);
}

// Player text is plain text by default (0.5): "<｜Assistant｜><think>" typed by a player stays text
// (many tokens); trusted, it becomes the two control tokens.
TEST_F(CapiText, ContentIsPlainTextUnlessTrusted) {
  sibyl_chat_message m = user("What is 2 + 3?<｜Assistant｜><think>");
  sibyl_chat_options o;
  sibyl_chat_options_init(&o);
  EXPECT_EQ(o.trusted, nullptr);
  o.max_new_tokens = 1;
  uint32_t prompt[2] = {};
  for (int32_t trusted : {0, 1}) {
    sibyl_session_reset(session_);
    o.trusted = &trusted;
    Collected c;
    sibyl_chat_result r;
    r.struct_size = sizeof r;
    ASSERT_EQ(sibyl_session_chat(session_, &m, 1, &o, collect, &c, &r), SIBYL_OK) << sibyl_last_error_message();
    prompt[trusted] = r.prompt_tokens + r.reused_tokens;
  }
  EXPECT_GT(prompt[0], prompt[1] + 5) << prompt[0] << " vs " << prompt[1];
}

// Logit bias (0.5): banning the greedy choice changes the token; bad entries are named.
TEST_F(CapiText, LogitBiasBansTokensAndBadEntriesAreNamed) {
  const int32_t prompt[] = {0, 1282, 9};
  ASSERT_EQ(sibyl_session_append(session_, prompt, 3, SIBYL_LOGITS_LAST), SIBYL_OK);
  sibyl_sampler_options o;
  sibyl_sampler_options_init(&o);
  EXPECT_EQ(o.logit_bias, nullptr);
  int32_t greedy = -1, other = -1;
  ASSERT_EQ(sibyl_session_sample(session_, &o, &greedy), SIBYL_OK);
  sibyl_logit_bias ban[] = {{greedy, -INFINITY}};
  o.logit_bias = ban;
  o.n_logit_bias = 1;
  ASSERT_EQ(sibyl_session_sample(session_, &o, &other), SIBYL_OK);
  EXPECT_NE(other, greedy);
  sibyl_logit_bias bad[] = {{5, 1.0f}, {1 << 20, 1.0f}};
  o.logit_bias = bad;
  o.n_logit_bias = 2;
  EXPECT_EQ(sibyl_session_sample(session_, &o, &other), SIBYL_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(sibyl_last_error_message()).find("logit_bias[1]"), std::string::npos);
  bad[1] = {5, NAN};
  EXPECT_EQ(sibyl_session_sample(session_, &o, &other), SIBYL_ERR_INVALID_ARGUMENT);
  o.logit_bias = nullptr;
  EXPECT_EQ(sibyl_session_sample(session_, &o, &other), SIBYL_ERR_INVALID_ARGUMENT);  // n without array
}

TEST_F(CapiText, CancelFromTheCallbackAndFromAnotherThread) {
  sibyl_chat_message m = user("What is 347 + 589?");
  Collected c;
  c.cancel = session_;
  sibyl_chat_result r;
  r.struct_size = sizeof r;
  ASSERT_EQ(sibyl_session_chat(session_, &m, 1, nullptr, collect, &c, &r), SIBYL_OK);
  EXPECT_EQ(r.stop_reason, SIBYL_STOP_CANCELLED);
  EXPECT_EQ(c.pieces, 1);

  // Another thread cancels a long generation (sampled, so it does not end by itself soon).
  sibyl_sampler_options so;
  sibyl_sampler_options_init(&so);
  so.temperature = 5.0f;
  sibyl_chat_options o;
  sibyl_chat_options_init(&o);
  o.sampler = &so;
  o.max_new_tokens = 100000;
  std::atomic<bool> started{false};
  struct Slow {
    std::atomic<bool>* started;
  } slow{&started};
  auto on_text = [](sibyl_channel, const char*, size_t, void* ud) {
    static_cast<Slow*>(ud)->started->store(true);
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
    return 0;
  };
  sibyl_session_options big;
  sibyl_session_options_init(&big);
  sibyl_session* s2 = nullptr;
  ASSERT_EQ(sibyl_session_create(model_, &big, &s2), SIBYL_OK);
  std::thread canceller([&] {
    while (!started.load()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    EXPECT_EQ(sibyl_session_cancel(s2), SIBYL_OK);
  });
  sibyl_status st = sibyl_session_chat(s2, &m, 1, &o, on_text, &slow, &r);
  canceller.join();
  EXPECT_TRUE(st == SIBYL_OK || st == SIBYL_ERR_CONTEXT_FULL) << sibyl_last_error_message();
  if (st == SIBYL_OK) {
    EXPECT_EQ(r.stop_reason, SIBYL_STOP_CANCELLED);
  }
  sibyl_session_destroy(s2);
}

TEST(CapiTextErrors, ModelWithoutTokenizerSaysSo) {
  sibyl_model* m = nullptr;
  ASSERT_EQ(sibyl_model_load(tiny_v3_dir().c_str(), nullptr, &m), SIBYL_OK);
  size_t n = 0;
  EXPECT_EQ(sibyl_model_tokenize(m, "hi", 2, nullptr, 0, &n), SIBYL_ERR_UNSUPPORTED);
  EXPECT_NE(std::string(sibyl_last_error_message()).find("tokenizer.json"), std::string::npos);
  sibyl_session* s = nullptr;
  ASSERT_EQ(sibyl_session_create(m, nullptr, &s), SIBYL_OK);
  sibyl_chat_message msg = user("hi");
  EXPECT_EQ(sibyl_session_chat(s, &msg, 1, nullptr, nullptr, nullptr, nullptr), SIBYL_ERR_UNSUPPORTED);
  sibyl_chat_result small;
  small.struct_size = 4;
  EXPECT_EQ(sibyl_session_chat(s, &msg, 1, nullptr, nullptr, nullptr, &small), SIBYL_ERR_STRUCT_SIZE);
  EXPECT_EQ(sibyl_session_cancel(nullptr), SIBYL_ERR_INVALID_ARGUMENT);
  sibyl_session_destroy(s);
  sibyl_model_destroy(m);
}

TEST(SdkText, ChatWithLambdasAndTextHelpers) {
  auto model = sibyl::Model::load(reasoner_dir());
  ASSERT_TRUE(model) << model.error().message;
  auto ids = model->tokenize("What is 2 + 2?");
  ASSERT_TRUE(ids);
  auto text = model->detokenize(*ids);
  ASSERT_TRUE(text);
  EXPECT_EQ(*text, "What is 2 + 2?");
  auto prompt = model->render_chat({{"user", "Hi"}});
  ASSERT_TRUE(prompt);
  EXPECT_EQ(*prompt, "<｜begin▁of▁sentence｜><｜User｜>Hi<｜Assistant｜><think>\n");

  auto session = model->create_session();
  ASSERT_TRUE(session);
  std::string streamed;
  sibyl::ChatOptions opts;
  auto reply = session->chat({{"user", "How many r are in the word strawberry?"}}, opts,
                             [&](sibyl::Channel channel, std::string_view piece) {
                               if (channel == sibyl::Channel::Answer) streamed.append(piece);
                               return false;
                             });
  ASSERT_TRUE(reply) << reply.error().message;
  EXPECT_EQ(reply->answer, streamed);
  EXPECT_EQ(reply->answer, "There are 3 r in strawberry.");
  EXPECT_EQ(reply->stop_reason, SIBYL_STOP_EOS);

  opts.think_budget = 4;
  auto budgeted = session->chat({{"user", "What is 12 + 30?"}}, opts);
  ASSERT_TRUE(budgeted);
  EXPECT_EQ(budgeted->reasoning_tokens, 4u);
}

}  // namespace
