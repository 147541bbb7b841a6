-- Sibyl for LuaJIT (and LÖVE 11, which runs LuaJIT): local sibyl = require("sibyl").
-- A thin FFI binding over the C ABI (capi/include/sibyl/sibyl.h, ABI 0.8 or a later 0.x);
-- docs/LUA.md is its guide. Loading it opens libsibyl ($SIBYL_LIBRARY, else next to this file,
-- else the system loader) and refuses a library whose struct layouts differ from the mirrors.
local ffi = require("ffi")

local here = debug.getinfo(1, "S").source
local module_dir = here:sub(1, 1) == "@" and here:sub(2):match("^(.*)[/\\][^/\\]*$") or nil

local cdef = require("sibyl.cdef")
ffi.cdef(cdef)
local lib, library_path = require("sibyl.loader").open(module_dir, cdef)

local core = require("sibyl.core")
core.lib = lib

local errors = require("sibyl.errors")
local Model = require("sibyl.model")
local Session = require("sibyl.session")
local Request = require("sibyl.request")
local Grammar = require("sibyl.grammar")

local sibyl = {
  Model = Model.load,
  grammar_from_json_schema = Grammar.from_json_schema,
  grammar_from_gbnf = Grammar.from_gbnf,
  json_schema_to_gbnf = Grammar.json_schema_to_gbnf,
  Error = errors.Error,
  is_error = errors.is_error,
  classes = { Model = Model, Session = Session, Request = Request, Grammar = Grammar },
  lib = lib,                    -- the raw ffi namespace, for what the binding does not wrap
  library_path = library_path,  -- the path (or name) the library was loaded from
}

function sibyl.version() return ffi.string(lib.sibyl_version_string()) end
function sibyl.abi_version() return lib.sibyl_abi_version() end

-- The directory of the embedded default model (what Model(nil) loads).
function sibyl.default_model_path()
  local func = "sibyl_default_model_path"
  return core.text_out(func, function(out, cap, len) return lib.sibyl_default_model_path(out, cap, len) end, 512)
end

return sibyl
