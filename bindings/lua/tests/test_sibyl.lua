-- The Lua binding's tests (run by CTest as lua_binding; by hand:
--   SIBYL_LIBRARY=build/release/capi/libsibyl.so luajit bindings/lua/tests/test_sibyl.lua).
-- Against the embedded tiny-reasoner's reference outputs (eval.public.json, read with lua-cjson):
-- blocking, streamed and polled chats reproduce them; save/load, cancel, tokenizer, grammars,
-- sampler, errors and the load-time layout check. Tool calls need a model whose template has
-- them: $SIBYL_TOOL_MODEL (CTest passes the tool-v3 pack the C tests write).
local here = (arg and arg[0] or ""):match("^(.*)[/\\][^/\\]*$") or "."
package.path = here .. "/../?.lua;" .. here .. "/?.lua;" .. package.path
local root = os.getenv("SIBYL_SOURCE_DIR") or (here .. "/../../..")
local luajit = arg and arg[-1] or "luajit"

local check = require("check")
local ffi = require("ffi")
local sibyl = require("sibyl")
local cjson = require("cjson")

local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

local EOS_TEXT = "<｜end▁of▁sentence｜>"

-- 20 reference problems spread over the file: question, prompt/output ids, reasoning, answer.
local eval = cjson.decode(read(root .. "/models/tiny-reasoner/eval.public.json"))
local cases = {}
for i = 1, #eval.results, math.floor(#eval.results / 20) do
  local r = eval.results[i]
  local think_at = r.output_text:find("</think>", 1, true)
  cases[#cases + 1] = {
    index = i,
    question = r.question,
    prompt_ids = r.prompt_ids,
    output_ids = r.output_ids,
    output_text = r.output_text,
    reasoning = r.output_text:sub(1, think_at - 1):gsub("\n+$", ""),
    answer = r.output_text:sub(think_at + #"</think>"):gsub("^\n\n", ""):gsub(EOS_TEXT .. "$", ""),
  }
end

local started = os.clock()
local model = sibyl.Model(nil)

check.section_run("module", function()
  check.eq(sibyl.version(), "0.8.0", "version")
  check.ok(sibyl.abi_version() >= 800, "abi_version >= 0.8")
  check.ok(sibyl.default_model_path():find("tiny%-reasoner") ~= nil, "default_model_path names tiny-reasoner")
  local info = model:info()
  check.eq(info.architecture, "deepseek_v3", "info.architecture")
  check.eq(info.vocab_size, 1344, "info.vocab_size")
  check.eq(info.worker_threads, 1, "info.worker_threads (default)")
  check.eq(#cases, 20, "cases picked")
end)

check.section_run("tokenizer", function()
  for _, c in ipairs(cases) do
    local prompt = model:render_chat({ { role = "user", content = c.question } })
    check.list_eq(model:tokenize(prompt), c.prompt_ids, "tokenize(render_chat) #" .. c.index)
    check.eq(model:detokenize(c.output_ids), c.output_text, "detokenize #" .. c.index)
  end
  check.eq(model:render_chat("Hi", { add_generation_prompt = false }), "<｜begin▁of▁sentence｜><｜User｜>Hi",
           "render_chat without the generation prompt")
  check.eq(#model:tokenize(""), 0, "tokenize empty")
  local pieces = {}
  for _, id in ipairs(cases[1].output_ids) do pieces[#pieces + 1] = model:token_bytes(id) end
  check.eq(table.concat(pieces), cases[1].output_text, "token_bytes concatenated")
end)

local function expect_reply(reply, c, how)
  check.eq(reply.reasoning, c.reasoning, how .. " reasoning #" .. c.index)
  check.eq(reply.answer, c.answer, how .. " answer #" .. c.index)
  check.eq(reply.stop_reason, "eos", how .. " stop_reason #" .. c.index)
end

check.section_run("blocking chat", function()
  for _, c in ipairs(cases) do
    local session = model:session { seed = 0 }
    local reply = session:chat({ { role = "user", content = c.question } }, { max_new_tokens = 400 })
    expect_reply(reply, c, "chat")
    check.list_eq(reply.tokens, c.output_ids, "chat token ids #" .. c.index)
    check.eq(reply.prompt_tokens + reply.reused_tokens, #c.prompt_ids, "prompt tokens #" .. c.index)
    check.eq(reply.generated_tokens, #c.output_ids, "generated_tokens #" .. c.index)
    session:close()
  end
end)

check.section_run("streamed chat", function()
  local session = model:session()
  for _, c in ipairs(cases) do
    local parts, channels = { reasoning = {}, answer = {} }, 0
    local stream = session:stream_chat(c.question, { max_new_tokens = 400 })
    for channel, text in stream do
      parts[channel][#parts[channel] + 1] = text
      channels = channels + 1
    end
    check.ok(channels > 2, "several stream pieces #" .. c.index)
    expect_reply({ reasoning = table.concat(parts.reasoning), answer = table.concat(parts.answer),
                   stop_reason = stream.reply.stop_reason }, c, "stream")
    expect_reply(stream.reply, c, "stream.reply")
  end
end)

check.section_run("submit and poll (20 at once)", function()
  local live = {}
  for _, c in ipairs(cases) do
    local session = model:session()
    live[#live + 1] = { case = c, session = session, request = session:submit_chat(c.question),
                        reasoning = {}, answer = {}, tokens = {} }
  end
  local pending, polls = #live, 0
  while pending > 0 do
    local progressed = false
    for _, v in ipairs(live) do
      while v.request and not v.done do
        local e = v.request:poll()
        polls = polls + 1
        if not e then break end
        progressed = true
        if e.type == "text" then
          local parts = v[e.channel]
          parts[#parts + 1] = e.text
        elseif e.type == "token" then
          v.tokens[#v.tokens + 1] = e.token
        elseif e.type == "done" then
          v.done, v.stop_reason, v.status = true, e.stop_reason, e.status
          v.result = v.request:result()
          v.request:close()
          pending = pending - 1
        end
      end
    end
    if not progressed then
      for _, v in ipairs(live) do
        if not v.done then v.request:wait(2000) break end
      end
    end
  end
  for _, v in ipairs(live) do
    check.eq(v.status, "ok", "polled status #" .. v.case.index)
    expect_reply({ reasoning = table.concat(v.reasoning), answer = table.concat(v.answer), stop_reason = v.stop_reason },
                 v.case, "polled")
    check.list_eq(v.tokens, v.case.output_ids, "polled token ids #" .. v.case.index)
    check.eq(v.result.generated_tokens, #v.case.output_ids, "polled result counts #" .. v.case.index)
    check.ok(v.result.total_us > 0 and v.result.first_token_us > 0, "polled result timings #" .. v.case.index)
    v.session:close()
  end
  check.ok(polls > 20, "polled more than once per request")
end)

check.section_run("generate", function()
  local c = cases[2]
  local session = model:session()
  local out = session:generate(c.prompt_ids, { max_new_tokens = 12 })
  local want = {}
  for i = 1, 12 do want[i] = c.output_ids[i] end
  check.list_eq(out.tokens, want, "generate greedy prefix")
  check.eq(out.stop_reason, "max_tokens", "generate stop_reason")
  check.eq(session:position(), #c.prompt_ids + 12, "position after generate")
  session:rewind(#c.prompt_ids)
  session:append({ c.output_ids[1] })
  check.eq(session:sample(), c.output_ids[2], "append then sample (greedy)")
  local forked = session:fork()
  check.eq(forked:position(), session:position(), "fork keeps the position")
  forked:close()
  session:reset()
  check.eq(session:position(), 0, "reset empties")
end)

check.section_run("sampler options", function()
  local c = cases[3]
  local opts = { temperature = 1.2, top_k = 20, top_p = 0.95, min_p = 0.01, repetition_penalty = 1.1,
                 seed = 42, max_new_tokens = 60 }
  local a = model:session():chat(c.question, opts)
  local b = model:session():chat(c.question, opts)
  check.eq(a.reasoning .. a.answer, b.reasoning .. b.answer, "same seed, same sampled reply")
  local first = c.output_ids[1]
  local banned = model:session():chat(c.question, { logit_bias = { [first] = -math.huge }, max_new_tokens = 5 })
  check.ok(banned.tokens[1] ~= first, "logit_bias -inf bans the greedy first token")
  local s = model:session { seed = 7 }
  local x = s:generate(c.prompt_ids, { temperature = 1.0, max_new_tokens = 20 })
  s:reset()
  local y = s:generate(c.prompt_ids, { temperature = 1.0, max_new_tokens = 20 })
  check.list_eq(x.tokens, y.tokens, "reset restores the creation seed")
end)

check.section_run("save and load state", function()
  local c, d = cases[4], cases[5]
  local a = model:session()
  local first = a:chat(c.question)
  local state = a:save_state()
  check.ok(type(state) == "string" and #state > 1000, "save_state returns the bytes")
  local b = model:session()
  b:load_state(state)
  check.eq(b:position(), a:position(), "loaded position")
  local convo = { { role = "user", content = c.question }, { role = "assistant", content = first.answer },
                  { role = "user", content = d.question } }
  local ra = a:chat(convo)
  local rb = b:chat(convo)
  check.eq(rb.reasoning, ra.reasoning, "loaded session continues: reasoning")
  check.eq(rb.answer, ra.answer, "loaded session continues: answer")
  check.eq(rb.reused_tokens, ra.reused_tokens, "loaded session reuses the same prefix")
  -- The first prompt is reused but for its closing "<think>\n" (the template drops the reasoning).
  check.eq(rb.reused_tokens, #c.prompt_ids - 2, "the saved prompt is reused, not re-run")
  check.raises("format", nil, function() b:load_state(state:sub(1, #state - 7)) end, "truncated state")
  check.raises("format", nil, function() b:load_state("not a state") end, "garbage state")
  check.eq(b:position(), a:position(), "failed loads leave the session unchanged")
end)

check.section_run("cancel", function()
  -- Deterministic: the application drives the steps (worker_threads = 0).
  local stepped = sibyl.Model(nil, { worker_threads = 0, threads = 1 })
  check.eq(stepped:info().worker_threads, 0, "worker_threads = 0")
  local session = stepped:session()
  local request = session:submit_chat(cases[6].question)
  check.eq(request:poll(), nil, "nothing runs before a step")
  local text = {}
  local report
  while #text == 0 do
    report = stepped:step(0)
    local e = request:poll()
    while e do
      if e.type == "text" then text[#text + 1] = e.text end
      e = request:poll()
    end
  end
  check.ok(report.rows > 0 and report.sequences == 1, "step report counts rows and sequences")
  request:cancel()
  local done
  while not done do
    stepped:step(0)
    local e = request:poll()
    while e do
      if e.type == "done" then done = e end
      e = request:poll()
    end
  end
  check.eq(done.stop_reason, "cancelled", "cancelled mid-reply")
  check.eq(done.status, "ok", "a cancel is not an error")
  local r = request:result()
  check.ok(r.generated_tokens > 0 and r.generated_tokens < #cases[6].output_ids, "stopped part-way")
  request:close()
  -- Blocking calls on a stepped model run the steps themselves.
  expect_reply(session:chat(cases[7].question), cases[7], "chat on worker_threads = 0")
  session:close()
  stepped:close()

  -- On the library worker: a long generation (no end-of-sequence stop), cancelled once its
  -- first token arrives.
  local s2 = model:session()
  local req = s2:submit_generate(cases[8].prompt_ids, { max_new_tokens = 1500, stop_at_eos = false })
  local e = req:next_event()
  while e.type ~= "token" do e = req:next_event() end
  req:cancel()
  while e.type ~= "done" do e = req:next_event() end
  check.eq(e.stop_reason, "cancelled", "worker request cancelled")
  check.ok(req:result().generated_tokens < 1500, "cancelled before the end")
  req:close()
  -- session:cancel(), then the session is free at once.
  local req2 = s2:submit_chat(cases[8].question)
  s2:cancel()
  e = req2:next_event()
  while e.type ~= "done" do e = req2:next_event() end
  check.eq(e.stop_reason, "cancelled", "session:cancel cancels its request")
  req2:close()
  -- Leaving a stream early: close() cancels and frees the session.
  local stream = s2:stream_chat(cases[9].question)
  for _ in stream do break end
  stream:close()
  expect_reply(s2:chat(cases[9].question), cases[9], "chat after an abandoned stream")
end)

check.section_run("grammars", function()
  local schema = [[{"type":"object","properties":{"sum":{"type":"integer"}},"required":["sum"]}]]
  local g = sibyl.grammar_from_json_schema(schema)
  g:prepare(model, "answer")
  local reply = model:session():chat(cases[1].question, { grammar = g, max_new_tokens = 400 })
  local ok, value = pcall(cjson.decode, reply.answer)
  check.ok(ok and type(value) == "table" and type(value.sum) == "number", "JSON Schema answer: " .. reply.answer)
  check.ok(#reply.reasoning > 0, "reasoning stays free with the answer scope")
  local yes_no = sibyl.grammar_from_gbnf('root ::= "yes" | "no"')
  local whole = model:session():chat("Is 3 bigger than 2?", { grammar = yes_no, grammar_scope = "whole" })
  check.ok(whole.reasoning .. whole.answer == "yes" or whole.reasoning .. whole.answer == "no",
           "GBNF whole reply: " .. whole.reasoning .. "|" .. whole.answer)
  local gen = model:session():generate(cases[1].prompt_ids, { grammar = yes_no, max_new_tokens = 8 })
  local text = model:detokenize(gen.tokens):gsub(EOS_TEXT .. "$", "")
  check.ok(text == "yes" or text == "no", "GBNF generate: " .. text)
  check.ok(sibyl.json_schema_to_gbnf(schema):find("root") ~= nil, "json_schema_to_gbnf")
  check.raises("invalid_argument", "line 1", function() sibyl.grammar_from_gbnf("root ::= (") end, "bad GBNF")
  check.raises("invalid_argument", "patternProperties",
               function() sibyl.grammar_from_json_schema([[{"type":"object","patternProperties":{}}]]) end,
               "unsupported JSON Schema keyword")
  g:close()
  g:close()
  yes_no:close()
  check.raises("closed", nil, function() model:session():chat("x", { grammar = g }) end, "closed grammar")
end)

check.section_run("tool calls", function()
  check.raises("unsupported", "tool", function()
    model:session():chat("Hi", { tools = { { name = "wave" } } })
  end, "tools on a template without tool calls")
  local path = os.getenv("SIBYL_TOOL_MODEL")
  if not path or path == "" then
    print("   (tool calls on a model: skipped, SIBYL_TOOL_MODEL not set)")
    return
  end
  local tm = sibyl.Model(path)
  local tools = { { name = "give_item", description = "Give the player an item.",
                    parameters = [[{"type":"object","properties":{"item":{"enum":["sword","bread"]}},"required":["item"]}]] } }
  local s = tm:session()
  local question = { { role = "user", content = "Give me a sword" } }
  local reply = s:chat(question, { tools = tools, tool_choice = "required", tool_name = "give_item", max_new_tokens = 200 })
  check.eq(#reply.tool_calls, 1, "one forced call")
  check.eq(reply.tool_calls[1] and reply.tool_calls[1].name, "give_item", "the call's tool")
  local args = reply.tool_calls[1] and cjson.decode(reply.tool_calls[1].arguments) or {}
  check.ok(args.item == "sword" or args.item == "bread", "arguments follow the schema")
  check.eq(reply.tool_call_count, 1, "result counts the call")
  check.eq(reply.stop_reason, "eos", "the reply ends after the call")
  local convo = { question[1], { role = "assistant", content = reply.answer, tool_calls = reply.tool_calls },
                  { role = "tool", content = '{"given": true}' } }
  local after = s:chat(convo, { tools = tools, tool_choice = "none", max_new_tokens = 6 })
  check.ok(after.reused_tokens >= reply.prompt_tokens, "the call is reused from the cache")
  check.eq(#after.tool_calls, 0, "no calls with tool_choice none")
  -- Requests report calls as events.
  local req = tm:session():submit_chat(question, { tools = tools, tool_choice = "required", max_new_tokens = 200 })
  local calls = {}
  local e = req:next_event()
  while e.type ~= "done" do
    if e.type == "tool_call" then calls[#calls + 1] = e end
    e = req:next_event()
  end
  req:close()
  check.ok(#calls >= 1 and calls[1].name == "give_item", "tool_call events")
  tm:close()
end)

check.section_run("errors", function()
  local err = check.raises("io", "does%-not%-exist", function() sibyl.Model(root .. "/does-not-exist") end, "bad path")
  check.ok(sibyl.is_error(err), "errors are sibyl.Error values")
  check.eq(err.code, 3, "error code")
  check.eq(err.func, "sibyl_model_load", "error names the call")
  check.ok(tostring(err):find("io", 1, true) ~= nil, "tostring(error)")
  check.raises("invalid_argument", "unknown option", function() sibyl.Model(nil, { thread = 2 }) end, "typo in options")
  check.raises("invalid_argument", "backend", function() sibyl.Model(nil, { backend = "gpu" }) end, "bad backend")

  local s = model:session()
  s:close()
  s:close()
  check.raises("closed", "closed", function() s:chat("Hi") end, "chat on a closed session")
  check.raises("closed", nil, function() s:save_state() end, "save_state on a closed session")
  check.raises("invalid_argument", "session:method", function() s.chat("Hi") end, "call with . instead of :")
  local s2 = model:session()
  check.raises("invalid_argument", "messages", function() s2:chat({}) end, "empty messages")
  check.raises("invalid_argument", "role", function() s2:chat({ { content = "x" } }) end, "message without role")
  check.raises("invalid_argument", "integer", function() s2:chat("x", { max_new_tokens = 1.5 }) end, "non-integer")
  check.raises("invalid_token", nil, function() s2:generate({ 99999 }) end, "token outside the vocabulary")
  local running = s2:submit_chat(cases[1].question)
  check.raises("busy", nil, function() s2:chat("again") end, "a second call while a request runs")
  running:close()
  running:close()
  check.raises("closed", nil, function() running:poll() end, "poll a closed request")

  local m2 = sibyl.Model(nil)
  local orphan = m2:session()
  m2:close()
  check.raises("model_destroyed", nil, function() orphan:chat("Hi") end, "session of a closed model")
  check.raises("closed", nil, function() m2:session() end, "closed model")
  orphan:close()
end)

check.section_run("finalizers", function()
  -- Handles dropped without close() are destroyed by the collector, in any order.
  for _ = 1, 5 do
    local m = sibyl.Model(nil)
    local s = m:session()
    local r = s:submit_chat(cases[1].question)
    local _ = r:poll()
  end
  collectgarbage()
  collectgarbage()
  check.ok(true, "collected")
end)

check.section_run("layout check", function()
  local layout = require("sibyl.layout")
  local structs = layout.structs(require("sibyl.cdef"))
  check.eq(#structs, 13, "mirrors found in the cdef")
  check.eq(#layout.problems(sibyl.lib, structs), 0, "the real mirrors match")
  ffi.cdef [[
    typedef struct wrong_event_a { uint32_t struct_size; int32_t type; int32_t token; int32_t channel;
      const char* text; size_t text_len; int32_t stop_reason; int32_t status; const char* name; } wrong_event_a;
    typedef struct wrong_step_b { uint32_t struct_size; uint64_t rows; uint32_t sequences; uint32_t pending;
      uint64_t elapsed_us; int32_t overrun; } wrong_step_b;
    typedef struct wrong_bias_c { int32_t token; float bias; int32_t extra; } wrong_bias_c;
  ]]
  local function problems_of(text, name, ctype)
    local s = layout.structs(text)
    s[1].name = name
    return table.concat(layout.problems(sibyl.lib, s, { [name] = ctype }), "\n")
  end
  local p = problems_of("typedef struct x { uint32_t struct_size; int32_t type; int32_t token; int32_t channel; " ..
                        "const char* text; size_t text_len; int32_t stop_reason; int32_t status; const char* name; } x;",
                        "sibyl_event", "wrong_event_a")
  check.ok(p:find("name_len: missing", 1, true) and p:find("size"), "missing field refused: " .. p)
  p = problems_of("typedef struct x { uint32_t struct_size; uint64_t rows; uint32_t sequences; uint32_t pending; " ..
                  "uint64_t elapsed_us; int32_t overrun; } x;", "sibyl_step_report", "wrong_step_b")
  check.ok(p:find("sequences: offset", 1, true) ~= nil, "wrong offset refused: " .. p)
  p = problems_of("typedef struct x { int32_t token; float bias; int32_t extra; } x;", "sibyl_logit_bias", "wrong_bias_c")
  check.ok(p:find("extra: the library has no such field", 1, true) ~= nil, "extra field refused: " .. p)
  p = problems_of("typedef struct x { int32_t token; } x;", "sibyl_no_such_struct", "wrong_bias_c")
  check.ok(p:find("no such struct", 1, true) ~= nil, "unknown struct refused: " .. p)

  -- End to end, in a fresh LuaJIT: a wrong mirror in the cdef makes require("sibyl") fail.
  local script = here .. "/wrong_mirror.lua"
  local pipe = io.popen(string.format("%q %q 2>&1; echo \"rc=$?\"", luajit, script))
  local out = pipe:read("*a")
  pipe:close()
  check.ok(out:find("refusing to load", 1, true) and out:find("sibyl_event.name_len", 1, true)
           and out:find("rc=0", 1, true), "require refuses a wrong mirror: " .. out)
  -- And an unloadable library path names what was tried.
  pipe = io.popen(string.format("SIBYL_LIBRARY=/nonexistent/libsibyl.so %q -e %q 2>&1; echo \"rc=$?\"", luajit,
                                "package.path = " .. string.format("%q", here .. "/../?.lua;") ..
                                " .. package.path; require('sibyl')"))
  out = pipe:read("*a")
  pipe:close()
  check.ok(out:find("$SIBYL_LIBRARY", 1, true) and out:find("/nonexistent/libsibyl.so", 1, true)
           and not out:find("rc=0", 1, true), "a missing library is a clear error: " .. out)
end)

check.section_run("doc examples", function()
  -- docs/LUA.md shows bindings/lua/examples/*.lua verbatim; each runs and prints its answers.
  local doc = read(root .. "/docs/LUA.md")
  local expected = {
    ["chat.lua"] = { "347 + 589 = 936.", "[answer] 661 is bigger.", "false\tio\tmodel path does not exist" },
    ["frame_loop.lua"] = { "24 times 6 is 144.", "There are 3 r in strawberry.", "669 is bigger.",
                           "answered over several frames" },
  }
  for name, wants in pairs(expected) do
    local path = here .. "/../examples/" .. name
    check.ok(doc:find(read(path), 1, true) ~= nil, "docs/LUA.md shows examples/" .. name .. " verbatim")
    local pipe = io.popen(string.format("LUA_PATH=%q %q %q 2>&1; echo \"rc=$?\"", here .. "/../?.lua;;", luajit, path))
    local out = pipe:read("*a")
    pipe:close()
    for _, want in ipairs(wants) do check.ok(out:find(want, 1, true) ~= nil, name .. " prints " .. want .. ": " .. out) end
    check.ok(out:find("rc=0", 1, true) ~= nil, name .. " exits 0")
  end
end)

model:close()
io.write(string.format("(%.1f s CPU)\n", os.clock() - started))
check.finish()
