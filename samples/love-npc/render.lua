-- Drawing: the village green, each villager with its thought bubble (the question, then the
-- reasoning dimmed as it streams, then the answer bright), and a HUD with the frame times.
local M = {}

local QUESTION = { 0.85, 0.85, 0.80 }
local REASONING = { 0.55, 0.57, 0.62 }
local ANSWER = { 1.00, 0.90, 0.35 }
local BUBBLE = { 0.12, 0.13, 0.17, 0.92 }

local font, small

function M.load()
  font = love.graphics.newFont(11)
  small = love.graphics.newFont(10)
end

local function wrap(text, width)
  if text == "" then return {} end
  local _, lines = font:getWrap(text, width)
  return lines
end

-- The bubble's lines: question (≤ 4), answer (≤ 4), and the newest reasoning lines that fit.
local function bubble_lines(v, width, max_lines)
  local q = wrap(v.question, width)
  local a = wrap(v.answer, width)
  while #q > 4 do table.remove(q) end
  while #a > 4 do table.remove(a, 1) end
  local r = wrap(v.reasoning, width)
  local room = max_lines - #q - #a
  while #r > math.max(room, 0) do table.remove(r, 1) end
  local lines = {}
  for _, l in ipairs(q) do lines[#lines + 1] = { QUESTION, l } end
  for _, l in ipairs(r) do lines[#lines + 1] = { REASONING, l } end
  for _, l in ipairs(a) do lines[#lines + 1] = { ANSWER, l } end
  return lines
end

local function draw_villager(v, x, ground)
  local lg = love.graphics
  lg.setColor(0, 0, 0, 0.25)
  lg.ellipse("fill", x, ground + 4, 18, 5)
  lg.setColor(v.color)
  lg.rectangle("fill", x - 12, ground - 34, 24, 34, 6, 6)
  lg.setColor(0.96, 0.84, 0.70)
  lg.circle("fill", x, ground - 44, 11)
  lg.setColor(0.1, 0.1, 0.1)
  local blink = v.state == "thinking" and math.floor(love.timer.getTime() * 3) % 2 == 0
  lg.circle("fill", x - 4, ground - 46, blink and 1 or 1.6)
  lg.circle("fill", x + 4, ground - 46, blink and 1 or 1.6)
  lg.setFont(small)
  lg.setColor(1, 1, 1)
  lg.printf(v.name, x - 40, ground + 10, 80, "center")
  local status = v.state
  if v.state == "showing" then status = v.right and "answered (right)" or "answered" end
  lg.setColor(0.85, 0.95, 0.85, 0.8)
  lg.printf(status, x - 50, ground + 22, 100, "center")
end

local function draw_bubble(v, x, top, bottom, width)
  if v.question == "" then return end
  local lg = love.graphics
  local lh = font:getHeight()
  local max_lines = math.floor((bottom - top - 12) / lh)
  local lines = bubble_lines(v, width - 12, max_lines)
  local h = #lines * lh + 10
  local y = bottom - h
  lg.setColor(BUBBLE)
  lg.rectangle("fill", x - width / 2, y, width, h, 8, 8)
  lg.polygon("fill", x - 7, bottom, x + 7, bottom, x, bottom + 10)
  lg.setFont(font)
  for i, line in ipairs(lines) do
    lg.setColor(line[1])
    lg.print(line[2], x - width / 2 + 6, y + 5 + (i - 1) * lh)
  end
end

local function draw_graph(intervals, x, y, w, h)
  local lg = love.graphics
  lg.setColor(0, 0, 0, 0.35)
  lg.rectangle("fill", x, y, w, h)
  local n = #intervals
  local first = math.max(1, n - w + 1)
  for i = first, n do
    local ms = intervals[i]
    local bar = math.min(h, ms / 50 * h)
    if ms > 33.3 then lg.setColor(1, 0.3, 0.3) elseif ms > 20 then lg.setColor(1, 0.8, 0.3) else lg.setColor(0.4, 0.9, 0.5) end
    lg.rectangle("fill", x + (i - first), y + h - bar, 1, bar)
  end
  lg.setColor(1, 1, 1, 0.4)
  local y60 = y + h - (1000 / 60) / 50 * h
  lg.line(x, y60, x + w, y60)
end

function M.draw(village, stats, info)
  local lg = love.graphics
  local W, H = lg.getDimensions()
  lg.clear(0.36, 0.55, 0.78)
  local ground = H - 70
  lg.setColor(0.30, 0.55, 0.28)
  lg.rectangle("fill", 0, ground - 10, W, H - ground + 10)
  local n = #village.villagers
  local column = W / n
  for i, v in ipairs(village.villagers) do
    local x = column * (i - 0.5)
    draw_bubble(v, x, 58, ground - 70, column - 10)
    draw_villager(v, x, ground)
  end
  local s = stats:summary()
  lg.setFont(font)
  lg.setColor(1, 1, 1)
  lg.print(string.format("%d villagers · %s on %s, %d worker thread%s · answers %d (%d right)%s",
                         n, info.model, info.backend, info.worker_threads, info.worker_threads == 1 and "" or "s",
                         village.answers, village.correct,
                         village.errors > 0 and (" · errors " .. village.errors) or ""), 8, 6)
  lg.print(string.format("frame: mean %.1f ms · p99 %.1f ms · max %.1f ms · over 33 ms: %d · main-thread work %.2f ms",
                         s.interval.mean, s.interval.p99, s.interval.max, s.over_33ms, s.work.mean), 8, 22)
  draw_graph(stats.intervals, W - 128, 6, 120, 30)
end

return M
