#include "engine/grammar/json_schema.h"

#include <cctype>
#include <cmath>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <vector>

#include "engine/core/failure.h"
#include "engine/grammar/gbnf.h"

namespace sibyl::engine {
namespace {

using json = nlohmann::ordered_json;  // properties keep their declared order

constexpr int kMaxDepth = 128;
constexpr int64_t kMaxInteger = 9999999999999999;  // 16 digits
constexpr int64_t kMaxItems = 1000;

// The fixed rules the compiled grammars use, added when first referred to.
const std::map<std::string, std::string>& fixed_rules() {
  static const std::map<std::string, std::string> rules = {
      {"ws", "( \" \" | \"\\n\" [ \\t]{0,20} )?"},  // a space, or a new line and its indentation
      {"char", "[^\"\\\\\\x7F\\x00-\\x1F] | \"\\\\\" ([\"\\\\/bfnrt] | \"u\" [0-9a-fA-F]{4})"},
      {"string", "\"\\\"\" char* \"\\\"\""},
      {"integer", "\"-\"? (\"0\" | [1-9] [0-9]{0,15})"},
      {"number", "integer (\".\" [0-9]{1,16})? ([eE] [-+]? [0-9]{1,3})?"},
      {"boolean", "\"true\" | \"false\""},
      {"null", "\"null\""},
      {"value", "object | array | string | number | boolean | null"},
      {"object", "\"{\" ws ( string ws \":\" ws value ws ( \",\" ws string ws \":\" ws value ws )* )? \"}\""},
      {"array", "\"[\" ws ( value ws ( \",\" ws value ws )* )? \"]\""},
  };
  return rules;
}

// A GBNF string literal for `text` (UTF-8).
std::string literal(const std::string& text) {
  std::string out = "\"";
  for (char c : text) {
    const auto b = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (b < 0x20 || b == 0x7F) {
      static const char* hex = "0123456789ABCDEF";
      out += "\\x";
      out += hex[b >> 4];
      out += hex[b & 15];
    } else {
      out += c;
    }
  }
  return out + "\"";
}

std::string alternatives(const std::vector<std::string>& alts) {
  if (alts.size() == 1) return alts[0];
  std::string out = "(";
  for (size_t i = 0; i < alts.size(); ++i) out += (i ? " | " : "") + alts[i];
  return out + ")";
}

// Equal-length digit strings a <= b (leading zeros allowed): every digit string between them.
std::string digits_between(const std::string& a, const std::string& b) {
  const size_t n = a.size();
  if (n == 1) return a == b ? literal(a) : "[" + a + "-" + b + "]";
  const std::string ra = a.substr(1), rb = b.substr(1);
  const std::string tail = " [0-9]{" + std::to_string(n - 1) + "}";
  if (ra == std::string(n - 1, '0') && rb == std::string(n - 1, '9'))
    return (a[0] == b[0] ? literal(a.substr(0, 1)) : "[" + a.substr(0, 1) + "-" + b.substr(0, 1) + "]") + tail;
  if (a[0] == b[0]) return literal(a.substr(0, 1)) + " " + digits_between(ra, rb);
  std::vector<std::string> alts{literal(a.substr(0, 1)) + " " + digits_between(ra, std::string(n - 1, '9'))};
  if (a[0] + 1 <= b[0] - 1)
    alts.push_back("[" + std::string(1, static_cast<char>(a[0] + 1)) + "-" + std::string(1, static_cast<char>(b[0] - 1)) +
                   "]" + tail);
  alts.push_back(literal(b.substr(0, 1)) + " " + digits_between(std::string(n - 1, '0'), rb));
  return alternatives(alts);
}

// Decimal integers in [lo, hi], 0 <= lo <= hi, without leading zeros.
std::string naturals_between(int64_t lo, int64_t hi) {
  std::vector<std::string> alts;
  int64_t first = 0, last = 9;  // the values with n digits
  for (size_t n = 1; first <= hi; ++n) {
    const int64_t a = std::max(lo, first), b = std::min(hi, last);
    if (a <= b) alts.push_back(digits_between(std::to_string(a), std::to_string(b)));
    first = last + 1;
    if (last > kMaxInteger / 10) break;
    last = last * 10 + 9;
  }
  return alternatives(alts);
}

std::string integers_between(int64_t lo, int64_t hi) {
  std::vector<std::string> alts;
  if (lo < 0) alts.push_back("\"-\" " + naturals_between(hi < 0 ? -hi : 1, -lo));
  if (hi >= 0) alts.push_back(naturals_between(std::max<int64_t>(lo, 0), hi));
  return alternatives(alts);
}

class SchemaCompiler {
 public:
  explicit SchemaCompiler(const json& root) : root_(root) {}

  std::string compile() {
    const std::string top = visit(root_, "#", 0);
    std::string out = "root ::= " + top + "\n";
    for (const auto& [name, body] : rules_) out += name + " ::= " + body + "\n";
    // The fixed rules, with those they refer to.
    for (bool more = true; more;) {
      more = false;
      for (const auto& [name, body] : fixed_rules())
        if (used_.count(name) && !emitted_.count(name)) {
          emitted_.insert(name);
          out += name + " ::= " + body + "\n";
          for (const auto& [other, unused] : fixed_rules())
            if (body.find(other) != std::string::npos) use(other);
          more = true;
        }
    }
    return out;
  }

 private:
  [[noreturn]] static void error(const std::string& path, const std::string& what) {
    fail(Errc::invalid_argument, "JSON schema at " + path + ": " + what);
  }

  std::string use(const std::string& fixed) {
    used_.insert(fixed);
    return fixed;
  }

  std::string add_rule(const std::string& hint, const std::string& body) {
    const std::string name = fresh_name(hint);
    rules_.emplace_back(name, body);
    return name;
  }

  std::string fresh_name(const std::string& hint) {
    std::string base;
    for (char c : hint) base += (std::isalnum(static_cast<unsigned char>(c)) ? c : '-');
    if (base.empty() || fixed_rules().count(base) || base == "root") base = "s-" + base;
    std::string name = base;
    for (int i = 2; names_.count(name); ++i) name = base + "-" + std::to_string(i);
    names_.insert(name);
    return name;
  }

  static int64_t integer_bound(const json& v, const std::string& path, bool lower) {
    if (!v.is_number()) error(path, "minimum and maximum must be numbers");
    const double d = lower ? std::ceil(v.get<double>()) : std::floor(v.get<double>());
    if (d > static_cast<double>(kMaxInteger) || d < -static_cast<double>(kMaxInteger))
      error(path, "integer bounds are limited to 16 digits");
    return static_cast<int64_t>(d);
  }

  static int64_t count(const json& s, const char* key, const std::string& path, int64_t fallback) {
    if (!s.contains(key)) return fallback;
    const json& v = s[key];
    if (!v.is_number_integer() && !v.is_number_unsigned()) error(path, std::string(key) + " must be an integer");
    const int64_t n = v.get<int64_t>();
    if (n < 0) error(path, std::string(key) + " must not be negative");
    return n;
  }

  // `item` repeated min..max times ("ws" around it, separated by ",").
  static std::string repeated(const std::string& item, int64_t min, int64_t max) {
    if (max == 0) return "";
    std::string rest = "( \",\" ws " + item + " ws )";
    const int64_t rest_min = std::max<int64_t>(min - 1, 0);
    rest += max < 0 ? (rest_min == 0 ? "*" : "{" + std::to_string(rest_min) + ",}")
                    : "{" + std::to_string(rest_min) + "," + std::to_string(max - 1) + "}";
    const std::string list = item + " ws " + rest;
    return min == 0 ? "( " + list + " )?" : list;
  }

  std::string visit(const json& s, const std::string& path, int depth) {
    if (depth > kMaxDepth) error(path, "the schema nests deeper than " + std::to_string(kMaxDepth) + " levels");
    if (s.is_boolean()) {
      if (!s.get<bool>()) error(path, "the schema false accepts nothing");
      return use("value");
    }
    if (!s.is_object()) error(path, "a schema must be an object or a boolean");
    static const std::set<std::string> annotations = {"title", "description", "examples", "default",
                                                      "$schema", "$id", "$comment", "$defs", "definitions"};
    static const std::set<std::string> known = {"type", "properties", "required", "additionalProperties",
                                                "items", "minItems", "maxItems", "minLength", "maxLength",
                                                "minimum", "maximum", "enum", "const", "anyOf", "oneOf",
                                                "allOf", "$ref"};
    for (const auto& [key, value] : s.items())
      if (!known.count(key) && !annotations.count(key))
        error(path, "the keyword \"" + key + "\" is not supported");

    if (s.contains("$ref")) {
      for (const auto& [key, value] : s.items())
        if (key != "$ref" && !annotations.count(key)) error(path, "keywords beside $ref are not supported");
      return reference(s["$ref"], path, depth);
    }
    if (s.contains("const")) return literal(s["const"].dump());
    if (s.contains("enum")) {
      const json& e = s["enum"];
      if (!e.is_array() || e.empty()) error(path, "enum must be a non-empty array");
      std::vector<std::string> alts;
      for (const json& v : e) alts.push_back(literal(v.dump()));
      return alternatives(alts);
    }
    for (const char* key : {"anyOf", "oneOf"})
      if (s.contains(key)) {
        const json& list = s[key];
        if (!list.is_array() || list.empty()) error(path, std::string(key) + " must be a non-empty array");
        std::vector<std::string> alts;
        for (size_t i = 0; i < list.size(); ++i)
          alts.push_back(visit(list[i], path + "/" + key + "/" + std::to_string(i), depth + 1));
        return alternatives(alts);
      }
    if (s.contains("allOf")) {
      const json& list = s["allOf"];
      if (!list.is_array() || list.size() != 1) error(path, "allOf is supported with one schema only");
      return visit(list[0], path + "/allOf/0", depth + 1);
    }

    std::vector<std::string> types;
    if (s.contains("type")) {
      const json& t = s["type"];
      if (t.is_string()) {
        types.push_back(t.get<std::string>());
      } else if (t.is_array() && !t.empty()) {
        for (const json& x : t) {
          if (!x.is_string()) error(path, "type must be a string or a list of strings");
          types.push_back(x.get<std::string>());
        }
      } else {
        error(path, "type must be a string or a list of strings");
      }
    } else if (s.contains("properties") || s.contains("required") || s.contains("additionalProperties")) {
      types.push_back("object");
    } else if (s.contains("items") || s.contains("minItems") || s.contains("maxItems")) {
      types.push_back("array");
    } else if (s.contains("minLength") || s.contains("maxLength")) {
      types.push_back("string");
    } else if (s.contains("minimum") || s.contains("maximum")) {
      types.push_back("number");
    } else {
      return use("value");
    }
    std::vector<std::string> alts;
    for (const std::string& t : types) alts.push_back(typed(s, t, path, depth));
    return alternatives(alts);
  }

  std::string typed(const json& s, const std::string& type, const std::string& path, int depth) {
    if (type == "object") return object(s, path, depth);
    if (type == "array") {
      use("ws");
      const int64_t min = count(s, "minItems", path, 0), max = count(s, "maxItems", path, -1);
      if (max >= 0 && max < min) error(path, "maxItems is below minItems");
      if (min > kMaxItems || max > kMaxItems)
        error(path, "minItems and maxItems are limited to " + std::to_string(kMaxItems));
      const std::string item = s.contains("items") ? visit(s["items"], path + "/items", depth + 1) : use("value");
      return add_rule(path == "#" ? "array-root" : path, "\"[\" ws " + repeated(item, min, max) + " \"]\"");
    }
    if (type == "string") {
      const int64_t min = count(s, "minLength", path, 0), max = count(s, "maxLength", path, -1);
      if (max >= 0 && max < min) error(path, "maxLength is below minLength");
      if (min > kMaxItems || max > kMaxItems)
        error(path, "minLength and maxLength are limited to " + std::to_string(kMaxItems));
      if (min == 0 && max < 0) return use("string");
      use("char");
      return "\"\\\"\" char{" + std::to_string(min) + "," + (max < 0 ? "" : std::to_string(max)) + "} \"\\\"\"";
    }
    if (type == "integer") {
      if (!s.contains("minimum") && !s.contains("maximum")) return use("integer");
      const int64_t lo = s.contains("minimum") ? integer_bound(s["minimum"], path, true) : -kMaxInteger;
      const int64_t hi = s.contains("maximum") ? integer_bound(s["maximum"], path, false) : kMaxInteger;
      if (hi < lo) error(path, "no integer lies between minimum and maximum");
      return integers_between(lo, hi);
    }
    if (type == "number") {
      if (s.contains("minimum") || s.contains("maximum"))
        error(path, "minimum and maximum are supported for integers only");
      return use("number");
    }
    if (type == "boolean") return use("boolean");
    if (type == "null") return use("null");
    error(path, "unknown type \"" + type + "\"");
  }

  std::string object(const json& s, const std::string& path, int depth) {
    use("ws");
    const json empty = json::object();
    const json& props = s.contains("properties") ? s["properties"] : empty;
    if (!props.is_object()) error(path, "properties must be an object");
    std::set<std::string> required;
    if (s.contains("required")) {
      if (!s["required"].is_array()) error(path, "required must be an array of names");
      for (const json& r : s["required"]) {
        if (!r.is_string()) error(path, "required must be an array of names");
        if (!props.contains(r.get<std::string>()))
          error(path, "the required property \"" + r.get<std::string>() + "\" is not in properties");
        required.insert(r.get<std::string>());
      }
    }
    // Extra properties: none unless asked for (a model should not invent fields), but any
    // when the object declares no properties at all.
    std::string extra;
    const bool open = s.contains("additionalProperties") ? !s["additionalProperties"].is_boolean() ||
                                                               s["additionalProperties"].get<bool>()
                                                         : props.empty();
    if (open) {
      const json& a = s.contains("additionalProperties") ? s["additionalProperties"] : json(true);
      extra = use("string") + " ws \":\" ws " + visit(a, path + "/additionalProperties", depth + 1);
    }
    // The declared properties in order, each required one present, optional ones maybe; commas
    // between: two rules per position, with and without a member before it.
    std::vector<std::string> members;
    std::vector<bool> needed;
    for (const auto& [name, sub] : props.items()) {
      const std::string value = visit(sub, path + "/properties/" + name, depth + 1);
      members.push_back(literal(json(name).dump()) + " ws \":\" ws " + value);
      needed.push_back(required.count(name) > 0);
    }
    const std::string base = path == "#" ? "object-root" : path;
    std::string after_none = extra.empty() ? "" : "( " + extra + " ws ( \",\" ws " + extra + " ws )* )?";
    std::string after_some = extra.empty() ? "" : "( \",\" ws " + extra + " ws )*";
    for (size_t i = members.size(); i-- > 0;) {
      const std::string& m = members[i];
      const std::string some = m + " ws" + (after_some.empty() ? "" : " " + after_some);
      std::string none = some, rest_some = "\",\" ws " + some;
      if (!needed[i]) {
        none = "( " + some + " | " + (after_none.empty() ? "\"\"" : after_none) + " )";
        rest_some = "( " + rest_some + " | " + (after_some.empty() ? "\"\"" : after_some) + " )";
      }
      after_none = add_rule(base + "-" + std::to_string(i) + "-first", none);
      if (i > 0) after_some = add_rule(base + "-" + std::to_string(i) + "-next", rest_some);
    }
    return add_rule(base, "\"{\" ws " + (after_none.empty() ? "" : after_none + " ") + "\"}\"");
  }

  std::string reference(const json& ref, const std::string& path, int depth) {
    if (!ref.is_string()) error(path, "$ref must be a string");
    const std::string r = ref.get<std::string>();
    if (auto it = refs_.find(r); it != refs_.end()) return it->second;
    const json* target = nullptr;
    if (r == "#") {
      target = &root_;
    } else {
      for (const char* prefix : {"#/$defs/", "#/definitions/"}) {
        const std::string p = prefix;
        if (r.compare(0, p.size(), p) != 0) continue;
        const std::string section = p.substr(2, p.size() - 3);
        std::string name;  // JSON pointer unescaping
        for (size_t i = p.size(); i < r.size(); ++i) {
          if (r[i] == '~' && i + 1 < r.size() && (r[i + 1] == '0' || r[i + 1] == '1')) {
            name += r[i + 1] == '0' ? '~' : '/';
            ++i;
          } else {
            name += r[i];
          }
        }
        if (root_.is_object() && root_.contains(section) && root_[section].is_object() &&
            root_[section].contains(name))
          target = &root_[section][name];
      }
    }
    if (!target) error(path, "$ref \"" + r + "\" names no definition (only \"#\", \"#/$defs/…\" and \"#/definitions/…\")");
    // The rule is named before its body is compiled: a definition may refer to itself.
    const std::string name = fresh_name(r == "#" ? "root-ref" : r.substr(r.rfind('/') + 1));
    refs_.emplace(r, name);
    const size_t slot = rules_.size();
    rules_.emplace_back(name, "");
    const std::string body = visit(*target, r, depth + 1);
    rules_[slot].second = body;
    return name;
  }

  const json& root_;
  std::vector<std::pair<std::string, std::string>> rules_;
  std::set<std::string> names_, used_, emitted_;
  std::map<std::string, std::string> refs_;
};

// The deepest nesting of arrays and objects in a JSON text (strings skipped).
size_t nesting(std::string_view text) {
  size_t depth = 0, deepest = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\')
        ++i;
      else if (c == '"')
        in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      deepest = std::max(deepest, ++depth);
    } else if ((c == '}' || c == ']') && depth > 0) {
      --depth;
    }
  }
  return deepest;
}

}  // namespace

std::string json_schema_to_gbnf(std::string_view schema_json) {
  if (nesting(schema_json) > 4 * kMaxDepth)
    fail(Errc::invalid_argument, "the JSON schema nests deeper than " + std::to_string(4 * kMaxDepth) + " levels");
  json schema;
  try {
    schema = json::parse(schema_json);
  } catch (const json::exception& e) {
    fail(Errc::invalid_argument, std::string("the JSON schema is not valid JSON: ") + e.what());
  }
  return SchemaCompiler(schema).compile();
}

std::shared_ptr<const Grammar> parse_json_schema(std::string_view schema_json) {
  return parse_gbnf(json_schema_to_gbnf(schema_json));
}

}  // namespace sibyl::engine
