// Tool calls through the C ABI on a DeepSeek-V3-template model (random weights at V3's
// vocabulary with the real V3 tokenizer and template, written by sibyl-synth before these
// tests run; SIBYL_TOOL_MODEL names another): a conversation with tools, calls and outputs renders as the
// template does (reference from Jinja), forced and automatic calls parse to schema-valid
// arguments through the blocking and non-blocking APIs, a tool result continues the chat on
// the cached prefix, and templates or tools that cannot work are clear errors; the same
// through the C++ SDK (built as C++17 here).
#include <sibyl/sibyl.hpp>

#include <gtest/gtest.h>

#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "capi_request_util.h"
#include "test_files.h"

namespace {

using json = nlohmann::ordered_json;  // keeps the schemas' key order

struct ToolDefs {  // the reference's tools as sibyl_tool, with the strings they point to
  explicit ToolDefs(const json& tools) {
    for (const json& t : tools) {
      names.push_back(t["name"]), descriptions.push_back(t["description"]), schemas.push_back(t["parameters"].dump());
    }
    for (size_t i = 0; i < names.size(); ++i)
      list.push_back({names[i].c_str(), descriptions[i].empty() ? nullptr : descriptions[i].c_str(), schemas[i].c_str()});
  }
  std::vector<std::string> names, descriptions, schemas;
  std::vector<sibyl_tool> list;
};

struct Conversation {  // messages and their tool calls as the C ABI takes them
  std::vector<std::string> roles, contents, call_names, call_args;
  std::vector<size_t> call_message;
  void add(std::string role, std::string content) { roles.push_back(std::move(role)), contents.push_back(std::move(content)); }
  void call(std::string name, std::string args) {
    call_message.push_back(roles.size() - 1), call_names.push_back(std::move(name)), call_args.push_back(std::move(args));
  }
  std::vector<sibyl_chat_message> messages() const {
    std::vector<sibyl_chat_message> m;
    for (size_t i = 0; i < roles.size(); ++i) m.push_back({roles[i].c_str(), contents[i].data(), contents[i].size()});
    return m;
  }
  std::vector<sibyl_tool_call> calls() const {
    std::vector<sibyl_tool_call> c;
    for (size_t i = 0; i < call_names.size(); ++i) c.push_back({call_message[i], call_names[i].c_str(), call_args[i].c_str()});
    return c;
  }
};

struct Calls;
int on_text(sibyl_channel channel, const char* piece, size_t len, void* user_data);

struct Calls {
  std::vector<std::pair<std::string, std::string>> made;  // name, arguments
  std::string answer;
  std::string answer_before_calls;  // the answer text when the first call arrived
};

int on_call(const char* name, size_t name_len, const char* args, size_t args_len, void* user_data) {
  auto* calls = static_cast<Calls*>(user_data);
  if (calls->made.empty()) calls->answer_before_calls = calls->answer;
  calls->made.emplace_back(std::string(name, name_len), std::string(args, args_len));
  return 0;
}

int on_text(sibyl_channel channel, const char* piece, size_t len, void* user_data) {
  if (channel == SIBYL_CHANNEL_ANSWER) static_cast<Calls*>(user_data)->answer.append(piece, len);
  return 0;
}

bool blank(const std::string& s) { return s.find_first_not_of(" \t\r\n") == std::string::npos; }

// Sampled chats pushed a little toward the call marker: how many called after answer text.
int calls_after_text(sibyl_session* session, const sibyl_tool& tool, int32_t marker, int32_t think_budget) {
  sibyl_logit_bias bias{marker, 8.0f};
  sibyl_sampler_options so;
  sibyl_sampler_options_init(&so);
  so.temperature = 1.0f;
  so.logit_bias = &bias;
  so.n_logit_bias = 1;
  sibyl_chat_options o;
  sibyl_chat_options_init(&o);
  o.tools = &tool;
  o.n_tools = 1;
  o.think_budget = think_budget;
  o.max_new_tokens = 60;
  o.sampler = &so;
  o.reseed = 1;
  o.on_tool_call = on_call;
  const sibyl_chat_message msg{"user", "Hello", 5};
  int after_text = 0;
  for (uint64_t seed = 1; seed <= 16; ++seed) {
    o.seed = seed;
    Calls c;
    EXPECT_EQ(sibyl_session_chat(session, &msg, 1, &o, on_text, &c, nullptr), SIBYL_OK) << sibyl_last_error_message();
    if (!c.made.empty() && !blank(c.answer_before_calls)) ++after_text;
  }
  return after_text;
}


// The reference's get_weather arguments: an object with a known city and, maybe, 1-7 days.
void expect_weather_arguments(const std::string& text) {
  const json args = json::parse(text, nullptr, false);
  ASSERT_TRUE(args.is_object()) << text;
  ASSERT_TRUE(args.contains("city")) << text;
  EXPECT_TRUE(args["city"] == "Lisbon" || args["city"] == "Porto" || args["city"] == "Faro") << text;
  for (const auto& [key, value] : args.items()) {
    EXPECT_TRUE(key == "city" || key == "days") << text;
    if (key == "days") {
      EXPECT_TRUE(value.is_number_integer() && value >= 1 && value <= 7) << text;
    }
  }
}

class CapiTools : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* path = std::getenv("SIBYL_TOOL_MODEL");
    model_ = sibyl_capi_test::load_model(path ? path : SIBYL_TOOL_MODEL_DEFAULT);
    ASSERT_NE(model_, nullptr) << "run through ctest: its tool_v3_model test writes the model first";
    session_ = sibyl_capi_test::new_session(model_);
    reference_ = json::parse(sibyl_test::read_file(sibyl_test::test_data_dir() / "tool-v3" / "render_reference.json"));
    tools_ = std::make_unique<ToolDefs>(reference_["tools"]);
    sibyl_chat_options_init(&options_);
    options_.tools = tools_->list.data();
    options_.n_tools = tools_->list.size();
    options_.max_new_tokens = 200;
  }
  void TearDown() override {
    sibyl_session_destroy(session_);
    sibyl_model_destroy(model_);
  }
  std::string render(const Conversation& c, const sibyl_chat_options& o) {
    const auto m = c.messages();
    const auto calls = c.calls();
    sibyl_chat_options with = o;
    with.tool_calls = calls.data();
    with.n_tool_calls = calls.size();
    size_t n = 0;
    EXPECT_EQ(sibyl_model_render_chat_ex(model_, m.data(), m.size(), &with, 1, nullptr, 0, &n), SIBYL_ERR_BUFFER_TOO_SMALL);
    std::string text(n, '\0');
    EXPECT_EQ(sibyl_model_render_chat_ex(model_, m.data(), m.size(), &with, 1, text.data(), n, &n), SIBYL_OK)
        << sibyl_last_error_message();
    return text;
  }
  sibyl_status chat(const Conversation& c, sibyl_chat_options o, Calls& out, sibyl_chat_result& r) {
    const auto m = c.messages();
    const auto calls = c.calls();
    o.tool_calls = calls.data();
    o.n_tool_calls = calls.size();
    o.on_tool_call = on_call;
    r.struct_size = sizeof r;
    return sibyl_session_chat(session_, m.data(), m.size(), &o, on_text, &out, &r);
  }
  // A chat that may make no call (SIBYL_TOOL_CHOICE_NONE); its result.
  sibyl_chat_result chat_without_calls(const Conversation& c, sibyl_chat_options o, uint32_t max_new_tokens) {
    o.tool_choice = SIBYL_TOOL_CHOICE_NONE;
    o.max_new_tokens = max_new_tokens;
    Calls calls;
    sibyl_chat_result r{};
    EXPECT_EQ(chat(c, o, calls, r), SIBYL_OK) << sibyl_last_error_message();
    EXPECT_TRUE(calls.made.empty());
    EXPECT_EQ(r.tool_calls, 0u);
    return r;
  }
  size_t count_tokens(const std::string& text) {
    size_t n = 0;
    sibyl_model_tokenize(model_, text.data(), text.size(), nullptr, 0, &n);
    return n;
  }

  sibyl_model* model_ = nullptr;
  sibyl_session* session_ = nullptr;
  json reference_;
  std::unique_ptr<ToolDefs> tools_;
  sibyl_chat_options options_{};
};

Conversation reference_conversation(const json& messages) {
  Conversation c;
  for (const json& m : messages) {
    c.add(m["role"], m["content"].is_null() ? "" : m["content"].get<std::string>());
    if (m.contains("tool_calls"))
      for (const json& call : m["tool_calls"]) c.call(call["function"]["name"], call["function"]["arguments"]);
  }
  return c;
}

TEST_F(CapiTools, ConversationWithToolsRendersAsTheTemplate) {
  EXPECT_EQ(render(reference_conversation(reference_["messages"]), options_), reference_["rendered"].get<std::string>());
}

TEST_F(CapiTools, ForcedCallParsesToTheToolAndValidArgumentsThenAToolResultContinues) {
  Conversation c;
  c.add("user", "Is it raining in Faro?");
  sibyl_chat_options o = options_;
  o.tool_choice = SIBYL_TOOL_CHOICE_REQUIRED;
  o.tool_name = "get_weather";
  Calls first;
  sibyl_chat_result r{};
  ASSERT_EQ(chat(c, o, first, r), SIBYL_OK) << sibyl_last_error_message();
  EXPECT_EQ(r.stop_reason, SIBYL_STOP_EOS);  // after the calls only the end can come
  ASSERT_EQ(first.made.size(), 1u);
  EXPECT_EQ(r.tool_calls, 1u);
  EXPECT_EQ(first.made[0].first, "get_weather");
  expect_weather_arguments(first.made[0].second);
  EXPECT_EQ(first.answer.find("tool"), std::string::npos) << "calls are never text: " << first.answer;
  const size_t first_prompt = count_tokens(render(c, o));

  // The call and its output continue the conversation on the cached prompt and call.
  c.add("assistant", "");
  c.call(first.made[0].first, first.made[0].second);
  c.add("tool", "{\"rain\": false}");
  r = chat_without_calls(c, options_, 6);
  EXPECT_GE(r.reused_tokens, first_prompt);
  EXPECT_EQ(r.reused_tokens + r.prompt_tokens, count_tokens(render(c, options_)));  // choices render alike
}

TEST_F(CapiTools, RequestsReportCallsAsEventsWithNameAndArguments) {
  Conversation c;
  c.add("user", "Weather?");
  sibyl_chat_options o = options_;
  o.tool_choice = SIBYL_TOOL_CHOICE_REQUIRED;  // any tool, one call or more
  o.max_new_tokens = 400;
  const auto m = c.messages();
  sibyl_request* request = nullptr;
  ASSERT_EQ(sibyl_session_submit_chat(session_, m.data(), m.size(), &o, nullptr, &request), SIBYL_OK)
      << sibyl_last_error_message();
  std::vector<std::pair<std::string, std::string>> calls;
  for (;;) {
    ASSERT_EQ(sibyl_request_wait(request, -1, nullptr), SIBYL_OK);
    sibyl_event e;
    e.struct_size = sizeof e;
    ASSERT_EQ(sibyl_request_poll(request, &e), SIBYL_OK);
    if (e.type == SIBYL_EVENT_TOOL_CALL) calls.emplace_back(std::string(e.name, e.name_len), std::string(e.text, e.text_len));
    if (e.type == SIBYL_EVENT_DONE) {
      EXPECT_EQ(e.status, SIBYL_OK) << e.text;
      break;
    }
  }
  sibyl_chat_result r;
  r.struct_size = sizeof r;
  ASSERT_EQ(sibyl_request_result(request, &r), SIBYL_OK);
  sibyl_request_destroy(request);
  ASSERT_FALSE(calls.empty());
  EXPECT_EQ(r.tool_calls, calls.size());
  for (const auto& [name, args] : calls) {
    if (name == "get_weather") {
      expect_weather_arguments(args);
    } else {
      ASSERT_EQ(name, "give_item");
      const json a = json::parse(args, nullptr, false);
      ASSERT_TRUE(a.is_object() && a.contains("item") && a["item"].is_string()) << args;
      EXPECT_LE(a["item"].get<std::string>().size(), 20u * 4);  // up to 20 characters
    }
  }
}

// Automatic choice: the model calls when it writes <｜tool▁calls▁begin｜> (pushed here by a
// logit bias on a random model); "none" bans it.
TEST_F(CapiTools, AutomaticCallsStartAtTheMarkerAndNoneBansThem) {
  int32_t begin = -1;
  size_t n = 0;
  const std::string marker = "<｜tool▁calls▁begin｜>";
  ASSERT_EQ(sibyl_model_tokenize(model_, marker.data(), marker.size(), &begin, 1, &n), SIBYL_OK);
  ASSERT_EQ(n, 1u);
  sibyl_logit_bias bias{begin, 50.0f};
  sibyl_sampler_options so;
  sibyl_sampler_options_init(&so);
  so.logit_bias = &bias;
  so.n_logit_bias = 1;
  Conversation c;
  c.add("user", "Hello");
  sibyl_chat_options o = options_;
  o.sampler = &so;
  o.max_new_tokens = 400;
  Calls calls;
  sibyl_chat_result r{};
  ASSERT_EQ(chat(c, o, calls, r), SIBYL_OK) << sibyl_last_error_message();
  ASSERT_GE(calls.made.size(), 1u);
  EXPECT_EQ(r.stop_reason, SIBYL_STOP_EOS);

  chat_without_calls(c, o, 12);

  // With a grammar, the answer is the grammar's or calls.
  sibyl_grammar* g = nullptr;
  ASSERT_EQ(sibyl_grammar_from_gbnf("root ::= \"yes\" | \"no\"", nullptr, &g), SIBYL_OK);
  o.tool_choice = SIBYL_TOOL_CHOICE_AUTO;
  o.grammar = g;
  o.max_new_tokens = 400;
  Calls either;
  ASSERT_EQ(chat(c, o, either, r), SIBYL_OK) << sibyl_last_error_message();
  EXPECT_GE(either.made.size(), 1u);  // the bias picks the calls
  bias.bias = -INFINITY;
  Calls text;
  ASSERT_EQ(chat(c, o, text, r), SIBYL_OK) << sibyl_last_error_message();
  EXPECT_TRUE(text.made.empty());
  EXPECT_TRUE(text.answer == "yes" || text.answer == "no") << text.answer;
  sibyl_grammar_destroy(g);
}

TEST_F(CapiTools, BadToolsAndChoicesAreInvalidArguments) {
  Conversation c;
  c.add("user", "Hi");
  const auto m = c.messages();
  auto expect_invalid = [&](sibyl_chat_options o, const char* needle) {
    sibyl_request* request = nullptr;
    EXPECT_EQ(sibyl_session_submit_chat(session_, m.data(), m.size(), &o, nullptr, &request),
              SIBYL_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(sibyl_last_error_message()).find(needle), std::string::npos) << sibyl_last_error_message();
    EXPECT_EQ(request, nullptr);
  };
  sibyl_tool bad[2] = {{"get weather", nullptr, nullptr}, {"x", nullptr, nullptr}};
  sibyl_chat_options o = options_;
  o.tools = bad;
  o.n_tools = 1;
  expect_invalid(o, "tool 0 (\"get weather\")");
  sibyl_tool twice[2] = {{"x", nullptr, nullptr}, {"x", nullptr, nullptr}};
  o.tools = twice;
  o.n_tools = 2;
  expect_invalid(o, "used by an earlier tool");
  sibyl_tool schema[1] = {{"x", nullptr, "{\"type\": \"object\", \"patternProperties\": {}}"}};
  o.tools = schema;
  o.n_tools = 1;
  expect_invalid(o, "tool 0 (\"x\"): parameters");
  o = options_;
  o.tool_choice = SIBYL_TOOL_CHOICE_REQUIRED;
  o.tool_name = "cast_spell";
  expect_invalid(o, "\"cast_spell\" is not among the tools");
  o.tool_choice = static_cast<sibyl_tool_choice>(7);
  expect_invalid(o, "tool_choice 7");
  o = options_;
  o.n_tools = 0;
  o.tool_choice = SIBYL_TOOL_CHOICE_REQUIRED;
  expect_invalid(o, "need tools");
  o = options_;
  sibyl_tool_call call{0, "get_weather", "{}"};  // message 0 is the user's
  o.tool_calls = &call;
  o.n_tool_calls = 1;
  expect_invalid(o, "not an assistant message");
  sibyl_grammar* g = nullptr;
  ASSERT_EQ(sibyl_grammar_from_gbnf("root ::= \"a\"", nullptr, &g), SIBYL_OK);
  o = options_;
  o.grammar = g;
  o.tool_choice = SIBYL_TOOL_CHOICE_REQUIRED;
  expect_invalid(o, "leave the grammar out");
  sibyl_grammar_destroy(g);
}

// V3's template drops the calls of an assistant message with content: its replies call before
// any answer text or not at all, and such a history is refused; R1 keeps text before calls.
TEST_F(CapiTools, OnV3CallsComeBeforeAnyAnswerText) {
  int32_t marker = -1;
  size_t n = 0;
  const std::string text = "<｜tool▁calls▁begin｜>";
  ASSERT_EQ(sibyl_model_tokenize(model_, text.data(), text.size(), &marker, 1, &n), SIBYL_OK);
  EXPECT_EQ(calls_after_text(session_, tools_->list[0], marker, -1), 0);

  sibyl_model* r1 = sibyl_capi_test::load_model(SIBYL_TOOL_R1_MODEL_DEFAULT);
  ASSERT_NE(r1, nullptr);
  sibyl_session* s = sibyl_capi_test::new_session(r1);
  EXPECT_GT(calls_after_text(s, tools_->list[0], marker, 3), 0);
  sibyl_session_destroy(s);
  sibyl_model_destroy(r1);

  Conversation c;
  c.add("user", "Hi");
  c.add("assistant", "Let me check.");
  c.call("get_weather", "{\"city\": \"Faro\"}");
  c.add("tool", "{}");
  const auto m = c.messages();
  const auto calls = c.calls();
  sibyl_chat_options o = options_;
  o.tool_calls = calls.data();
  o.n_tool_calls = calls.size();
  EXPECT_EQ(sibyl_model_render_chat_ex(model_, m.data(), m.size(), &o, 1, nullptr, 0, &n), SIBYL_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(sibyl_last_error_message()).find("drops such calls"), std::string::npos)
      << sibyl_last_error_message();
}

TEST_F(CapiTools, ABlockingChatWithToolsNeedsOnToolCall) {
  const sibyl_chat_message msg{"user", "Hi", 2};
  EXPECT_EQ(sibyl_session_chat(session_, &msg, 1, &options_, nullptr, nullptr, nullptr), SIBYL_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(sibyl_last_error_message()).find("on_tool_call"), std::string::npos);
  sibyl_chat_options o = options_;
  o.tool_choice = SIBYL_TOOL_CHOICE_NONE;
  o.max_new_tokens = 2;
  EXPECT_EQ(sibyl_session_chat(session_, &msg, 1, &o, nullptr, nullptr, nullptr), SIBYL_OK) << sibyl_last_error_message();
}

// Callers built against 0.6 (chat options without tools) and 0.3 (events without `name`).
TEST_F(CapiTools, OlderOptionAndEventStructsAreRead) {
  Conversation c;
  c.add("user", "Hello");
  const auto m = c.messages();
  sibyl_chat_options o;
  sibyl_chat_options_init(&o);
  o.struct_size = offsetof(sibyl_chat_options, tools);
  o.max_new_tokens = 3;
  sibyl_request* request = nullptr;
  ASSERT_EQ(sibyl_session_submit_chat(session_, m.data(), m.size(), &o, nullptr, &request), SIBYL_OK)
      << sibyl_last_error_message();
  constexpr size_t kV03 = offsetof(sibyl_event, name);
  alignas(sibyl_event) unsigned char buf[sizeof(sibyl_event) + 16];
  auto* e = reinterpret_cast<sibyl_event*>(buf);
  for (bool done = false; !done;) {
    ASSERT_EQ(sibyl_request_wait(request, -1, nullptr), SIBYL_OK);
    std::memset(buf, 0xAB, sizeof buf);
    e->struct_size = static_cast<uint32_t>(kV03);
    ASSERT_EQ(sibyl_request_poll(request, e), SIBYL_OK) << sibyl_last_error_message();
    done = e->type == SIBYL_EVENT_DONE;
    for (size_t i = kV03; i < sizeof buf; ++i) ASSERT_EQ(buf[i], 0xAB) << "poll wrote byte " << i;
  }
  e->struct_size = static_cast<uint32_t>(kV03 - 4);
  EXPECT_EQ(sibyl_request_poll(request, e), SIBYL_ERR_STRUCT_SIZE);
  sibyl_request_destroy(request);
}

TEST(CapiToolsTemplate, ATemplateWithoutToolCallsRefusesTools) {
  sibyl_model* model = sibyl_capi_test::load_model(sibyl_test::reasoner_dir());
  ASSERT_NE(model, nullptr);
  sibyl_session* session = sibyl_capi_test::new_session(model);
  const sibyl_chat_message msg{"user", "Hi", 2};
  sibyl_tool tool{"wave", "Wave at the player.", nullptr};
  sibyl_chat_options o;
  sibyl_chat_options_init(&o);
  o.tools = &tool;
  o.n_tools = 1;
  EXPECT_EQ(sibyl_session_chat(session, &msg, 1, &o, nullptr, nullptr, nullptr), SIBYL_ERR_UNSUPPORTED);
  EXPECT_NE(std::string(sibyl_last_error_message()).find("has no tool calls"), std::string::npos)
      << sibyl_last_error_message();
  size_t n = 0;
  EXPECT_EQ(sibyl_model_render_chat_ex(model, &msg, 1, &o, 1, nullptr, 0, &n), SIBYL_ERR_UNSUPPORTED);
  sibyl_session_destroy(session);
  sibyl_model_destroy(model);
}

// R1's format (the V3 vocabulary with R1's <think> tokens and template): the reasoning comes
// first and cannot call — even pushed toward the call marker — then the answer calls.
TEST(CapiToolsR1, TheReasoningCannotCallTheAnswerDoes) {
  sibyl_model* model = sibyl_capi_test::load_model(SIBYL_TOOL_R1_MODEL_DEFAULT);
  ASSERT_NE(model, nullptr) << "run through ctest: its tool_r1_model test writes the model first";
  sibyl_session* session = sibyl_capi_test::new_session(model);
  int32_t begin = -1;
  size_t n = 0;
  const std::string marker = "<｜tool▁calls▁begin｜>";
  ASSERT_EQ(sibyl_model_tokenize(model, marker.data(), marker.size(), &begin, 1, &n), SIBYL_OK);
  sibyl_logit_bias bias{begin, 50.0f};
  sibyl_sampler_options so;
  sibyl_sampler_options_init(&so);
  so.logit_bias = &bias;
  so.n_logit_bias = 1;
  sibyl_tool tool{"give_item", "Give an item.",
                  R"({"type":"object","properties":{"item":{"enum":["sword","bread"]}},"required":["item"]})"};
  for (sibyl_tool_choice choice : {SIBYL_TOOL_CHOICE_AUTO, SIBYL_TOOL_CHOICE_REQUIRED}) {
    sibyl_chat_options o;
    sibyl_chat_options_init(&o);
    o.tools = &tool;
    o.n_tools = 1;
    o.tool_choice = choice;
    o.think_budget = 5;  // a random model would think forever
    o.max_new_tokens = 300;
    o.sampler = &so;
    o.on_tool_call = on_call;
    const sibyl_chat_message msg{"user", "The sword, please.", 18};
    struct Out : Calls {
      std::string reasoning;
    } out;
    auto text = [](sibyl_channel c, const char* piece, size_t len, void* ud) {
      auto* o = static_cast<Out*>(ud);
      (c == SIBYL_CHANNEL_REASONING ? o->reasoning : o->answer).append(piece, len);
      return 0;
    };
    sibyl_chat_result r;
    r.struct_size = sizeof r;
    ASSERT_EQ(sibyl_session_chat(session, &msg, 1, &o, text, &out, &r), SIBYL_OK) << sibyl_last_error_message();
    EXPECT_EQ(r.reasoning_tokens, 5u);  // the bias never made the reasoning call
    EXPECT_EQ(out.reasoning.find("tool"), std::string::npos) << out.reasoning;
    ASSERT_GE(out.made.size(), 1u);
    EXPECT_EQ(r.tool_calls, out.made.size());
    EXPECT_EQ(r.stop_reason, SIBYL_STOP_EOS);
    for (const auto& [name, args] : out.made) {
      EXPECT_EQ(name, "give_item");
      const json a = json::parse(args, nullptr, false);
      EXPECT_TRUE(a.is_object() && (a["item"] == "sword" || a["item"] == "bread")) << args;
    }
  }
  sibyl_session_destroy(session);
  sibyl_model_destroy(model);
}

// The SDK: tools in ChatOptions, calls in ChatReply and in history messages, ToolCall events.
TEST(SdkTools, CallsRoundTripThroughTheSdk) {
  const char* path = std::getenv("SIBYL_TOOL_MODEL");
  sibyl::ModelOptions mo;
  mo.backend = sibyl::Backend::Cpu;
  auto model = sibyl::Model::load(path ? path : SIBYL_TOOL_MODEL_DEFAULT, mo);
  ASSERT_TRUE(model) << model.error().message;
  auto session = model->create_session();
  ASSERT_TRUE(session);
  sibyl::ChatOptions o;
  o.max_new_tokens = 200;
  o.tools = {{"get_weather", "Current weather in a city.",
              R"({"type": "object", "properties": {"city": {"type": "string", "enum": ["Lisbon", "Porto"]}},
                  "required": ["city"], "additionalProperties": false})"}};
  o.tool_choice = sibyl::ToolChoice::Required;
  o.tool_name = "get_weather";
  std::vector<sibyl::ChatMessage> messages = {{"user", "Rain in Porto?"}};
  auto reply = session->chat(messages, o);
  ASSERT_TRUE(reply) << reply.error().message;
  ASSERT_EQ(reply->tool_calls.size(), 1u);
  EXPECT_EQ(reply->tool_calls[0].name, "get_weather");
  const json args = json::parse(reply->tool_calls[0].arguments, nullptr, false);
  ASSERT_TRUE(args.is_object() && args.contains("city")) << reply->tool_calls[0].arguments;
  EXPECT_TRUE(args["city"] == "Lisbon" || args["city"] == "Porto");

  // The history call renders as the C ABI renders it, and the non-blocking request reports
  // the same call as an event (greedy: the same reply on a fresh session).
  sibyl::ChatMessage answered{"assistant", ""};
  answered.tool_calls = reply->tool_calls;
  std::vector<sibyl::ChatMessage> next = messages;
  next.push_back(answered);
  next.push_back({"tool", R"({"rain": true})"});
  auto text = model->render_chat(next, true, o);
  ASSERT_TRUE(text) << text.error().message;
  EXPECT_NE(text->find("<｜tool▁sep｜>get_weather\n```json\n" + reply->tool_calls[0].arguments + "\n```"),
            std::string::npos);
  EXPECT_NE(text->find("### get_weather"), std::string::npos);

  auto fresh = model->create_session();
  ASSERT_TRUE(fresh);
  auto request = fresh->submit_chat(messages, o);
  ASSERT_TRUE(request) << request.error().message;
  std::vector<sibyl::Event> calls;
  for (;;) {
    ASSERT_TRUE(request->wait());
    auto e = request->poll();
    ASSERT_TRUE(e);
    if (e->type == sibyl::EventType::ToolCall) calls.push_back(*e);
    if (e->is_done()) break;
  }
  ASSERT_EQ(calls.size(), 1u);
  EXPECT_EQ(calls[0].name, reply->tool_calls[0].name);
  EXPECT_EQ(calls[0].text, reply->tool_calls[0].arguments);
  auto result = request->result();
  ASSERT_TRUE(result);
  EXPECT_EQ(result->tool_calls, 1u);
}

}  // namespace
