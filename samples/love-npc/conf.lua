-- LÖVE 11 configuration: one window, no audio (a CI machine has no sound card), vsync off —
-- main.lua paces frames at 60 Hz itself, so the pacing is the same under Xvfb as on a desktop.
function love.conf(t)
  t.identity = "sibyl-love-npc"
  t.version = "11.0"
  t.window.title = "Sibyl villagers (LÖVE + LuaJIT binding)"
  t.window.width = 800
  t.window.height = 450
  t.window.vsync = 0
  t.modules.audio = false
  t.modules.sound = false
  t.modules.joystick = false
  t.modules.physics = false
  t.modules.video = false
end
