-- Finding and opening libsibyl: $SIBYL_LIBRARY when it is set (then only there, so a wrong path
-- is an error rather than a quiet fallback to another copy, as $SIBYL_DEFAULT_MODEL is for the
-- model); otherwise the file next to sibyl.lua, then the system loader (ffi.load("sibyl")).
-- Then the ABI version and the struct layouts are checked. Any failure is one Lua error naming
-- everything that was tried.
local ffi = require("ffi")
local layout = require("sibyl.layout")

local M = {}

M.ABI_MIN = 800      -- 0.8.0: the default model, the layout functions
M.ABI_MAJOR_END = 10000

local function file_name()
  if ffi.os == "Windows" then return "sibyl.dll" end
  if ffi.os == "OSX" then return "libsibyl.dylib" end
  return "libsibyl.so"
end

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

-- Candidates in order: { {what = "...", path = "..."} }.
local function candidates(module_dir)
  local list = {}
  local env = os.getenv("SIBYL_LIBRARY")
  if env and env ~= "" then
    return { { what = "$SIBYL_LIBRARY", path = env } }
  end
  local beside = (module_dir or ".") .. "/" .. file_name()
  list[#list + 1] = { what = "next to sibyl.lua", path = beside, only_if_exists = true }
  list[#list + 1] = { what = "the system loader", path = "sibyl" }
  return list
end

-- Returns the library namespace and the path that loaded, or raises naming each attempt.
function M.open(module_dir, cdef_text)
  local tried = {}
  local lib, path
  for _, c in ipairs(candidates(module_dir)) do
    if c.only_if_exists and not exists(c.path) then
      tried[#tried + 1] = string.format("  %s: %s (no such file)", c.what, c.path)
    else
      local ok, result = pcall(ffi.load, c.path)
      if ok then
        lib, path = result, c.path
        break
      end
      tried[#tried + 1] = string.format("  %s: %s (%s)", c.what, c.path, tostring(result))
    end
  end
  if not lib then
    error("sibyl: cannot load the Sibyl library; tried:\n" .. table.concat(tried, "\n") ..
          "\nset SIBYL_LIBRARY to the path of " .. file_name(), 0)
  end

  local ok, abi = pcall(function() return lib.sibyl_abi_version() end)
  if not ok then
    error("sibyl: " .. path .. " is not the Sibyl library (" .. tostring(abi) .. ")", 0)
  end
  if abi < M.ABI_MIN or abi >= M.ABI_MAJOR_END then
    error(string.format("sibyl: %s has ABI %d.%d.%d; this binding needs 0.%d or a later 0.x",
                        path, math.floor(abi / 10000), math.floor(abi / 100) % 100, abi % 100,
                        M.ABI_MIN / 100), 0)
  end

  local problems = layout.problems(lib, layout.structs(cdef_text))
  if #problems > 0 then
    error("sibyl: the struct layouts of " .. path .. " do not match this binding's " ..
          "(sibyl/cdef.lua); refusing to load:\n  " .. table.concat(problems, "\n  "), 0)
  end
  return lib, path
end

return M
