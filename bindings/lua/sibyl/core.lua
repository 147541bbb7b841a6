-- Shared by the binding's files: the opened library (set once by sibyl.lua), status checks,
-- handle liveness, argument checks and the library's two-call text outputs.
local ffi = require("ffi")
local errors = require("sibyl.errors")

local M = { lib = nil }

local OK, BUFFER_TOO_SMALL = 0, 13

-- Raise the library's error unless `status` is SIBYL_OK.
function M.check(status, func)
  if status ~= OK then errors.raise(M.lib, status, func) end
end

-- The live C handle of `obj`, an instance of `class` (named `what` in messages); a closed
-- handle or a call with `.` instead of `:` is an error, never a NULL passed to the library.
function M.live(obj, class, what, func)
  if getmetatable(obj) ~= class then
    errors.fail("invalid_argument", "expected a " .. what .. " (call it as " .. what .. ":method(...))", func)
  end
  local ptr = obj._ptr
  if ptr == nil then errors.fail("closed", "the " .. what .. " is closed", func) end
  return ptr
end

-- Take ownership of a new handle: `destroy` runs at :close() or, failing that, at collection.
function M.own(ptr, destroy)
  return ffi.gc(ptr, destroy)
end

-- Release an owned handle now (idempotent: close() twice is fine).
function M.release(obj, class, what, destroy)
  if getmetatable(obj) ~= class then
    M.arg_fail(what .. ":close", "expected a " .. what .. " (call it as " .. what .. ":close())")
  end
  local ptr = obj._ptr
  if ptr ~= nil then
    obj._ptr = nil
    ffi.gc(ptr, nil)
    destroy(ptr)
  end
end

function M.arg_fail(func, message)
  errors.fail("invalid_argument", message, func)
end

function M.integer(value, name, func, lo, hi)
  if type(value) ~= "number" or value ~= math.floor(value) or math.abs(value) == math.huge then
    M.arg_fail(func, name .. " must be an integer, got " .. tostring(value))
  end
  if (lo and value < lo) or (hi and value > hi) then
    M.arg_fail(func, string.format("%s = %s is out of range [%s, %s]", name, tostring(value),
                                   tostring(lo or "-inf"), tostring(hi or "inf")))
  end
  return value
end

function M.number(value, name, func)
  if type(value) ~= "number" then M.arg_fail(func, name .. " must be a number, got " .. tostring(value)) end
  return value
end

function M.string(value, name, func)
  if type(value) ~= "string" then M.arg_fail(func, name .. " must be a string, got " .. type(value)) end
  return value
end

-- One of the names in `choices` ({name = C value}).
function M.choice(value, choices, name, func)
  local v = choices[value]
  if v == nil then
    local names = {}
    for k in pairs(choices) do names[#names + 1] = string.format("%q", k) end
    table.sort(names)
    M.arg_fail(func, name .. " must be one of " .. table.concat(names, ", ") .. ", got " .. tostring(value))
  end
  return v
end

-- Reject option keys the binding does not know (a typo would otherwise be ignored).
function M.known_keys(opts, known, func)
  if opts == nil then return {} end
  if type(opts) ~= "table" then M.arg_fail(func, "options must be a table, got " .. type(opts)) end
  for k in pairs(opts) do
    if not known[k] then M.arg_fail(func, "unknown option '" .. tostring(k) .. "'") end
  end
  return opts
end

-- A library text output (two-call rule): call(out, capacity, out_len) → status; returns the text.
function M.text_out(func, call, guess)
  local len = ffi.new("size_t[1]")
  local cap = guess or 256
  local buf = ffi.new("char[?]", cap)
  local st = call(buf, cap, len)
  if st == BUFFER_TOO_SMALL then
    cap = tonumber(len[0]) + 1
    buf = ffi.new("char[?]", cap)
    st = call(buf, cap, len)
  end
  M.check(st, func)
  return ffi.string(buf, len[0])
end

-- A Lua array of integers as an int32_t array (0-based) and its length.
function M.int32_array(list, name, func)
  if type(list) ~= "table" then M.arg_fail(func, name .. " must be a table of token ids") end
  local n = #list
  local arr = ffi.new("int32_t[?]", n > 0 and n or 1)
  for i = 1, n do
    arr[i - 1] = M.integer(list[i], name .. "[" .. i .. "]", func, -2147483648, 2147483647)
  end
  return arr, n
end

-- uint64 from a non-negative Lua integer (or a uint64_t cdata).
function M.uint64(value, name, func)
  if type(value) == "cdata" then return ffi.cast("uint64_t", value) end
  M.integer(value, name, func, 0)
  return value
end

return M
