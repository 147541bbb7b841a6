// The tokenizer against Hugging Face `tokenizers`: every public reference case of both
// tokenizers, the chat renderings, streaming decode, invalid input and corrupt files.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <thread>

#include "engine/text/byte_level.h"
#include "engine/core/failure.h"
#include "engine/formats/file_util.h"
#include "fixture_util.h"
#include "engine/text/tokenizer.h"

namespace sibyl::engine::test {
namespace {

using nlohmann::json;

std::string deepseek_path() { return data_dir() + "/tokenizers/deepseek-v3/tokenizer.json"; }
std::string tiny_path() { return data_dir() + "/../../models/tiny-reasoner/tokenizer.json"; }

// Loaded once: the V3 file is 7.8 MB.
const Tokenizer& deepseek() {
  static const std::unique_ptr<Tokenizer> t = Tokenizer::load(deepseek_path());
  return *t;
}
const Tokenizer& tiny() {
  static const std::unique_ptr<Tokenizer> t = Tokenizer::load(tiny_path());
  return *t;
}


std::vector<int32_t> ids_of(const json& j) { return j.get<std::vector<int32_t>>(); }

void check_public_cases(const Tokenizer& tok, const std::string& name) {
  json j = json::parse(read_text_file(data_dir() + "/tokenizers/" + name + "/tokenize.public.json"));
  ASSERT_FALSE(j.value("add_special_tokens", true));
  const json& cases = j["cases"];
  ASSERT_GT(cases.size(), 100u);
  size_t wrong_ids = 0, wrong_text = 0;
  for (size_t i = 0; i < cases.size(); ++i) {
    const std::string text = cases[i]["text"];
    const std::vector<int32_t> want = ids_of(cases[i]["ids"]);
    std::vector<int32_t> got = tok.encode(text);
    if (got != want && ++wrong_ids <= 5)
      ADD_FAILURE() << name << " case " << i << " encodes differently: " << json(text);
    if (tok.decode(want) != cases[i]["decoded"] && ++wrong_text <= 5)
      ADD_FAILURE() << name << " case " << i << " decodes differently: " << json(text);
  }
  EXPECT_EQ(wrong_ids, 0u) << "of " << cases.size();
  EXPECT_EQ(wrong_text, 0u) << "of " << cases.size();
}

void check_chats(const Tokenizer& tok, const std::string& name) {
  json j = json::parse(read_text_file(data_dir() + "/tokenizers/" + name + "/chat.json"));
  ASSERT_FALSE(j["chats"].empty());
  for (const json& chat : j["chats"]) {
    const std::string text = chat["text"];
    EXPECT_EQ(tok.encode(text), ids_of(chat["ids"])) << json(text);
    EXPECT_EQ(tok.decode(ids_of(chat["ids"])), text);
  }
}

TEST(Tokenizer, DeepSeekV3PublicCases) { check_public_cases(deepseek(), "deepseek-v3"); }
TEST(Tokenizer, TinyReasonerPublicCases) { check_public_cases(tiny(), "tiny-reasoner"); }
TEST(Tokenizer, DeepSeekV3ChatRenderings) { check_chats(deepseek(), "deepseek-v3"); }
TEST(Tokenizer, TinyReasonerChatRenderings) { check_chats(tiny(), "tiny-reasoner"); }

TEST(Tokenizer, TokenLookup) {
  EXPECT_EQ(tiny().token_id("<think>"), 1282);
  EXPECT_EQ(tiny().token_id("</think>"), 1283);
  EXPECT_FALSE(tiny().is_special(1282));  // an added token, but not special in this file
  EXPECT_TRUE(tiny().is_special(0));
  EXPECT_EQ(tiny().vocab_size(), 1284);
  EXPECT_EQ(tiny().encode("<think>"), std::vector<int32_t>{1282});
  EXPECT_EQ(deepseek().token_id("<｜end▁of▁sentence｜>"), 1);
  EXPECT_TRUE(deepseek().is_special(1));
  EXPECT_EQ(deepseek().vocab_size(), 128815);
  EXPECT_EQ(deepseek().token_id("Ġthe"), deepseek().encode(" the").at(0));
  EXPECT_EQ(deepseek().token_id("no such token"), std::nullopt);
  EXPECT_EQ(deepseek().token_bytes(*deepseek().token_id("Ġthe")), " the");
  EXPECT_EQ(deepseek().token_bytes(1), "<｜end▁of▁sentence｜>");
  EXPECT_TRUE(deepseek().encode("").empty());
}

TEST(Tokenizer, StreamDecoderNeverSplitsACharacter) {
  const std::string text = "Olá 🦙🦙! 日本語のテキスト, 한국어 👩‍👩‍👧 ∑ x² ok";
  for (const Tokenizer* tok : {&tiny(), &deepseek()}) {
    std::vector<int32_t> ids = tok->encode(text);
    bool some_token_is_partial = false;
    StreamDecoder stream(*tok);
    std::string joined;
    for (int32_t id : ids) {
      if (utf8_first_invalid(tok->token_bytes(id)) != std::string::npos) some_token_is_partial = true;
      std::string piece = stream.push(id);
      EXPECT_EQ(utf8_first_invalid(piece), std::string::npos) << "partial UTF-8 from push(" << id << ")";
      joined += piece;
    }
    joined += stream.finish();
    EXPECT_EQ(joined, tok->decode(ids));
    EXPECT_EQ(joined, text);
    if (tok == &tiny()) {
      EXPECT_TRUE(some_token_is_partial) << "the test text should split characters";
    }
  }
}

TEST(Tokenizer, StreamDecoderByteByByte) {
  const Tokenizer& tok = tiny();
  auto byte_token = [&](uint8_t b) { return *tok.token_id(byte_level_char(b)); };
  const std::string llama = "🦙";  // F0 9F A6 99
  StreamDecoder stream(tok);
  std::vector<int32_t> ids;
  for (size_t i = 0; i < llama.size(); ++i) {
    ids.push_back(byte_token(static_cast<uint8_t>(llama[i])));
    EXPECT_EQ(stream.push(ids.back()), i + 1 < llama.size() ? "" : llama);
  }
  EXPECT_EQ(stream.finish(), "");

  // An unfinished character at the end becomes one U+FFFD, as in decode().
  ids = {byte_token('a'), byte_token(0xF0), byte_token(0x9F)};
  std::string out = stream.push(ids[0]);
  out += stream.push(ids[1]);
  out += stream.push(ids[2]);
  EXPECT_EQ(out, "a");
  out += stream.finish();
  EXPECT_EQ(out, "a\xEF\xBF\xBD");
  EXPECT_EQ(out, tok.decode(ids));

  // A byte that can never start a character is replaced at once.
  ids = {byte_token(0x80), byte_token('b')};
  EXPECT_EQ(stream.push(ids[0]), "\xEF\xBF\xBD");
  EXPECT_EQ(stream.push(ids[1]), "b");
  EXPECT_EQ(tok.decode(ids),
            "\xEF\xBF\xBD"
            "b");

  // An interrupted character: the held bytes become U+FFFD when the next token shows it.
  ids = {byte_token(0xE6), byte_token('c')};
  EXPECT_EQ(stream.push(ids[0]), "");
  EXPECT_EQ(stream.push(ids[1]),
            "\xEF\xBF\xBD"
            "c");
  EXPECT_EQ(tok.decode(ids),
            "\xEF\xBF\xBD"
            "c");
}

TEST(Tokenizer, InvalidUtf8IsRejected) {
  struct Case {
    std::string text;
    size_t offset;
    const char* reason;
  };
  const Case cases[] = {
      {"a\x80z", 1, "continuation byte"},        // lone continuation byte
      {"ab\xE6\x97", 2, "truncated"},            // 3-byte sequence cut off by the end
      {"\xE6\x97z", 0, "missing continuation"},  // ... and by ASCII
      {"\xC0\xAF", 0, "overlong"},               // '/' in two bytes
      {"ok \xE0\x80\xAF", 3, "overlong"},        // '/' in three bytes
      {"x\xED\xA0\x80", 1, "surrogate"},         // U+D800
      {"\xF4\x90\x80\x80", 0, "U+10FFFF"},       // U+110000
      {"\xFF", 0, "never occurs"},
  };
  for (const Case& c : cases) {
    std::string message;
    EXPECT_EQ(error_of([&] { tiny().encode(c.text); }, &message), Errc::invalid_argument) << "offset " << c.offset;
    EXPECT_NE(message.find("byte offset " + std::to_string(c.offset)), std::string::npos) << message;
    EXPECT_NE(message.find(c.reason), std::string::npos) << message;
  }
}

TEST(Tokenizer, UnknownIdsAreInvalidTokens) {
  const Tokenizer& tok = tiny();
  std::string message;
  EXPECT_EQ(error_of([&] { tok.decode({5, tok.vocab_size()}); }, &message), Errc::invalid_token);
  EXPECT_NE(message.find(std::to_string(tok.vocab_size())), std::string::npos) << message;
  EXPECT_EQ(error_of([&] { tok.decode({-1}); }), Errc::invalid_token);
  EXPECT_EQ(error_of([&] { tok.token_bytes(1 << 30); }), Errc::invalid_token);
  StreamDecoder stream(tok);
  EXPECT_EQ(error_of([&] { stream.push(-7); }), Errc::invalid_token);
  EXPECT_FALSE(tok.is_special(-1));
  EXPECT_FALSE(tok.is_valid(tok.vocab_size()));
}

json tiny_json() { return json::parse(read_text_file(tiny_path())); }

Errc load_error(const json& j, std::string* message = nullptr) {
  return error_of([&] { Tokenizer::from_json(j.dump(), "test.json"); }, message);
}

TEST(Tokenizer, CorruptFilesFailClearly) {
  std::string message;
  EXPECT_EQ(error_of([&] { Tokenizer::from_json("{\"model\": ", "broken.json"); }, &message), Errc::format);
  EXPECT_NE(message.find("broken.json"), std::string::npos) << message;
  EXPECT_NE(message.find("JSON"), std::string::npos) << message;

  json j = tiny_json();
  j.erase("model");
  EXPECT_EQ(load_error(j, &message), Errc::format);
  EXPECT_NE(message.find("model"), std::string::npos) << message;

  j = tiny_json();
  j["model"]["type"] = "WordPiece";
  EXPECT_EQ(load_error(j, &message), Errc::unsupported);
  EXPECT_NE(message.find("WordPiece"), std::string::npos) << message;

  j = tiny_json();
  j["model"].erase("vocab");
  EXPECT_EQ(load_error(j, &message), Errc::format);
  EXPECT_NE(message.find("vocab"), std::string::npos) << message;

  j = tiny_json();
  j["model"]["merges"].push_back(json::array({"Ġ", "no-such-token"}));
  EXPECT_EQ(load_error(j, &message), Errc::format);
  EXPECT_NE(message.find("no-such-token"), std::string::npos) << message;

  EXPECT_EQ(error_of([&] { Tokenizer::load(data_dir() + "/no-such-folder/tokenizer.json"); }, &message), Errc::io);
  EXPECT_NE(message.find("no-such-folder"), std::string::npos) << message;
  EXPECT_EQ(error_of([] { Tokenizer::from_json("[1, 2]", "list.json"); }), Errc::format);
}

TEST(Tokenizer, UnsupportedFeaturesAreRefused) {
  auto expect_unsupported = [](const json& j, const std::string& word) {
    std::string message;
    EXPECT_EQ(load_error(j, &message), Errc::unsupported) << message;
    EXPECT_NE(message.find(word), std::string::npos) << message;
  };
  json j = tiny_json();
  j["normalizer"] = {{"type", "Lowercase"}};
  expect_unsupported(j, "normalizer");
  j = tiny_json();
  j["pre_tokenizer"]["pretokenizers"][0]["behavior"] = "Removed";
  expect_unsupported(j, "Removed");
  j = tiny_json();
  j["pre_tokenizer"]["pretokenizers"][0]["invert"] = true;
  expect_unsupported(j, "invert");
  j = tiny_json();
  j["pre_tokenizer"]["pretokenizers"].back()["add_prefix_space"] = true;
  expect_unsupported(j, "add_prefix_space");
  j = tiny_json();
  j["pre_tokenizer"] = {{"type", "Whitespace"}};
  expect_unsupported(j, "Whitespace");
  j = tiny_json();
  j["decoder"] = {{"type", "WordPiece"}};
  expect_unsupported(j, "decoder");
  j = tiny_json();
  j["model"]["byte_fallback"] = true;
  expect_unsupported(j, "byte_fallback");
  j = tiny_json();
  j["model"]["dropout"] = 0.1;
  expect_unsupported(j, "dropout");
  j = tiny_json();
  j["model"]["continuing_subword_prefix"] = "##";
  expect_unsupported(j, "continuing_subword_prefix");
  j = tiny_json();
  j["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "[a-z[0-9]]+";
  expect_unsupported(j, "nested");
  j["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "[a-z&&[^aeiou]]+";
  expect_unsupported(j, "&&");
}

TEST(Tokenizer, MergesAsStringsOrPairs) {
  json pairs = tiny_json();
  ASSERT_TRUE(pairs["model"]["merges"][0].is_array());
  json strings = pairs;
  for (json& m : strings["model"]["merges"]) m = m[0].get<std::string>() + " " + m[1].get<std::string>();
  auto a = Tokenizer::from_json(pairs.dump(), "pairs.json");
  auto b = Tokenizer::from_json(strings.dump(), "strings.json");
  for (const char* text : {"The quick brown fox, 1234567!", "  leading spaces\n\n\ttabs", "naïve café 日本"})
    EXPECT_EQ(a->encode(text), b->encode(text)) << text;
}

TEST(Tokenizer, AddedTokenFlags) {
  json j = tiny_json();
  auto add = [&](const std::string& content, int id, bool single_word, bool lstrip, bool rstrip) {
    j["added_tokens"].push_back({{"id", id},
                                 {"content", content},
                                 {"single_word", single_word},
                                 {"lstrip", lstrip},
                                 {"rstrip", rstrip},
                                 {"normalized", false},
                                 {"special", true}});
  };
  add("<L>", 2000, false, true, false);
  add("<R>", 2001, false, false, true);
  add("<W>", 2002, true, false, false);
  add("<LONG>", 2003, false, false, false);
  add("<LONGER>", 2004, false, false, false);
  auto tok = Tokenizer::from_json(j.dump(), "flags.json");
  const Tokenizer& plain = tiny();  // the same without the tokens above
  auto cat = [](std::vector<std::vector<int32_t>> parts) {
    std::vector<int32_t> all;
    for (auto& p : parts) all.insert(all.end(), p.begin(), p.end());
    return all;
  };
  EXPECT_EQ(tok->encode("x  <L>"), cat({plain.encode("x"), {2000}}));    // lstrip takes the spaces before
  EXPECT_EQ(tok->encode("<R> \n x"), cat({{2001}, plain.encode("x")}));  // rstrip takes the spaces after
  EXPECT_EQ(tok->encode("x <W> x"), cat({plain.encode("x "), {2002}, plain.encode(" x")}));
  EXPECT_EQ(tok->encode("x<W>"), plain.encode("x<W>"));  // single_word: not inside a word
  EXPECT_EQ(tok->encode("<W>é"), plain.encode("<W>é"));
  EXPECT_EQ(tok->encode("<LONGER><LONG>"), (std::vector<int32_t>{2004, 2003}));  // longest match wins
  EXPECT_EQ(tok->vocab_size(), 2005);
  EXPECT_TRUE(tok->is_special(2003));
  EXPECT_FALSE(tok->is_valid(1500));  // a hole between the vocabulary and the added ids
  EXPECT_EQ(tok->decode({2000, 2001}), "<L><R>");
}

TEST(Tokenizer, EncodesFromSeveralThreads) {
  json j = json::parse(read_text_file(data_dir() + "/tokenizers/deepseek-v3/tokenize.public.json"));
  const Tokenizer& tok = deepseek();
  std::vector<std::thread> threads;
  std::atomic<int> wrong{0};
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (size_t i = t; i < j["cases"].size() * 2; i += 3) {  // overlapping subsets share the cache
        const json& c = j["cases"][i % j["cases"].size()];
        if (tok.encode(c["text"].get<std::string>()) != ids_of(c["ids"])) ++wrong;
      }
    });
  for (auto& th : threads) th.join();
  EXPECT_EQ(wrong.load(), 0);
}

// Load time and encode throughput of the V3 tokenizer, printed for the record; the bounds
// only catch pathological slowness (sanitizer builds are several times slower).
TEST(Tokenizer, DeepSeekV3Speed) {
  using Clock = std::chrono::steady_clock;
  std::string text = read_text_file(deepseek_path());
  auto t0 = Clock::now();
  auto tok = Tokenizer::from_json(text, "deepseek-v3");
  double load_s = std::chrono::duration<double>(Clock::now() - t0).count();

  json j = json::parse(read_text_file(data_dir() + "/tokenizers/deepseek-v3/tokenize.public.json"));
  std::vector<std::string> texts;
  size_t bytes = 0;
  for (const json& c : j["cases"]) {
    texts.push_back(c["text"]);
    bytes += texts.back().size();
  }
  size_t tokens = 0;
  auto t1 = Clock::now();
  for (const std::string& s : texts) tokens += tok->encode(s).size();
  double first_s = std::chrono::duration<double>(Clock::now() - t1).count();
  auto t2 = Clock::now();
  for (const std::string& s : texts) tok->encode(s);  // now every word is in the cache
  double cached_s = std::chrono::duration<double>(Clock::now() - t2).count();
  std::printf(
      "[ timing   ] load %.0f ms; encode %zu bytes -> %zu tokens: %.1f ms cold (%.0f tokens/s), "
      "%.1f ms warm (%.0f tokens/s)\n",
      load_s * 1e3, bytes, tokens, first_s * 1e3, tokens / first_s, cached_s * 1e3, tokens / cached_s);
  EXPECT_LT(load_s, 20.0);
  EXPECT_LT(first_s, 20.0);
}

}  // namespace
}  // namespace sibyl::engine::test
