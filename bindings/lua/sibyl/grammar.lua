-- Compiled grammars for constrained decoding: from JSON Schema text or GBNF. A grammar is
-- passed as `grammar = g` in chat / generate options and may be shared by any number of them;
-- requests hold on to it, so closing it while they run is safe.
local ffi = require("ffi")
local core = require("sibyl.core")
local options = require("sibyl.options")

local Grammar = {}
Grammar.__index = Grammar

local function wrap(out)
  return setmetatable({ _ptr = core.own(out[0], core.lib.sibyl_grammar_destroy) }, Grammar)
end

function Grammar.from_json_schema(schema)
  local func = "sibyl_grammar_from_json_schema"
  core.string(schema, "schema (JSON Schema text)", func)
  local out = ffi.new("sibyl_grammar*[1]")
  core.check(core.lib.sibyl_grammar_from_json_schema(schema, out), func)
  return wrap(out)
end

function Grammar.from_gbnf(gbnf, root)
  local func = "sibyl_grammar_from_gbnf"
  core.string(gbnf, "gbnf", func)
  if root ~= nil then core.string(root, "root", func) end
  local out = ffi.new("sibyl_grammar*[1]")
  core.check(core.lib.sibyl_grammar_from_gbnf(gbnf, root, out), func)
  return wrap(out)
end

-- The GBNF text a JSON Schema compiles to.
function Grammar.json_schema_to_gbnf(schema)
  local func = "sibyl_json_schema_to_gbnf"
  core.string(schema, "schema (JSON Schema text)", func)
  return core.text_out(func, function(out, cap, len)
    return core.lib.sibyl_json_schema_to_gbnf(schema, out, cap, len)
  end, 4096)
end

-- Compute the masks near the grammar's start for `model` now rather than at first use.
function Grammar:prepare(model, scope)
  local func = "sibyl_grammar_prepare"
  local ptr = core.live(self, Grammar, "grammar", func)
  local Model = require("sibyl.model")
  local m = core.live(model, Model, "model", func)
  local s = core.choice(scope or "answer", options.scopes, "scope", func)
  core.check(core.lib.sibyl_grammar_prepare(ptr, m, s), func)
  return self
end

function Grammar:close()
  core.release(self, Grammar, "grammar", core.lib.sibyl_grammar_destroy)
end

return Grammar
