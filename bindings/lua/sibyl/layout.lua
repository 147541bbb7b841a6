-- The load-time layout check: every struct this binding declares (sibyl/cdef.lua) must have the
-- library's size, the library's fields in the same order, and each at the library's offset
-- (sibyl_struct_size / _offset / _field, ABI 0.8). A mismatch would corrupt memory silently,
-- so sibyl.lua refuses to load instead.
local ffi = require("ffi")

local M = {}

-- The structs of a cdef text: { {name = "sibyl_event", fields = {"struct_size", ...}}, ... }.
-- Reads "typedef struct NAME { decl; decl; ... } NAME;" bodies; a field is the last
-- identifier of its declaration, or the (*name) of a function pointer.
function M.structs(cdef_text)
  local out = {}
  for name, body in cdef_text:gmatch("typedef%s+struct%s+([%w_]+)%s*(%b{})") do
    local fields = {}
    for decl in body:sub(2, -2):gmatch("[^;]+") do
      local field = decl:match("%(%s*%*%s*([%w_]+)%s*%)") or decl:match("([%w_]+)%s*$")
      if field then fields[#fields + 1] = field end
    end
    out[#out + 1] = { name = name, fields = fields }
  end
  return out
end

local function library_fields(lib, name)
  local fields = {}
  for i = 0, 1000 do
    local field = lib.sibyl_struct_field(name, i)
    if field == nil then break end
    fields[#fields + 1] = ffi.string(field)
  end
  return fields
end

-- Problems (a list of strings, empty when the mirrors match) of the declared `structs`
-- against the library. `ctype_of` maps a library struct name to the ffi type mirroring it
-- (default: the same name), so a test can check a deliberately wrong mirror.
function M.problems(lib, structs, ctype_of)
  local problems = {}
  local function add(fmt, ...) problems[#problems + 1] = string.format(fmt, ...) end
  for _, s in ipairs(structs) do
    local ctype = ctype_of and ctype_of[s.name] or s.name
    local before = #problems
    local size = tonumber(lib.sibyl_struct_size(s.name))
    if size == 0 then
      add("%s: the library has no such struct", s.name)
    else
      if ffi.sizeof(ctype) ~= size then
        add("%s: size %d here, %d in the library", s.name, ffi.sizeof(ctype), size)
      end
      local theirs = library_fields(lib, s.name)
      local declared = {}
      for _, f in ipairs(s.fields) do declared[f] = true end
      local known = {}
      for i, f in ipairs(theirs) do
        known[f] = true
        local offset = tonumber(lib.sibyl_struct_offset(s.name, f))
        local mine = declared[f] and ffi.offsetof(ctype, f)
        if not mine then
          add("%s.%s: missing here (the library's field %d)", s.name, f, i)
        elseif mine ~= offset then
          add("%s.%s: offset %d here, %d in the library", s.name, f, mine, offset)
        end
      end
      for _, f in ipairs(s.fields) do
        if not known[f] then add("%s.%s: the library has no such field", s.name, f) end
      end
      if #problems == before and table.concat(s.fields, ",") ~= table.concat(theirs, ",") then
        add("%s: fields in another order than the library's (%s)", s.name, table.concat(theirs, ", "))
      end
    end
  end
  return problems
end

return M
