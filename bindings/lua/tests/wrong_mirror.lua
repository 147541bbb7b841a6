-- Run by test_sibyl.lua in a fresh LuaJIT: sibyl.lua with a wrong sibyl_event mirror (its
-- last field dropped) must refuse to load. Prints the error and exits 0 when it does.
local here = (arg and arg[0] or ""):match("^(.*)[/\\][^/\\]*$") or "."
package.path = here .. "/../?.lua;" .. package.path
local cdef = require("sibyl.cdef")
local wrong, n = cdef:gsub("  const char%* name;\n  size_t name_len;\n} sibyl_event;", "  const char* name;\n} sibyl_event;")
assert(n == 1, "the sibyl_event mirror was not found in sibyl/cdef.lua")
package.loaded["sibyl.cdef"] = wrong
local ok, err = pcall(require, "sibyl")
print(tostring(err))
os.exit(ok and 1 or 0)
