-- A submitted chat or generate request: the game's handle to poll once per frame. Events are
-- always queued by the library and read here with sibyl_request_poll on the caller's thread;
-- the binding never passes a Lua callback to the library, so no library worker thread ever
-- calls into Lua.
local ffi = require("ffi")
local core = require("sibyl.core")
local errors = require("sibyl.errors")

local Request = {}
Request.__index = Request

local EVENT_NONE, EVENT_TOKEN, EVENT_TEXT, EVENT_DONE, EVENT_TOOL_CALL = 0, 1, 2, 3, 4
local CHANNELS = { [0] = "reasoning", [1] = "answer" }
local STOP_REASONS = { [0] = "eos", "max_tokens", "stop_string", "callback", "cancelled", "error" }
Request.stop_reasons = STOP_REASONS

local function destroy(ptr) core.lib.sibyl_request_destroy(ptr) end

-- Wraps a new sibyl_request*. `session` (a Session) and `model` (a Model) are kept referenced
-- so neither is collected while the request may still run.
function Request.wrap(ptr, session, model, kind)
  local event = ffi.new("sibyl_event")
  event.struct_size = ffi.sizeof("sibyl_event")
  return setmetatable({
    _ptr = core.own(ptr, core.lib.sibyl_request_destroy),
    _event = event,
    session = session,
    model = model,
    kind = kind,
    done = false,
  }, Request)
end

-- The next event as a table, or nil when none is queued. Never blocks. Events:
--   {type = "text", channel = "reasoning" | "answer", text = "..."}     (chat)
--   {type = "token", token = id}                                         (every sampled token)
--   {type = "tool_call", name = "...", arguments = "<JSON text>"}        (chat with tools)
--   {type = "done", stop_reason = "eos" | ..., status = "ok" | ..., message = "..." (on error)}
function Request:poll()
  local func = "sibyl_request_poll"
  local ptr = core.live(self, Request, "request", func)
  local ev = self._event
  core.check(core.lib.sibyl_request_poll(ptr, ev), func)
  -- Enum fields read as enum cdata: tonumber() makes them plain numbers.
  local t = tonumber(ev.type)
  if t == EVENT_NONE then
    return nil
  elseif t == EVENT_TEXT then
    return { type = "text", channel = CHANNELS[tonumber(ev.channel)], text = ffi.string(ev.text, ev.text_len) }
  elseif t == EVENT_TOKEN then
    return { type = "token", token = ev.token }
  elseif t == EVENT_TOOL_CALL then
    return { type = "tool_call", name = ffi.string(ev.name, ev.name_len), arguments = ffi.string(ev.text, ev.text_len) }
  elseif t == EVENT_DONE then
    local status = tonumber(ev.status)
    local e = { type = "done", stop_reason = STOP_REASONS[tonumber(ev.stop_reason)], status = errors.status_name(status) }
    if status ~= 0 then
      e.code = status
      e.message = ev.text ~= nil and ffi.string(ev.text) or ""
    end
    self.done = true
    self.stop_reason, self.status, self.message = e.stop_reason, e.status, e.message
    return e
  end
  return { type = "unknown", code = t }  -- an event type newer than this binding
end

-- Block until an event is queued or `timeout_us` passes (nil or -1: no limit); true if ready.
-- For worker threads; a frame loop polls instead.
function Request:wait(timeout_us)
  local func = "sibyl_request_wait"
  local ptr = core.live(self, Request, "request", func)
  local ready = ffi.new("int[1]")
  core.check(core.lib.sibyl_request_wait(ptr, timeout_us or -1, ready), func)
  return ready[0] ~= 0
end

-- Wait for the next event, running the model's steps here when it has no worker threads.
function Request:next_event()
  while true do
    local e = self:poll()
    if e or self.done then return e end
    if self.model._stepping then self.model:step(0) else self:wait(-1) end
  end
end

function Request:cancel()
  local func = "sibyl_request_cancel"
  core.check(core.lib.sibyl_request_cancel(core.live(self, Request, "request", func)), func)
end

local function plain(v) return tonumber(v) end

-- What the request did so far (final after its "done" event).
function Request:result()
  local func = "sibyl_request_result"
  local ptr = core.live(self, Request, "request", func)
  local r = ffi.new("sibyl_chat_result")
  r.struct_size = ffi.sizeof("sibyl_chat_result")
  core.check(core.lib.sibyl_request_result(ptr, r), func)
  return {
    stop_reason = STOP_REASONS[tonumber(r.stop_reason)],
    prompt_tokens = plain(r.prompt_tokens),
    reused_tokens = plain(r.reused_tokens),
    reasoning_tokens = plain(r.reasoning_tokens),
    answer_tokens = plain(r.answer_tokens),
    generated_tokens = plain(r.generated_tokens),
    first_token_us = plain(r.first_token_us),
    total_us = plain(r.total_us),
    drafted_tokens = plain(r.drafted_tokens),
    accepted_drafts = plain(r.accepted_drafts),
    tool_call_count = plain(r.tool_calls),
  }
end

-- Destroy the handle now (cancelling the request if it still runs). Idempotent.
function Request:close()
  core.release(self, Request, "request", destroy)
end

return Request
