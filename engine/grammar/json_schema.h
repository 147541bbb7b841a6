// JSON Schema to GBNF: the subset structured output needs, compiled to a grammar whose
// sentences are the JSON texts the schema accepts (up to the limits below).
//
// Supported: type (one or a list), object (properties in their declared order, required,
// additionalProperties — false when absent unless the object declares no properties),
// array (items, minItems, maxItems), string (minLength, maxLength), number, integer (minimum,
// maximum), boolean, null, enum, const, anyOf, oneOf (as anyOf), allOf of one schema,
// $ref to "#", "#/$defs/…" or "#/definitions/…" (recursion becomes grammar recursion).
// Annotations (title, description, examples, default, $schema, $id, $comment) are ignored;
// any other keyword is an error naming it, rather than output that ignores it.
// Limits: integers up to 16 digits, fractions up to 16 digits, exponents up to 3; between
// tokens one space, or one line break and up to 20 spaces or tabs of indentation (a model
// cannot spend its tokens on blank lines); the schema itself nests up to 128 levels.
#pragma once
#include <memory>
#include <string>
#include <string_view>

#include "engine/grammar/grammar.h"

namespace sibyl::engine {

// Errc::invalid_argument naming the schema location for malformed or unsupported schemas.
std::string json_schema_to_gbnf(std::string_view schema_json);
std::shared_ptr<const Grammar> parse_json_schema(std::string_view schema_json);

}  // namespace sibyl::engine
