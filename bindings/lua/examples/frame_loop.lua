local ffi = require("ffi")
local sibyl = require("sibyl")
ffi.cdef "int usleep(unsigned int usec);"   -- stands in for the rest of a frame

local model = sibyl.Model(nil)
local npcs = {}
for i, question in ipairs { "What is 24 times 6?", "How many r are in strawberry?", "Which is bigger, 342 or 669?" } do
  local session = model:session()
  npcs[i] = { session = session, request = session:submit_chat(question), answer = "" }  -- returns at once
end

local frames, pending = 0, #npcs
while pending > 0 do
  frames = frames + 1
  for _, npc in ipairs(npcs) do           -- once per frame: read what arrived, never wait
    local event = npc.request and npc.request:poll()
    while event do
      if event.type == "text" and event.channel == "answer" then npc.answer = npc.answer .. event.text end
      if event.type == "done" then
        npc.request:close()
        npc.request, pending = nil, pending - 1
        break
      end
      event = npc.request:poll()
    end
  end
  ffi.C.usleep(16667)                     -- update and draw the game here
end
for _, npc in ipairs(npcs) do print(npc.answer) end
print(frames > 1 and "answered over several frames" or "answered in one frame")
model:close()
