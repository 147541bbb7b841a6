-- Sibyl errors as Lua error values: every failing call raises (error(...)) a table
--   { status = "io", code = 3, message = "...", func = "sibyl_model_load" }
-- `status` is the sibyl_status name without its prefix, lowercased; the binding adds two of its
-- own: "closed" (a handle used after :close()) and "invalid_argument" for a Lua argument of the
-- wrong type (code 1, like the library's own). tostring() gives one readable line.
local ffi = require("ffi")

local M = {}

-- sibyl_status numbers → names (numbers are never reused by the ABI).
M.status_names = {
  [0] = "ok", "invalid_argument", "struct_size", "io", "format", "unsupported", "out_of_memory",
  "invalid_token", "context_full", "model_destroyed", "no_logits", "backend", "internal",
  "buffer_too_small", "busy",
}

local Error = {}
Error.__index = Error
Error.__tostring = function(e)
  return string.format("sibyl: %s: %s [%s]", e.func or "?", e.message, e.status)
end
M.Error = Error

function M.is_error(value)
  return getmetatable(value) == Error
end

function M.new(status, code, message, func)
  return setmetatable({ status = status, code = code, message = message, func = func }, Error)
end

function M.status_name(code)
  return M.status_names[code] or ("status_" .. tostring(code))
end

-- Raise the error of a failed library call. The message is read right away, on this thread,
-- as sibyl_last_error_message requires.
function M.raise(lib, code, func)
  code = tonumber(code)  -- an enum cdata from the call
  local message = ffi.string(lib.sibyl_last_error_message())
  error(M.new(M.status_name(code), code, message, func), 0)
end

-- Raise a binding-side error (wrong Lua argument, closed handle): code 1, as the library
-- gives SIBYL_ERR_INVALID_ARGUMENT for a NULL handle or a bad value.
function M.fail(status, message, func)
  error(M.new(status, 1, message, func), 0)
end

return M
