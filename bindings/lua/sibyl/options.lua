-- Lua option tables → the library's options structs. Strings and arrays the structs point to
-- are kept in an `anchors` table the caller holds until the call returns (the library copies
-- what it needs at submit: text, tools, grammar references, logit biases).
local ffi = require("ffi")
local core = require("sibyl.core")

local M = {}
local lib = function() return core.lib end

local INT32_MAX, UINT32_MAX = 2147483647, 4294967295

M.backends = { auto = 0, cpu = 1, cuda = 2, vulkan = 3 }
M.precisions = { fast = 0, exact = 1 }
M.scopes = { answer = 0, whole = 1 }
M.tool_choices = { auto = 0, none = 1, required = 2 }

local MODEL_KEYS = {
  backend = true, threads = true, device = true, memory_budget = true, kv_cache_bytes = true,
  kv_page_tokens = true, worker_threads = true, worker_nice = true, worker_cpu_mask = true,
  step_tokens = true, precision = true, mtp = true, mtp_max_batch = true,
}

function M.model(opts, func)
  opts = core.known_keys(opts, MODEL_KEYS, func)
  local o = ffi.new("sibyl_model_options")
  lib().sibyl_model_options_init(o)
  if opts.backend ~= nil then o.backend = core.choice(opts.backend, M.backends, "backend", func) end
  if opts.threads ~= nil then o.n_threads = core.integer(opts.threads, "threads", func, 0, INT32_MAX) end
  if opts.device ~= nil then o.device_index = core.integer(opts.device, "device", func, 0, INT32_MAX) end
  if opts.memory_budget ~= nil then o.memory_budget = core.uint64(opts.memory_budget, "memory_budget", func) end
  if opts.kv_cache_bytes ~= nil then o.kv_cache_bytes = core.uint64(opts.kv_cache_bytes, "kv_cache_bytes", func) end
  if opts.kv_page_tokens ~= nil then
    o.kv_page_tokens = core.integer(opts.kv_page_tokens, "kv_page_tokens", func, 0, UINT32_MAX)
  end
  if opts.worker_threads ~= nil then
    o.worker_threads = core.integer(opts.worker_threads, "worker_threads", func, -1, INT32_MAX)
  end
  if opts.worker_nice ~= nil then o.worker_nice = core.integer(opts.worker_nice, "worker_nice", func, -20, 19) end
  if opts.worker_cpu_mask ~= nil then
    o.worker_cpu_mask = core.uint64(opts.worker_cpu_mask, "worker_cpu_mask", func)
  end
  if opts.step_tokens ~= nil then o.step_tokens = core.integer(opts.step_tokens, "step_tokens", func, 0, UINT32_MAX) end
  if opts.precision ~= nil then o.precision = core.choice(opts.precision, M.precisions, "precision", func) end
  if opts.mtp ~= nil then o.mtp = opts.mtp and 1 or 0 end
  if opts.mtp_max_batch ~= nil then
    o.mtp_max_batch = core.integer(opts.mtp_max_batch, "mtp_max_batch", func, 0, UINT32_MAX)
  end
  return o
end

local SESSION_KEYS = { seed = true, max_context = true }

function M.session(opts, func)
  opts = core.known_keys(opts, SESSION_KEYS, func)
  local o = ffi.new("sibyl_session_options")
  lib().sibyl_session_options_init(o)
  if opts.seed ~= nil then o.seed = core.uint64(opts.seed, "seed", func) end
  if opts.max_context ~= nil then o.max_context = core.integer(opts.max_context, "max_context", func, 0, UINT32_MAX) end
  return o
end

-- Sampler keys, shared by chat and generate options (flat: {temperature = 0.7, top_k = 40}).
local SAMPLER_KEYS = {
  temperature = true, top_k = true, top_p = true, min_p = true, repetition_penalty = true,
  repetition_last_n = true, logit_bias = true,
}

-- A sampler struct when any sampler key is set, else nil (the library's default: greedy).
function M.sampler(opts, anchors, func)
  local any = false
  for k in pairs(SAMPLER_KEYS) do if opts[k] ~= nil then any = true end end
  if not any then return nil end
  local s = ffi.new("sibyl_sampler_options")
  lib().sibyl_sampler_options_init(s)
  if opts.temperature ~= nil then s.temperature = core.number(opts.temperature, "temperature", func) end
  if opts.top_k ~= nil then s.top_k = core.integer(opts.top_k, "top_k", func, 0, INT32_MAX) end
  if opts.top_p ~= nil then s.top_p = core.number(opts.top_p, "top_p", func) end
  if opts.min_p ~= nil then s.min_p = core.number(opts.min_p, "min_p", func) end
  if opts.repetition_penalty ~= nil then
    s.repetition_penalty = core.number(opts.repetition_penalty, "repetition_penalty", func)
  end
  if opts.repetition_last_n ~= nil then
    s.repetition_last_n = core.integer(opts.repetition_last_n, "repetition_last_n", func, 0, INT32_MAX)
  end
  if opts.logit_bias ~= nil then
    -- {[token id] = bias}; -math.huge bans the token.
    if type(opts.logit_bias) ~= "table" then core.arg_fail(func, "logit_bias must be a table {[token] = bias}") end
    local tokens = {}
    for token in pairs(opts.logit_bias) do tokens[#tokens + 1] = token end
    table.sort(tokens, function(a, b) return tostring(a) < tostring(b) end)
    local arr = ffi.new("sibyl_logit_bias[?]", math.max(#tokens, 1))
    for i, token in ipairs(tokens) do
      arr[i - 1].token = core.integer(token, "logit_bias token", func, -2147483648, INT32_MAX)
      arr[i - 1].bias = core.number(opts.logit_bias[token], "logit_bias[" .. tostring(token) .. "]", func)
    end
    anchors[#anchors + 1] = arr
    s.logit_bias = arr
    s.n_logit_bias = #tokens
  end
  anchors[#anchors + 1] = s
  return s
end

local function grammar_ptr(g, func)
  local Grammar = require("sibyl.grammar")
  return core.live(g, Grammar, "grammar", func)
end

-- Messages: a string (one user turn) or a list of {role = ..., content = ..., trusted = bool,
-- tool_calls = {{name = ..., arguments = json}, ...} (assistant turns that called tools)}.
-- Returns the message array, its length, and the tool-call history and trusted flags (or nil).
function M.messages(messages, anchors, func)
  if type(messages) == "string" then messages = { { role = "user", content = messages } } end
  if type(messages) ~= "table" or #messages == 0 then
    core.arg_fail(func, "messages must be a non-empty list of {role = ..., content = ...} (or a string)")
  end
  local n = #messages
  local arr = ffi.new("sibyl_chat_message[?]", n)
  anchors[#anchors + 1] = arr
  local calls, trusted = {}, nil
  for i, m in ipairs(messages) do
    if type(m) ~= "table" then core.arg_fail(func, "messages[" .. i .. "] must be a table") end
    local role = core.string(m.role, "messages[" .. i .. "].role", func)
    local content = m.content or ""
    core.string(content, "messages[" .. i .. "].content", func)
    anchors[#anchors + 1] = role
    anchors[#anchors + 1] = content
    arr[i - 1].role = role
    arr[i - 1].content = content
    arr[i - 1].content_len = #content
    if m.trusted then
      trusted = trusted or {}
      trusted[i] = true
    end
    if m.tool_calls ~= nil then
      if type(m.tool_calls) ~= "table" then core.arg_fail(func, "messages[" .. i .. "].tool_calls must be a list") end
      for j, c in ipairs(m.tool_calls) do
        local where = "messages[" .. i .. "].tool_calls[" .. j .. "]"
        if type(c) ~= "table" then core.arg_fail(func, where .. " must be {name = ..., arguments = ...}") end
        calls[#calls + 1] = { message = i - 1, name = core.string(c.name, where .. ".name", func),
                              arguments = core.string(c.arguments or "{}", where .. ".arguments", func) }
      end
    end
  end
  local flags
  if trusted then
    flags = ffi.new("int32_t[?]", n)
    for i = 1, n do flags[i - 1] = trusted[i] and 1 or 0 end
    anchors[#anchors + 1] = flags
  end
  return arr, n, calls, flags
end

local function tools_array(tools, anchors, func)
  if type(tools) ~= "table" then core.arg_fail(func, "tools must be a list of {name = ..., parameters = ...}") end
  local arr = ffi.new("sibyl_tool[?]", math.max(#tools, 1))
  anchors[#anchors + 1] = arr
  for i, t in ipairs(tools) do
    local where = "tools[" .. i .. "]"
    if type(t) ~= "table" then core.arg_fail(func, where .. " must be a table") end
    arr[i - 1].name = core.string(t.name, where .. ".name", func)
    anchors[#anchors + 1] = t.name
    if t.description ~= nil then
      arr[i - 1].description = core.string(t.description, where .. ".description", func)
      anchors[#anchors + 1] = t.description
    end
    if t.parameters ~= nil then
      -- JSON Schema text of the arguments (the binding does not encode JSON).
      arr[i - 1].parameters = core.string(t.parameters, where .. ".parameters (JSON Schema text)", func)
      anchors[#anchors + 1] = t.parameters
    end
  end
  return arr, #tools
end

local CHAT_KEYS = {
  max_new_tokens = true, think_budget = true, thinking = true, stop = true, seed = true, grammar = true,
  grammar_scope = true, tools = true, tool_choice = true, tool_name = true,
}
for k in pairs(SAMPLER_KEYS) do CHAT_KEYS[k] = true end
M.CHAT_KEYS = CHAT_KEYS

-- Chat options for `messages` (already converted: its tool-call history and trusted flags).
function M.chat(opts, calls, trusted, anchors, func, keys)
  opts = core.known_keys(opts, keys or CHAT_KEYS, func)
  local o = ffi.new("sibyl_chat_options")
  lib().sibyl_chat_options_init(o)
  anchors[#anchors + 1] = o
  if opts.max_new_tokens ~= nil then
    o.max_new_tokens = core.integer(opts.max_new_tokens, "max_new_tokens", func, 0, UINT32_MAX)
  end
  if opts.think_budget ~= nil then o.think_budget = core.integer(opts.think_budget, "think_budget", func, -1, INT32_MAX) end
  if opts.thinking ~= nil then o.thinking = opts.thinking and 1 or 0 end
  if opts.stop ~= nil then
    local stop = type(opts.stop) == "string" and { opts.stop } or opts.stop
    if type(stop) ~= "table" then core.arg_fail(func, "stop must be a string or a list of strings") end
    local arr = ffi.new("const char*[?]", math.max(#stop, 1))
    for i, s in ipairs(stop) do
      arr[i - 1] = core.string(s, "stop[" .. i .. "]", func)
      anchors[#anchors + 1] = s
    end
    anchors[#anchors + 1] = arr
    o.stop_strings = arr
    o.n_stop_strings = #stop
  end
  local sampler = M.sampler(opts, anchors, func)
  if sampler then o.sampler = sampler end
  if opts.seed ~= nil then
    o.reseed = 1
    o.seed = core.uint64(opts.seed, "seed", func)
  end
  if trusted then o.trusted = trusted end
  if opts.grammar ~= nil then o.grammar = grammar_ptr(opts.grammar, func) end
  if opts.grammar_scope ~= nil then
    o.grammar_scope = core.choice(opts.grammar_scope, M.scopes, "grammar_scope", func)
  end
  if opts.tools ~= nil then
    o.tools, o.n_tools = tools_array(opts.tools, anchors, func)
  end
  if opts.tool_choice ~= nil then
    o.tool_choice = core.choice(opts.tool_choice, M.tool_choices, "tool_choice", func)
  end
  if opts.tool_name ~= nil then
    o.tool_name = core.string(opts.tool_name, "tool_name", func)
    anchors[#anchors + 1] = opts.tool_name
  end
  if calls and #calls > 0 then
    local arr = ffi.new("sibyl_tool_call[?]", #calls)
    for i, c in ipairs(calls) do
      arr[i - 1].message = c.message
      arr[i - 1].name = c.name
      arr[i - 1].arguments = c.arguments
      anchors[#anchors + 1] = c.name
      anchors[#anchors + 1] = c.arguments
    end
    anchors[#anchors + 1] = arr
    o.tool_calls = arr
    o.n_tool_calls = #calls
  end
  return o
end

local GENERATE_KEYS = { max_new_tokens = true, stop_at_eos = true, seed = true, grammar = true }
for k in pairs(SAMPLER_KEYS) do GENERATE_KEYS[k] = true end

function M.generate(opts, anchors, func)
  opts = core.known_keys(opts, GENERATE_KEYS, func)
  local o = ffi.new("sibyl_generate_options")
  lib().sibyl_generate_options_init(o)
  anchors[#anchors + 1] = o
  if opts.max_new_tokens ~= nil then
    o.max_new_tokens = core.integer(opts.max_new_tokens, "max_new_tokens", func, 0, UINT32_MAX)
  end
  if opts.stop_at_eos ~= nil then o.stop_at_eos = opts.stop_at_eos and 1 or 0 end
  if opts.seed ~= nil then
    o.reseed = 1
    o.seed = core.uint64(opts.seed, "seed", func)
  end
  local sampler = M.sampler(opts, anchors, func)
  if sampler then o.sampler = sampler end
  if opts.grammar ~= nil then o.grammar = grammar_ptr(opts.grammar, func) end
  return o
end

-- A standalone sampler struct for session:sample (nil options = greedy).
local SAMPLE_KEYS = {}
for k in pairs(SAMPLER_KEYS) do SAMPLE_KEYS[k] = true end
function M.sample(opts, anchors, func)
  opts = core.known_keys(opts, SAMPLE_KEYS, func)
  return M.sampler(opts, anchors, func)
end

return M
