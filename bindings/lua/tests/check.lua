-- Small assertion helpers for the binding's plain-Lua tests: each check counts as passed or
-- failed (with its message on stderr) and the run ends with "N passed, N failed".
local M = { passed = 0, failed = 0, section = "" }

local function show(v)
  if type(v) == "string" then return string.format("%q", v) end
  return tostring(v)
end

function M.start(name)
  M.section = name
  io.write("-- ", name, "\n")
end

function M.ok(cond, what)
  if cond then
    M.passed = M.passed + 1
  else
    M.failed = M.failed + 1
    io.stderr:write(string.format("FAIL [%s] %s\n", M.section, what))
  end
  return cond
end

function M.eq(got, want, what)
  return M.ok(got == want, string.format("%s: got %s, want %s", what, show(got), show(want)))
end

function M.list_eq(got, want, what)
  local same = #got == #want
  for i = 1, math.max(#got, #want) do
    if got[i] ~= want[i] then same = false end
  end
  return M.ok(same, string.format("%s: got {%s}, want {%s}", what, table.concat(got, ","), table.concat(want, ",")))
end

-- `fn` must raise a sibyl error whose status is `status` (and message matching `pattern`).
function M.raises(status, pattern, fn, what)
  local ok, err = pcall(fn)
  if ok then return M.ok(false, what .. ": no error raised") end
  local e_status = type(err) == "table" and err.status or nil
  local e_message = type(err) == "table" and err.message or tostring(err)
  local good = e_status == status and (not pattern or tostring(e_message):find(pattern) ~= nil)
  M.ok(good, string.format("%s: got error %s / %s, want %s / %s", what, tostring(e_status), show(e_message),
                           status, tostring(pattern)))
  return err
end

-- Runs `fn` as one section; an unexpected Lua error counts as a failure, not a crash of the run.
function M.section_run(name, fn)
  M.start(name)
  local ok, err = xpcall(fn, function(e) return tostring(e) .. "\n" .. debug.traceback() end)
  if not ok then M.ok(false, "unexpected error: " .. err) end
end

function M.finish()
  print(string.format("%d passed, %d failed", M.passed, M.failed))
  os.exit(M.failed == 0 and 0 or 1)
end

return M
