# npc_loop.py: the non-blocking loop of a game. Three NPCs ask the model questions; the game
# never waits for it: each frame it gives the model a slice of time (worker_threads=0 and
# model.step) and reads whatever text has arrived (request.events()), then renders.
#   SIBYL_LIBRARY=build/release/capi/libsibyl.so python3 npc_loop.py
import time

import sibyl

FRAME = 1 / 60
questions = {"Mira": "What is 347 + 589?", "Tomas": "How many r are in barrel?", "Ada": "What is 49 times 4?"}

with sibyl.Model(worker_threads=0) as model:   # no library thread: the game runs the steps
    npcs = {}
    for name, question in questions.items():
        session = model.session(seed=len(npcs))
        request = session.submit_chat([{"role": "user", "content": question}], max_new_tokens=256)
        npcs[name] = {"session": session, "request": request, "speech": ""}

    frame = 0
    while any(npc["request"] is not None for npc in npcs.values()):
        start = time.monotonic()
        model.step(budget_us=4000)                      # about 4 ms of this frame for the model
        for name, npc in npcs.items():
            request = npc["request"]
            if request is None:
                continue
            for event in request.events():              # never blocks
                if event.type == "text" and event.channel == "answer":
                    npc["speech"] += event.text          # show it in the NPC's speech bubble
                elif event.type == "done":
                    if event.error:                      # e.g. the model was closed
                        print(name, "failed:", event.error)
                    print("frame %3d  %-5s says %r (%s)" % (frame, name, npc["speech"], event.stop_reason))
                    request.close()
                    npc["request"] = None
        frame += 1
        time.sleep(max(0.0, FRAME - (time.monotonic() - start)))   # render the frame here

    for npc in npcs.values():
        npc["session"].close()
