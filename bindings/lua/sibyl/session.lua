-- A conversation over a model. Every chat and generation is a submitted request read by
-- polling: chat() waits for it (sibyl_request_wait on the library's worker, or this thread
-- runs the model's steps when the model has worker_threads = 0), stream_chat() yields its text
-- as it arrives, submit_chat() hands the request to the caller — a frame loop polls it.
local ffi = require("ffi")
local core = require("sibyl.core")
local errors = require("sibyl.errors")
local options = require("sibyl.options")
local Request = require("sibyl.request")

local Session = {}
Session.__index = Session

function Session.wrap(ptr, model)
  return setmetatable({ _ptr = core.own(ptr, core.lib.sibyl_session_destroy), model = model }, Session)
end

local function live(self, func) return core.live(self, Session, "session", func) end

-- ---------------------------------------------------------------- requests

function Session:submit_chat(messages, opts)
  local func = "sibyl_session_submit_chat"
  local ptr = live(self, func)
  local anchors = {}
  local msgs, n, calls, trusted = options.messages(messages, anchors, func)
  local o = options.chat(opts, calls, trusted, anchors, func)
  local out = ffi.new("sibyl_request*[1]")
  core.check(core.lib.sibyl_session_submit_chat(ptr, msgs, n, o, nil, out), func)
  return Request.wrap(out[0], self, self.model, "chat")
end

function Session:submit_generate(tokens, opts)
  local func = "sibyl_session_submit_generate"
  local ptr = live(self, func)
  local anchors = {}
  local arr, n = core.int32_array(tokens or {}, "tokens", func)
  local o = options.generate(opts, anchors, func)
  local out = ffi.new("sibyl_request*[1]")
  core.check(core.lib.sibyl_session_submit_generate(ptr, arr, n, o, nil, out), func)
  return Request.wrap(out[0], self, self.model, "generate")
end

-- ---------------------------------------------------------------- replies from events

local function new_reply()
  return { _reasoning = {}, _answer = {}, tool_calls = {}, tokens = {} }
end

local function absorb(reply, e)
  if e.type == "text" then
    local parts = e.channel == "answer" and reply._answer or reply._reasoning
    parts[#parts + 1] = e.text
  elseif e.type == "token" then
    reply.tokens[#reply.tokens + 1] = e.token
  elseif e.type == "tool_call" then
    reply.tool_calls[#reply.tool_calls + 1] = { name = e.name, arguments = e.arguments }
  end
end

-- The finished reply: text, tool calls, token ids, and the request's counts and timings.
local function finish(reply, request, done)
  reply.reasoning = table.concat(reply._reasoning)
  reply.answer = table.concat(reply._answer)
  reply._reasoning, reply._answer = nil, nil
  for k, v in pairs(request:result()) do reply[k] = v end
  reply.stop_reason = done.stop_reason
  return reply
end

local function done_error(request, done)
  local func = request.kind == "chat" and "sibyl_session_chat" or "sibyl_session_generate"
  return errors.new(done.status, done.code, done.message, func)
end

-- Run `request` to its end, collecting its events; the request is closed either way.
local function collect(request)
  local reply = new_reply()
  local ok, err = pcall(function()
    while true do
      local e = request:next_event()
      absorb(reply, e)
      if e.type == "done" then
        if e.status ~= "ok" then error(done_error(request, e), 0) end
        finish(reply, request, e)
        return
      end
    end
  end)
  request:close()
  if not ok then error(err, 0) end
  return reply
end

-- Blocking chat: {reasoning, answer, stop_reason, tool_calls = {{name, arguments}}, tokens,
-- prompt_tokens, reused_tokens, reasoning_tokens, answer_tokens, ..., total_us}.
function Session:chat(messages, opts)
  live(self, "sibyl_session_chat")
  return collect(self:submit_chat(messages, opts))
end

-- Blocking generation: the generated token ids and the request's counts ({tokens = {...}, ...}).
function Session:generate(tokens, opts)
  live(self, "sibyl_session_generate")
  return collect(self:submit_generate(tokens, opts))
end

-- ---------------------------------------------------------------- streaming

-- `for channel, text, name in session:stream_chat(messages, opts) do ... end`: channel is
-- "reasoning", "answer" or "tool_call" (text = the arguments JSON, name = the tool). After the
-- loop, stream.reply is the whole reply as chat() returns it. Leaving the loop early: call
-- stream:close() (cancels the reply; the session is free again when it returns).
local Stream = {}
Stream.__index = Stream

function Stream.__call(self)
  if self.reply.answer or not self._request then return nil end
  local request = self._request
  while true do
    local ok, e = pcall(request.next_event, request)
    if not ok then
      self:close()
      error(e, 0)
    end
    absorb(self.reply, e)
    if e.type == "text" then
      return e.channel, e.text
    elseif e.type == "tool_call" then
      return "tool_call", e.arguments, e.name
    elseif e.type == "done" then
      self._request = nil
      if e.status ~= "ok" then
        request:close()
        error(done_error(request, e), 0)
      end
      finish(self.reply, request, e)
      request:close()
      return nil
    end
  end
end

-- Cancel an unfinished stream and wait for its end (at most one model step).
function Stream:close()
  local request = self._request
  if not request then return end
  self._request = nil
  pcall(function()
    request:cancel()
    while not request.done do request:next_event() end
  end)
  request:close()
end

function Session:stream_chat(messages, opts)
  local request = self:submit_chat(messages, opts)
  return setmetatable({ _request = request, reply = new_reply() }, Stream)
end

-- ---------------------------------------------------------------- state and tokens

-- The session's whole state as a Lua string (tokens, cache rows, RNG), for load_state here or
-- in another process with the same model file.
function Session:save_state()
  local func = "sibyl_session_save_state"
  local ptr = live(self, func)
  local size = ffi.new("size_t[1]")
  local st = core.lib.sibyl_session_save_state(ptr, nil, 0, size)
  if st ~= 0 and st ~= 13 then core.check(st, func) end
  local cap = tonumber(size[0])
  local buf = ffi.new("uint8_t[?]", math.max(cap, 1))
  core.check(core.lib.sibyl_session_save_state(ptr, buf, cap, size), func)
  return ffi.string(buf, size[0])
end

function Session:load_state(data)
  local func = "sibyl_session_load_state"
  local ptr = live(self, func)
  core.string(data, "state", func)
  core.check(core.lib.sibyl_session_load_state(ptr, data, #data), func)
  return self
end

function Session:position()
  local func = "sibyl_session_position"
  local out = ffi.new("size_t[1]")
  core.check(core.lib.sibyl_session_position(live(self, func), out), func)
  return tonumber(out[0])
end

function Session:rewind(position)
  local func = "sibyl_session_rewind"
  local ptr = live(self, func)
  core.check(core.lib.sibyl_session_rewind(ptr, core.integer(position, "position", func, 0)), func)
  return self
end

function Session:reset()
  local func = "sibyl_session_reset"
  core.check(core.lib.sibyl_session_reset(live(self, func)), func)
  return self
end

function Session:set_seed(seed)
  local func = "sibyl_session_set_seed"
  local ptr = live(self, func)
  core.check(core.lib.sibyl_session_set_seed(ptr, core.uint64(seed, "seed", func)), func)
  return self
end

-- A new session continuing from this one (shares cache pages copy-on-write).
function Session:fork()
  local func = "sibyl_session_fork"
  local out = ffi.new("sibyl_session*[1]")
  core.check(core.lib.sibyl_session_fork(live(self, func), out), func)
  return Session.wrap(out[0], self.model)
end

-- Cancel what runs on the session (a request submitted on it); no effect when idle.
function Session:cancel()
  local func = "sibyl_session_cancel"
  core.check(core.lib.sibyl_session_cancel(live(self, func)), func)
end

local LOGITS = { last = 0, all = 1, none = 2 }

-- Run the model over more tokens (blocking); `logits` "last" (default), "all" or "none".
function Session:append(tokens, logits)
  local func = "sibyl_session_append"
  local ptr = live(self, func)
  local arr, n = core.int32_array(tokens, "tokens", func)
  local mode = core.choice(logits or "last", LOGITS, "logits", func)
  core.check(core.lib.sibyl_session_append(ptr, arr, n, mode), func)
  return self
end

-- Pick a token from the last logits without appending it (sampler keys as in chat options).
function Session:sample(opts)
  local func = "sibyl_session_sample"
  local ptr = live(self, func)
  local anchors = {}
  local s = options.sample(opts, anchors, func)
  local out = ffi.new("int32_t[1]")
  core.check(core.lib.sibyl_session_sample(ptr, s, out), func)
  return out[0]
end

-- Destroy the session now (a request still running on it is cancelled). Idempotent.
function Session:close()
  core.release(self, Session, "session", core.lib.sibyl_session_destroy)
end

return Session
