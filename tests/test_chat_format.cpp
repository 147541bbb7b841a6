// Chat formats: the reference chats rendered exactly, tool calls and outputs as the DeepSeek
// templates write them, and strict recognition (unknown templates are refused, not guessed).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "engine/chat/chat_format.h"
#include "engine/core/failure.h"
#include "engine/formats/file_util.h"
#include "fixture_util.h"

namespace sibyl::engine::test {
namespace {

using nlohmann::json;

std::string v3_config_path() { return data_dir() + "/tokenizers/deepseek-v3/tokenizer_config.json"; }
std::string tiny_config_path() { return data_dir() + "/../../models/tiny-reasoner/tokenizer_config.json"; }

json read_json(const std::string& path) { return json::parse(read_text_file(path)); }

// A tokenizer_config.json with DeepSeek's special tokens and the given template.
std::string config_with(const json& chat_template) {
  json c = {{"bos_token", "<｜begin▁of▁sentence｜>"}, {"eos_token", "<｜end▁of▁sentence｜>"}};
  c["chat_template"] = chat_template;
  return c.dump();
}

ChatFormat format_with(const json& chat_template) {
  return ChatFormat::from_tokenizer_config(config_with(chat_template), "test config");
}

std::string v3_template() { return read_json(v3_config_path())["chat_template"].get<std::string>(); }


std::vector<ChatMessage> messages_of(const json& list) {
  std::vector<ChatMessage> out;
  for (const json& m : list) out.push_back({m.at("role"), m.at("content"), {}});
  return out;
}

ChatToolCall weather_call(const std::string& city) {
  return {"function", "get_weather", "{\"city\": \"" + city + "\"}"};
}

void expect_reference_chats(const ChatFormat& format, const std::string& chat_json) {
  json chats = read_json(chat_json)["chats"];
  ASSERT_FALSE(chats.empty());
  for (const json& chat : chats)
    EXPECT_EQ(format.render(messages_of(chat["messages"]), chat["add_generation_prompt"]),
              chat["text"].get<std::string>())
        << chat["messages"].dump();
}

TEST(ChatFormat, DeepseekV3ReferenceChats) {
  ChatFormat f = ChatFormat::load(v3_config_path());
  EXPECT_EQ(f.name(), "deepseek-v3");
  EXPECT_EQ(f.kind(), ChatFormat::Kind::deepseek_v3);
  EXPECT_FALSE(f.prompt_opens_thinking());
  EXPECT_EQ(f.bos_token(), "<｜begin▁of▁sentence｜>");  // read from the {"content": ...} form
  EXPECT_EQ(f.eos_token(), "<｜end▁of▁sentence｜>");
  expect_reference_chats(f, data_dir() + "/tokenizers/deepseek-v3/chat.json");
}

TEST(ChatFormat, TinyReasonerReferenceChats) {
  ChatFormat f = ChatFormat::load(tiny_config_path());
  EXPECT_EQ(f.name(), "tiny-reasoner");
  EXPECT_TRUE(f.prompt_opens_thinking());
  EXPECT_EQ(f.think_open(), "<think>");
  EXPECT_EQ(f.think_close(), "</think>");
  EXPECT_EQ(f.eos_token(), "<｜end▁of▁sentence｜>");
  expect_reference_chats(f, data_dir() + "/tokenizers/tiny-reasoner/chat.json");
}

TEST(ChatFormat, ReasonerDropsReasoningOfPreviousTurns) {
  std::vector<ChatMessage> chat = {{"user", "What is 3 + 4?", {}},
                                   {"assistant", "<think>\nfirst</think>second</think>\n\n7", {}},
                                   {"user", "And 5 + 6?", {}}};
  std::string text = ChatFormat::load(tiny_config_path()).render(chat, true);
  EXPECT_EQ(text,
            "<｜begin▁of▁sentence｜><｜User｜>What is 3 + 4?<｜Assistant｜>\n\n7<｜end▁of▁sentence｜>"
            "<｜User｜>And 5 + 6?<｜Assistant｜><think>\n");  // after the last </think>, as split()[-1]
  // V3 has no reasoning and keeps the turn as written.
  EXPECT_NE(ChatFormat::load(v3_config_path()).render(chat, true).find("first</think>second"), std::string::npos);
}

// Expected texts below come from the published templates run by jinja2 3.1.6 configured as
// transformers does (trim_blocks, lstrip_blocks), with `content: null` for call-only messages.
// They keep the templates' quirks: the is_first / is_output_first flags are never reset.
std::vector<ChatMessage> weather_chat() {
  return {{"system", "You are a weather bot.", {}},
          {"user", "Weather in Lisbon and Porto?", {}},
          {"assistant", "", {weather_call("Lisbon"), weather_call("Porto")}},
          {"tool", "{\"temp\": 21}", {}},
          {"tool", "{\"temp\": 18}", {}},
          {"assistant", "Lisbon 21, Porto 18.", {}},
          {"user", "And Faro?", {}},
          {"assistant", "", {weather_call("Faro")}},
          {"tool", "{\"temp\": 25}", {}}};
}

TEST(ChatFormat, DeepseekV3ToolCallsAndOutputs) {
  ChatFormat f = ChatFormat::load(v3_config_path());
  EXPECT_EQ(f.render(weather_chat(), true),
            "<｜begin▁of▁sentence｜>You are a weather bot.<｜User｜>"
            "Weather in Lisbon and Porto?<｜Assistant｜><｜tool▁calls▁begin｜><｜tool▁call▁begin｜>"
            "function<｜tool▁sep｜>get_weather\n```json\n{\"city\": \"Lisbon\"}\n```<｜tool▁call▁end｜>"
            "\n<｜tool▁call▁begin｜>function<｜tool▁sep｜>"
            "get_weather\n```json\n{\"city\": \"Porto\"}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>"
            "<｜end▁of▁sentence｜><｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>"
            "{\"temp\": 21}<｜tool▁output▁end｜>\n<｜tool▁output▁begin｜>{\"temp\": 18}<｜tool▁output▁end｜>"
            "<｜tool▁outputs▁end｜>Lisbon 21, Porto 18.<｜end▁of▁sentence｜><｜User｜>"
            "And Faro?\n<｜tool▁call▁begin｜>function<｜tool▁sep｜>"
            "get_weather\n```json\n{\"city\": \"Faro\"}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>"
            "<｜end▁of▁sentence｜>\n<｜tool▁output▁begin｜>{\"temp\": 25}<｜tool▁output▁end｜>"
            "<｜tool▁outputs▁end｜>");  // ends in tool outputs: no generation prompt
  std::vector<ChatMessage> single = {{"user", "Weather in Faro?", {}},
                                     {"assistant", "", {weather_call("Faro")}},
                                     {"tool", "{\"temp\": 25}", {}},
                                     {"assistant", "25 degrees.", {}}};
  EXPECT_EQ(f.render(single, true),  // a single call is never closed by V3's template
            "<｜begin▁of▁sentence｜><｜User｜>Weather in Faro?<｜Assistant｜><｜tool▁calls▁begin｜>"
            "<｜tool▁call▁begin｜>function<｜tool▁sep｜>"
            "get_weather\n```json\n{\"city\": \"Faro\"}\n```<｜tool▁call▁end｜><｜tool▁outputs▁begin｜>"
            "<｜tool▁output▁begin｜>{\"temp\": 25}<｜tool▁output▁end｜><｜tool▁outputs▁end｜>"
            "25 degrees.<｜end▁of▁sentence｜><｜Assistant｜>");
}

TEST(ChatFormat, DeepseekR1OfficialTemplate) {
  std::string_view r1 = ChatFormat::known_template("deepseek-r1");
  ASSERT_FALSE(r1.empty());
  ChatFormat f = format_with(std::string(r1));
  EXPECT_EQ(f.name(), "deepseek-r1");
  EXPECT_TRUE(f.prompt_opens_thinking());
  EXPECT_EQ(f.render(weather_chat(), true),
            "<｜begin▁of▁sentence｜>You are a weather bot.<｜User｜>"
            "Weather in Lisbon and Porto?<｜Assistant｜><｜tool▁calls▁begin｜><｜tool▁call▁begin｜>"
            "function<｜tool▁sep｜>get_weather\n```json\n{\"city\": \"Lisbon\"}\n```<｜tool▁call▁end｜>"
            "\n<｜tool▁call▁begin｜>function<｜tool▁sep｜>"
            "get_weather\n```json\n{\"city\": \"Porto\"}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>"
            "<｜end▁of▁sentence｜><｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>"
            "{\"temp\": 21}<｜tool▁output▁end｜><｜tool▁output▁begin｜>{\"temp\": 18}<｜tool▁output▁end｜>"
            "<｜tool▁outputs▁end｜>Lisbon 21, Porto 18.<｜end▁of▁sentence｜><｜User｜>"
            "And Faro?\n<｜tool▁call▁begin｜>function<｜tool▁sep｜>"
            "get_weather\n```json\n{\"city\": \"Faro\"}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>"
            "<｜end▁of▁sentence｜><｜tool▁output▁begin｜>{\"temp\": 25}<｜tool▁output▁end｜>"
            "<｜tool▁outputs▁end｜>");
  std::vector<ChatMessage> chat = {
      {"user", "What is 3 + 4?", {}},
      {"assistant", "<think>\n3+4=7\n</think>\n\n7", {}},
      {"user", "Weather in Faro?", {}},
      {"assistant", "<think>\nask the tool\n</think>\n\nChecking.", {weather_call("Faro")}},
      {"tool", "{\"temp\": 25}", {}},
      {"assistant", "<think>\nwarm\n</think>\n\n25 degrees.", {}},
      {"user", "Thanks!", {}}};
  EXPECT_EQ(f.render(chat, true),  // reasoning dropped only from plain assistant turns
            "<｜begin▁of▁sentence｜><｜User｜>What is 3 + 4?<｜Assistant｜>\n\n7<｜end▁of▁sentence｜><｜User｜>"
            "Weather in Faro?<｜Assistant｜>"
            "<think>\nask the tool\n</think>\n\nChecking.<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>"
            "function<｜tool▁sep｜>get_weather\n```json\n{\"city\": \"Faro\"}\n```<｜tool▁call▁end｜>"
            "<｜tool▁calls▁end｜><｜end▁of▁sentence｜><｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>"
            "{\"temp\": 25}<｜tool▁output▁end｜><｜tool▁outputs▁end｜>"
            "<think>\nwarm\n</think>\n\n25 degrees.<｜end▁of▁sentence｜><｜User｜>Thanks!<｜Assistant｜>"
            "<think>\n");
}

TEST(ChatFormat, KnownTemplatesRecogniseThemselves) {
  for (const char* name : {"deepseek-v3", "deepseek-r1", "tiny-reasoner"})
    EXPECT_EQ(format_with(std::string(ChatFormat::known_template(name))).name(), name);
  EXPECT_TRUE(ChatFormat::known_template("llama-3").empty());
}

// Formatting Jinja ignores: whitespace inside tags, newlines written as escapes or raw inside
// literals, the quote style, statements on indented lines (trim_blocks + lstrip_blocks), comments.
TEST(ChatFormat, RecognitionIgnoresInsignificantFormatting) {
  std::string v3 = v3_template();
  auto replaced = [](std::string s, const std::string& from, const std::string& to) {
    for (size_t at = s.find(from); at != std::string::npos; at = s.find(from, at + to.size())) s.replace(at, from.size(), to);
    return s;
  };
  for (const std::string& variant :
       {replaced(v3, "\n", "\\n"), replaced(v3, "{{bos_token}}", "{{ bos_token }}"),
        replaced(v3, "'<｜User｜>'", "\"<｜User｜>\""), replaced(v3, "%}{%", "%}\n    {%"),
        "{# DeepSeek-V3 #}\n" + v3, v3 + "\n"})
    EXPECT_EQ(format_with(variant).name(), "deepseek-v3") << variant;
}

TEST(ChatFormat, UnknownTemplatesAreUnsupported) {
  std::string v3 = v3_template();
  auto changed = [&](const std::string& from, const std::string& to) {
    std::string s = v3;
    size_t at = s.find(from);
    EXPECT_NE(at, std::string::npos) << from;
    return s.replace(at, from.size(), to);
  };
  const std::string llama =
      "{{ bos_token }}{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + "
      "'<|end_header_id|>\\n\\n' + message['content'] + '<|eot_id|>' }}{% endfor %}"
      "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}";
  for (const std::string& t : {llama,
                               changed("'<｜User｜>'", "'<｜Usr｜>'"),       // one literal character
                               changed("'```json'", "'```jsonl'"),          // deep inside the tool branch
                               changed("'\n\n' + message", "'\n' + message"),  // system prompt separator
                               changed("{{'<｜Assistant｜>'}}", "{{'<｜Assistant｜>\n'}}"),
                               changed("}}{{ns.system_prompt}}", "}}\n{{ns.system_prompt}}"),  // output text
                               changed("ns.is_first = true", "ns.is_first = false"),
                               v3.substr(0, v3.size() - 20), std::string("{{ 'unterminated }}"), std::string()}) {
    std::string message;
    EXPECT_EQ(error_of([&] { format_with(t); }, &message), Errc::unsupported) << t;
    EXPECT_NE(message.find("test config"), std::string::npos) << message;
    EXPECT_NE(message.find("not one Sibyl knows"), std::string::npos) << message;
  }
  std::string message;
  error_of([&] { format_with(changed("'<｜User｜>'", "'<｜Usr｜>'")); }, &message);
  EXPECT_NE(message.find("nearest, deepseek-v3, differs at \"'<｜Usr｜>'"), std::string::npos) << message;

  std::string tiny = read_json(tiny_config_path())["chat_template"];
  EXPECT_EQ(error_of([&] { format_with(tiny.replace(tiny.find("<think>\\n"), 9, "<think>")); }), Errc::unsupported);
}

TEST(ChatFormat, MissingTemplateIsUnsupported) {
  std::string message;
  json c = {{"bos_token", "<s>"}, {"eos_token", "</s>"}};
  EXPECT_EQ(error_of([&] { ChatFormat::from_tokenizer_config(c.dump(), "cfg.json"); }, &message), Errc::unsupported);
  EXPECT_NE(message.find("cfg.json"), std::string::npos) << message;
  EXPECT_NE(message.find("chat_template"), std::string::npos) << message;
  c["chat_template"] = nullptr;
  EXPECT_EQ(error_of([&] { ChatFormat::from_tokenizer_config(c.dump(), "cfg.json"); }), Errc::unsupported);
}

TEST(ChatFormat, TemplateListUsesDefault) {
  json list = json::array({{{"name", "tool_use"}, {"template", "{{ x }}"}}, {{"name", "default"}, {"template", v3_template()}}});
  EXPECT_EQ(format_with(list).name(), "deepseek-v3");
  list.erase(1);
  EXPECT_EQ(error_of([&] { format_with(list); }), Errc::unsupported);
  EXPECT_EQ(error_of([&] { format_with(json::array({"not an entry"})); }), Errc::format);
}

TEST(ChatFormat, MalformedConfigIsFormat) {
  EXPECT_EQ(error_of([] { ChatFormat::from_tokenizer_config("{\"chat_template\": ", "cfg"); }), Errc::format);
  EXPECT_EQ(error_of([] { ChatFormat::from_tokenizer_config("[1, 2]", "cfg"); }), Errc::format);
  EXPECT_EQ(error_of([] { format_with(42); }), Errc::format);
  json c = json::parse(config_with(v3_template()));
  c["bos_token"] = 7;
  EXPECT_EQ(error_of([&] { ChatFormat::from_tokenizer_config(c.dump(), "cfg"); }), Errc::format);
  c.erase("bos_token");
  EXPECT_EQ(error_of([&] { ChatFormat::from_tokenizer_config(c.dump(), "cfg"); }), Errc::format);
  EXPECT_EQ(error_of([] { ChatFormat::load(data_dir() + "/no/such/tokenizer_config.json"); }), Errc::io);
}

TEST(ChatFormat, UnknownRoleIsInvalidArgument) {
  for (const std::string& path : {v3_config_path(), tiny_config_path()}) {
    ChatFormat f = ChatFormat::load(path);
    std::string message;
    EXPECT_EQ(error_of([&] { f.render({{"user", "hi", {}}, {"narrator", "x", {}}}, true); }, &message),
              Errc::invalid_argument);
    EXPECT_NE(message.find("narrator"), std::string::npos) << message;
  }
}

TEST(ChatFormat, TinyReasonerRefusesToolMessages) {
  // Its template has no tool branch and would drop them silently.
  ChatFormat f = ChatFormat::load(tiny_config_path());
  EXPECT_EQ(error_of([&] { f.render({{"user", "hi", {}}, {"tool", "42", {}}}, true); }), Errc::unsupported);
  EXPECT_EQ(error_of([&] { f.render({{"user", "hi", {}}, {"assistant", "", {weather_call("Faro")}}}, true); }),
            Errc::unsupported);
}

TEST(ChatFormat, EmptyConversation) {
  EXPECT_EQ(ChatFormat::load(v3_config_path()).render({}, true), "<｜begin▁of▁sentence｜><｜Assistant｜>");
  EXPECT_EQ(ChatFormat::load(tiny_config_path()).render({}, false), "<｜begin▁of▁sentence｜>");
}

}  // namespace
}  // namespace sibyl::engine::test
