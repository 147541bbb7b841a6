-- Sibyl villagers: a LÖVE 11 game whose villagers think with the embedded reasoning model
-- through the LuaJIT binding (bindings/lua), without ever waiting for it: each villager's
-- request is submitted once and polled every frame in love.update, while the library's worker
-- thread does the thinking. Run (from the repository root):
--   SIBYL_LIBRARY=build/release/capi/libsibyl.so love samples/love-npc
-- Headless check (CI): love samples/love-npc --ci SECONDS [--out FILE.json] [--screenshot FILE.png]
--   runs SECONDS, prints the frame-time figures as one JSON line (and writes --out), saves a
--   screenshot, and exits 1 when no answer arrived, a request failed, or the frame time did
--   not hold (p99 frame interval over --max-p99-ms, default 50).
-- Other flags: --villagers N (default 5), --model PATH (default: the embedded tiny-reasoner).

-- The binding, from the repository (bindings/lua) or wherever package.path already finds it.
package.path = love.filesystem.getSource() .. "/../../bindings/lua/?.lua;" .. package.path

local framestats = require("framestats")
local render = require("render")
local Village = require("village")

local FRAME_S = 1 / 60
local opts = { villagers = 5, max_p99_ms = 50 }
local sibyl, model, village, info
local stats = framestats.new()
local ci = { started = nil, shot_at = nil, shot_done = false, finished = false }

local function parse_args(args)
  local i = 1
  while i <= #args do
    local a, v = args[i], args[i + 1]
    if a == "--ci" then opts.ci = tonumber(v); i = i + 1
    elseif a == "--out" then opts.out = v; i = i + 1
    elseif a == "--screenshot" then opts.screenshot = v; i = i + 1
    elseif a == "--villagers" then opts.villagers = tonumber(v); i = i + 1
    elseif a == "--model" then opts.model = v; i = i + 1
    elseif a == "--max-p99-ms" then opts.max_p99_ms = tonumber(v); i = i + 1
    end
    i = i + 1
  end
  opts.ci = opts.ci or tonumber(os.getenv("SIBYL_LOVE_CI") or "")
end

-- In CI an error must end the run with a message and a failing status, not wait on LÖVE's
-- error screen for a key press that never comes.
local function ci_errorhandler(message)
  io.stderr:write("love-npc: error: ", tostring(message), "\n", debug.traceback(), "\n")
  return function() return 1 end
end

function love.load(args)
  parse_args(args)
  if opts.ci then love.errorhandler = ci_errorhandler end
  if not opts.villagers or opts.villagers < 1 or opts.villagers > 6 then
    error("--villagers must be 1 to 6", 0)
  end
  sibyl = require("sibyl")
  model = sibyl.Model(opts.model)  -- default options: one library worker thread runs requests
  local i = model:info()
  info = { model = opts.model and opts.model:match("[^/]+$") or "tiny-reasoner", backend = i.backend,
           worker_threads = i.worker_threads }
  village = Village.new(model, opts.villagers)
  render.load()
  love.math.setRandomSeed(opts.ci and 1 or os.time())
end

local function finish_ci(now)
  local s = stats:summary()
  local held = s.interval.p99 <= opts.max_p99_ms
  local ok = held and village.answers > 0 and village.errors == 0
  local json = framestats.json({
    frames = s.frames, seconds = now - ci.started, mean_ms = s.interval.mean, p50_ms = s.interval.p50,
    p99_ms = s.interval.p99, max_ms = s.interval.max, over_33ms = s.over_33ms,
    work_mean_ms = s.work.mean, work_p99_ms = s.work.p99, villagers = #village.villagers,
    questions = village.asked, answers = village.answers, correct = village.correct,
    errors = village.errors, backend = info.backend, worker_threads = info.worker_threads,
    max_p99_ms = opts.max_p99_ms, held = held, ok = ok,
  }, { "frames", "seconds", "mean_ms", "p50_ms", "p99_ms", "max_ms", "over_33ms", "work_mean_ms",
       "work_p99_ms", "villagers", "questions", "answers", "correct", "errors", "backend",
       "worker_threads", "max_p99_ms", "held", "ok" })
  print(json)
  if opts.out then
    local f = assert(io.open(opts.out, "w"))
    f:write(json, "\n")
    f:close()
  end
  if village.last_error then io.stderr:write("love-npc: last request error: ", village.last_error, "\n") end
  return ok
end

-- CI: frames are measured from WARMUP_S (window mapping, first glyphs) to --ci seconds; then
-- the figures freeze, the screenshot is taken (its PNG encoding is not a measured frame), the
-- JSON is written and the game exits.
local WARMUP_S = 0.5
local function update_ci()
  local now = love.timer.getTime()
  ci.started = ci.started or now
  local t = now - ci.started
  stats.recording = t >= WARMUP_S and t < opts.ci
  -- The screenshot waits (up to 2 s) for a villager in mid-thought, to show the streaming.
  if t >= opts.ci and not ci.shot_at and (Village.someone_thinking(village) or t >= opts.ci + 2) then
    ci.shot_at = now
    love.graphics.captureScreenshot(function(image)
      if opts.screenshot then
        local f = assert(io.open(opts.screenshot, "wb"))
        f:write(image:encode("png"):getString())
        f:close()
      end
      ci.shot_done = true
    end)
  elseif ci.shot_done and not ci.finished then
    ci.finished = true
    love.event.quit(finish_ci(ci.shot_at) and 0 or 1)
  end
end

function love.update(dt)
  Village.update(village, dt)
  if opts.ci then update_ci() end
end

function love.draw()
  render.draw(village, stats, info)
end

function love.keypressed(key)
  if key == "escape" then love.event.quit(0) end
end

function love.quit()
  -- Deterministic release: requests, sessions, then the model (its worker thread joins here).
  if village then Village.close(village) end
  if model then model:close() end
end

-- The main loop, paced at 60 Hz by sleeping to the next frame's deadline (vsync is off so
-- pacing does not depend on the display). Records each frame's interval and the main thread's
-- work (events, update, draw — not the sleep nor the buffer swap).
function love.run()
  love.load(love.arg.parseGameArguments(arg), arg)
  love.timer.step()
  local next_frame = love.timer.getTime()
  local last = next_frame
  return function()
    love.event.pump()
    for name, a, b, c, d, e, f in love.event.poll() do
      if name == "quit" and not (love.quit and love.quit()) then return a or 0 end
      love.handlers[name](a, b, c, d, e, f)
    end
    local start = love.timer.getTime()
    local dt = love.timer.step()
    love.update(dt)
    if love.graphics.isActive() then
      love.graphics.origin()
      love.graphics.clear(love.graphics.getBackgroundColor())
      love.draw()
      local work = love.timer.getTime() - start
      love.graphics.present()
      local now = love.timer.getTime()
      stats:add(now - last, work)
      last = now
    end
    next_frame = next_frame + FRAME_S
    local wait = next_frame - love.timer.getTime()
    if wait > 0 then love.timer.sleep(wait) else next_frame = love.timer.getTime() end
  end
end
