// JSON Schema compiled to a grammar: what each supported keyword accepts and rejects (integer
// ranges exhaustively), recursion through $ref, errors for what is not supported, and exact
// token masks of a schema grammar on the DeepSeek-V3 vocabulary.
#include <gtest/gtest.h>

#include "engine/core/failure.h"
#include "fixture_util.h"
#include "engine/grammar/json_schema.h"
#include "mask_check.h"

namespace sibyl::engine::test {
namespace {

bool accepts(const std::shared_ptr<const Grammar>& g, std::string_view text) {
  GrammarMatcher m(g);
  return m.accept(text) && m.can_end();
}

std::string error_of(std::string_view schema) {
  try {
    parse_json_schema(schema);
  } catch (const Failure& f) {
    EXPECT_EQ(f.code(), Errc::invalid_argument);
    return f.what();
  }
  return "";
}

constexpr const char* kNpcAction = R"({
  "type": "object",
  "properties": {
    "action": {"enum": ["give", "walk", "say"]},
    "item": {"type": "string", "minLength": 1, "maxLength": 24},
    "count": {"type": "integer", "minimum": 1, "maximum": 99},
    "target": {"$ref": "#/$defs/place"},
    "mood": {"type": ["string", "null"]}
  },
  "required": ["action", "count"],
  "$defs": {"place": {"type": "object", "properties": {"x": {"type": "number"}, "y": {"type": "number"}},
                      "required": ["x", "y"], "additionalProperties": false}}
})";

TEST(JsonSchema, ObjectsKeepOrderRequiredAndOptionalMembers) {
  const auto g = parse_json_schema(kNpcAction);
  for (const char* ok : {R"({"action": "give", "item": "sword", "count": 1})", R"({"action":"say","count":99})",
                         R"({ "action": "walk", "count": 3, "target": {"x": 1.5, "y": -2e3} })",
                         "{\n  \"action\": \"give\",\n  \"count\": 2,\n  \"mood\": null\n}",
                         R"({"action": "give", "item": "caf\u00e9 \"x\"", "count": 12, "mood": "glad"})"})
    EXPECT_TRUE(accepts(g, ok)) << ok;
  for (const char* bad : {R"({"count": 1})",                                  // action required
                          R"({"count": 1, "action": "give"})",                // declared order
                          R"({"action": "fly", "count": 1})",                 // enum
                          R"({"action": "give", "item": "", "count": 1})",    // minLength
                          R"({"action": "give", "count": 100})",              // maximum
                          R"({"action": "give", "count": 0})",                // minimum
                          R"({"action": "give", "count": 01})",               // no leading zero
                          R"({"action": "give", "count": 1, "extra": 1})",    // no additional properties
                          R"({"action": "give", "count": 1, "target": {"x": 1}})",
                          R"({"action": "give",, "count": 1})", R"({"action": "give", "count": 1,})"})
    EXPECT_FALSE(accepts(g, bad)) << bad;
}

TEST(JsonSchema, IntegerRangesAreExact) {
  const std::pair<int, int> ranges[] = {{0, 0}, {1, 99}, {-5, 5}, {-1200, -37}, {7, 1043}, {-999, 1000}, {10, 19}};
  for (const auto& [lo, hi] : ranges) {
    const auto g = parse_json_schema(R"({"type": "integer", "minimum": )" + std::to_string(lo) +
                                     R"(, "maximum": )" + std::to_string(hi) + "}");
    for (int v = -1300; v <= 1300; ++v)
      ASSERT_EQ(accepts(g, std::to_string(v)), v >= lo && v <= hi) << v << " in [" << lo << ", " << hi << "]";
    EXPECT_FALSE(accepts(g, "-0"));
    EXPECT_FALSE(accepts(g, "+1"));
  }
  const auto open = parse_json_schema(R"({"type": "integer", "minimum": 18})");
  EXPECT_TRUE(accepts(open, "18"));
  EXPECT_TRUE(accepts(open, "9999999999999999"));
  EXPECT_FALSE(accepts(open, "17"));
  EXPECT_FALSE(accepts(open, "-20"));
}

TEST(JsonSchema, ArraysStringsEnumsConstAndAnyOf) {
  const auto g = parse_json_schema(R"({"type": "array", "items": {"anyOf": [{"type": "boolean"},
      {"const": {"k": [1, "two"]}}, {"type": "string", "maxLength": 2}]}, "minItems": 1, "maxItems": 3})");
  EXPECT_TRUE(accepts(g, "[true]"));
  EXPECT_TRUE(accepts(g, R"([false, {"k":[1,"two"]}, "ab"])"));
  EXPECT_TRUE(accepts(g, "[ \"\\n\" ]"));
  EXPECT_FALSE(accepts(g, "[]"));
  EXPECT_FALSE(accepts(g, "[true, true, true, true]"));
  EXPECT_FALSE(accepts(g, R"(["abc"])"));
  EXPECT_FALSE(accepts(g, "[null]"));
  const auto any = parse_json_schema("{}");
  EXPECT_TRUE(accepts(any, R"({"a": [1, {"b": null}], "c": "d"})"));
  EXPECT_TRUE(accepts(any, "-0.5e+10"));
  const auto free_object = parse_json_schema(R"({"type": "object", "additionalProperties": {"type": "integer"}})");
  EXPECT_TRUE(accepts(free_object, R"({"a": 1, "b": 2})"));
  EXPECT_FALSE(accepts(free_object, R"({"a": "1"})"));
}

TEST(JsonSchema, RecursiveDefinitionsBecomeGrammarRecursion) {
  const auto tree = parse_json_schema(R"({"$ref": "#/$defs/node", "$defs": {"node": {"type": "object",
      "properties": {"name": {"type": "string"}, "children": {"type": "array", "items": {"$ref": "#/$defs/node"}}},
      "required": ["name"]}}})");
  EXPECT_TRUE(accepts(tree, R"({"name": "a", "children": [{"name": "b"}, {"name": "c", "children": []}]})"));
  EXPECT_FALSE(accepts(tree, R"({"name": "a", "children": [{"children": []}]})"));
  std::string deep;
  for (int i = 0; i < 200; ++i) deep += R"({"name": "n", "children": [)";
  deep += R"({"name": "leaf"})";
  for (int i = 0; i < 200; ++i) deep += "]}";
  EXPECT_TRUE(accepts(tree, deep));
  const auto list = parse_json_schema(R"({"type": ["array", "integer"], "items": {"$ref": "#"}})");
  EXPECT_TRUE(accepts(list, "[1, [2, [3]], []]"));
}

TEST(JsonSchema, UnsupportedOrBrokenSchemasAreClearErrors) {
  EXPECT_NE(error_of(R"({"type": "string", "pattern": "^a"})").find("\"pattern\" is not supported"), std::string::npos);
  EXPECT_NE(error_of(R"({"$ref": "#/$defs/missing"})").find("names no definition"), std::string::npos);
  EXPECT_NE(error_of(R"({"properties": {"a": {}}, "required": ["b"]})").find("\"b\" is not in properties"),
            std::string::npos);
  EXPECT_NE(error_of("false").find("accepts nothing"), std::string::npos);
  EXPECT_NE(error_of("{\"type\": ").find("not valid JSON"), std::string::npos);
  EXPECT_NE(error_of(R"({"type": "integer", "minimum": 5, "maximum": 4})").find("no integer"), std::string::npos);
  EXPECT_NE(error_of(R"({"type": "number", "minimum": 0.5})").find("integers only"), std::string::npos);
  EXPECT_NE(error_of(R"({"type": "thing"})").find("unknown type"), std::string::npos);
  EXPECT_NE(error_of(R"({"anyOf": [{"$ref": "#"}]})").find("can reach itself"), std::string::npos);
  std::string deep;
  for (int i = 0; i < 2000; ++i) deep += R"({"items": )";
  deep += "{}";
  for (int i = 0; i < 2000; ++i) deep += "}";
  EXPECT_NE(error_of(deep).find("nests deeper"), std::string::npos);
}

TEST(JsonSchema, TrieMaskIsExactOnTheDeepSeekV3Vocabulary) {
  const auto tok = Tokenizer::load(data_dir() + "/tokenizers/deepseek-v3/tokenizer.json");
  expect_exact_masks(*tok, parse_json_schema(kNpcAction),
                     R"({"action": "give", "item": "old sword", "count": 12, "target": {"x": 3, "y": -1.25}})");
}

}  // namespace
}  // namespace sibyl::engine::test
