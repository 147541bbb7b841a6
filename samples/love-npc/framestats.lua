-- Frame-time figures: every frame's interval (what a player sees) and the main thread's own
-- work (update + draw), as milliseconds; summary() gives mean, p50, p99, max and hitches.
local M = {}
M.__index = M

function M.new() return setmetatable({ intervals = {}, work = {}, recording = true }, M) end

function M:add(interval_s, work_s)
  if not self.recording then return end
  self.intervals[#self.intervals + 1] = interval_s * 1000
  self.work[#self.work + 1] = work_s * 1000
end

local function summarize(values)
  local sorted = {}
  local sum = 0
  for i, v in ipairs(values) do sorted[i] = v; sum = sum + v end
  table.sort(sorted)
  local n = #sorted
  local function pct(p) return n > 0 and sorted[math.max(1, math.ceil(n * p))] or 0 end
  return { mean = n > 0 and sum / n or 0, p50 = pct(0.5), p99 = pct(0.99), max = sorted[n] or 0 }
end

function M:summary()
  local over = 0
  for _, v in ipairs(self.intervals) do if v > 33.3 then over = over + 1 end end
  return { frames = #self.intervals, interval = summarize(self.intervals), work = summarize(self.work),
           over_33ms = over }
end

-- A flat JSON object of numbers, booleans and strings (all this sample writes).
function M.json(fields, order)
  local parts = {}
  for _, k in ipairs(order) do
    local v = fields[k]
    local text
    if type(v) == "number" then
      text = v == math.floor(v) and string.format("%d", v) or string.format("%.3f", v)
    elseif type(v) == "boolean" then
      text = tostring(v)
    else
      text = string.format("%q", tostring(v)):gsub("\\\n", "\\n")
    end
    parts[#parts + 1] = string.format("%q: %s", k, text)
  end
  return "{" .. table.concat(parts, ", ") .. "}"
end

return M
