-- The villagers: each owns a session on the shared model, asks a question, and its request is
-- polled once per frame (poll() never blocks; the library's worker thread does the thinking).
-- States: resting → thinking (reasoning streams) → answering → showing the answer → resting.
local questions = require("questions")

local M = {}

-- Seller names the model saw in training (the shop questions use the asker as the seller).
local NAMES = { "Mira", "Tobin", "Lysa", "Bram", "Corin", "Nell" }
local COLORS = {
  { 0.90, 0.45, 0.35 }, { 0.40, 0.65, 0.90 }, { 0.55, 0.80, 0.45 },
  { 0.85, 0.70, 0.35 }, { 0.70, 0.50, 0.85 }, { 0.40, 0.80, 0.75 },
}
local SHOW_ANSWER_S = 2.5

function M.new(model, n)
  local village = { model = model, villagers = {}, asked = 0, answers = 0, correct = 0, errors = 0,
                    events = 0, last_error = nil }
  for i = 1, n do
    village.villagers[i] = {
      name = NAMES[(i - 1) % #NAMES + 1], color = COLORS[(i - 1) % #COLORS + 1],
      session = model:session { seed = i }, state = "resting",
      wait = 0.3 * i,  -- staggered first questions
      question = "", reasoning = "", answer = "", expected = nil,
    }
  end
  return village
end

local function ask(village, v)
  v.question, v.expected = questions.next(love.math.random, v.name)
  v.reasoning, v.answer = "", ""
  v.request = v.session:submit_chat(v.question, { max_new_tokens = 300 })  -- returns at once
  v.state = "thinking"
  village.asked = village.asked + 1
end

-- Read everything this villager's request has queued since the last frame.
local function poll(village, v)
  local e = v.request:poll()
  while e do
    village.events = village.events + 1
    if e.type == "text" then
      if e.channel == "reasoning" then
        v.reasoning = v.reasoning .. e.text
      else
        v.answer = v.answer .. e.text
        v.state = "answering"
      end
    elseif e.type == "done" then
      v.request:close()
      v.request = nil
      v.state, v.wait = "showing", SHOW_ANSWER_S
      if e.status == "ok" then
        village.answers = village.answers + 1
        v.right = v.answer:find(v.expected, 1, true) ~= nil
        if v.right then village.correct = village.correct + 1 end
      else
        village.errors = village.errors + 1
        village.last_error = e.status .. ": " .. tostring(e.message)
      end
      return
    end
    e = v.request:poll()
  end
end

function M.update(village, dt)
  for _, v in ipairs(village.villagers) do
    if v.request then
      poll(village, v)
    else
      v.wait = v.wait - dt
      if v.wait <= 0 then
        if v.state == "showing" then v.state, v.wait = "resting", 0.4 + love.math.random() * 0.8
        else ask(village, v) end
      end
    end
  end
end

function M.someone_thinking(village)
  for _, v in ipairs(village.villagers) do
    if v.state == "thinking" and #v.reasoning > 20 then return true end
  end
  return false
end

function M.close(village)
  for _, v in ipairs(village.villagers) do
    if v.request then v.request:close() end
    v.session:close()
  end
end

return M
