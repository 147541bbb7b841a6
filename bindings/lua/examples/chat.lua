local sibyl = require("sibyl")

local model = sibyl.Model(nil)          -- nil: the embedded tiny-reasoner
local session = model:session { seed = 0 }

-- Blocking: the whole reply at once.
local reply = session:chat("What is 347 + 589?")
print("reasoning: " .. reply.reasoning)
print("answer:    " .. reply.answer .. " (" .. reply.stop_reason .. ", " .. reply.generated_tokens .. " tokens)")

-- Streaming: each piece as it is generated, reasoning first.
local shown
for channel, text in session:stream_chat("Which is bigger, 17 or 661?") do
  if channel ~= shown then io.write("\n[" .. channel .. "] "); shown = channel end
  io.write(text)
end
print()

-- Errors are Lua errors carrying the status and the library's message.
local ok, err = pcall(sibyl.Model, "no/such/model")
print(ok, err.status, err.message)

session:close()
model:close()
