-- A loaded model: sessions, tokenizer and chat template, and (worker_threads = 0) the steps
-- the application drives itself.
local ffi = require("ffi")
local core = require("sibyl.core")
local options = require("sibyl.options")
local Session = require("sibyl.session")

local Model = {}
Model.__index = Model

local function live(self, func) return core.live(self, Model, "model", func) end

-- Model(path, opts): path nil = the embedded default model (sibyl_default_model_path).
function Model.load(path, opts)
  local func = "sibyl_model_load"
  if path ~= nil then core.string(path, "path", func) end
  local o = options.model(opts, func)
  local out = ffi.new("sibyl_model*[1]")
  core.check(core.lib.sibyl_model_load(path, o, out), func)
  local self = setmetatable({ _ptr = core.own(out[0], core.lib.sibyl_model_destroy), path = path }, Model)
  -- With no library worker the blocking calls of this binding run the steps themselves.
  self._stepping = self:info().worker_threads == 0
  return self
end

local INFO_FIELDS = {
  "vocab_size", "hidden_size", "n_layers", "n_dense_layers", "n_heads", "q_lora_rank", "kv_lora_rank",
  "qk_rope_head_dim", "n_routed_experts", "n_shared_experts", "n_experts_per_token",
  "max_position_embeddings", "bos_token_id", "eos_token_id", "n_parameters", "kv_bytes_per_token",
  "kv_cache_bytes", "kv_page_tokens", "worker_threads", "kv_cache_bytes_used", "decode_weight_bytes",
  "mtp_layers",
}

function Model:info()
  local func = "sibyl_model_get_info"
  local ptr = live(self, func)
  local info = ffi.new("sibyl_model_info")
  info.struct_size = ffi.sizeof("sibyl_model_info")
  core.check(core.lib.sibyl_model_get_info(ptr, info), func)
  local t = {
    architecture = ffi.string(info.architecture),
    backend = ffi.string(info.backend),
    cpu_simd = info.cpu_simd ~= nil and ffi.string(info.cpu_simd) or "",
    precision = tonumber(info.precision) == 1 and "exact" or "fast",
    mtp = info.mtp ~= 0,
  }
  for _, k in ipairs(INFO_FIELDS) do t[k] = tonumber(info[k]) end
  return t
end

-- model:session{seed = 0, max_context = 0}
function Model:session(opts)
  local func = "sibyl_session_create"
  local ptr = live(self, func)
  local o = options.session(opts, func)
  local out = ffi.new("sibyl_session*[1]")
  core.check(core.lib.sibyl_session_create(ptr, o, out), func)
  return Session.wrap(out[0], self)
end

-- Token ids (a Lua list) of `text`, as the model's tokenizer encodes it (no special tokens
-- added; special-token text becomes those tokens).
function Model:tokenize(text)
  local func = "sibyl_model_tokenize"
  local ptr = live(self, func)
  core.string(text, "text", func)
  local n = ffi.new("size_t[1]")
  local cap = #text + 1
  local buf = ffi.new("int32_t[?]", cap)
  local st = core.lib.sibyl_model_tokenize(ptr, text, #text, buf, cap, n)
  if st == 13 then
    cap = tonumber(n[0])
    buf = ffi.new("int32_t[?]", cap)
    st = core.lib.sibyl_model_tokenize(ptr, text, #text, buf, cap, n)
  end
  core.check(st, func)
  local out = {}
  for i = 1, tonumber(n[0]) do out[i] = buf[i - 1] end
  return out
end

function Model:detokenize(tokens)
  local func = "sibyl_model_detokenize"
  local ptr = live(self, func)
  local arr, n = core.int32_array(tokens, "tokens", func)
  return core.text_out(func, function(out, cap, len)
    return core.lib.sibyl_model_detokenize(ptr, arr, n, out, cap, len)
  end, n * 8 + 16)
end

-- The raw bytes of one token (possibly part of a UTF-8 character).
function Model:token_bytes(token)
  local func = "sibyl_model_token_bytes"
  local ptr = live(self, func)
  core.integer(token, "token", func, -2147483648, 2147483647)
  return core.text_out(func, function(out, cap, len)
    return core.lib.sibyl_model_token_bytes(ptr, token, out, cap, len)
  end, 64)
end

-- The prompt text the chat template makes of `messages` (with `tools` in opts: their
-- definitions; add_generation_prompt defaults to true).
function Model:render_chat(messages, opts)
  local func = "sibyl_model_render_chat_ex"
  local ptr = live(self, func)
  opts = opts or {}
  local anchors = {}
  local msgs, n, calls, trusted = options.messages(messages, anchors, func)
  local add = opts.add_generation_prompt
  local rest = {}
  for k, v in pairs(opts) do if k ~= "add_generation_prompt" then rest[k] = v end end
  local o = options.chat(rest, calls, trusted, anchors, func)
  return core.text_out(func, function(out, cap, len)
    return core.lib.sibyl_model_render_chat_ex(ptr, msgs, n, o, add == false and 0 or 1, out, cap, len)
  end, 1024)
end

-- One batched step of the submitted requests on this thread, sized to about `budget_us`
-- (0: a full step). For models loaded with worker_threads = 0 (a frame loop calls it).
function Model:step(budget_us)
  local func = "sibyl_model_step"
  local ptr = live(self, func)
  local r = ffi.new("sibyl_step_report")
  r.struct_size = ffi.sizeof("sibyl_step_report")
  core.check(core.lib.sibyl_model_step(ptr, core.uint64(budget_us or 0, "budget_us", func), r), func)
  return { rows = tonumber(r.rows), sequences = tonumber(r.sequences), pending = tonumber(r.pending),
           elapsed_us = tonumber(r.elapsed_us), overrun = r.overrun ~= 0 }
end

-- Destroy the model now. Its sessions stay valid handles whose calls fail with
-- "model_destroyed"; their unfinished requests end with that status. Idempotent.
function Model:close()
  core.release(self, Model, "model", core.lib.sibyl_model_destroy)
end

return Model
