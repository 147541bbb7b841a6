# quickstart.py: ask the embedded default model a question, first blocking, then streamed.
#   SIBYL_LIBRARY=build/release/capi/libsibyl.so python3 quickstart.py
import sibyl

model = sibyl.Model()                       # the embedded default model; sibyl.Model(path) for any file
session = model.session(seed=0)
messages = [{"role": "user", "content": "What is 347 + 589?"}]
reply = session.chat(messages, max_new_tokens=256)
print(reply.reasoning, reply.answer, reply.stop_reason)

for channel, text in session.stream_chat(messages):   # channel: "reasoning" or "answer"
    print(text if channel == "answer" else text.upper(), end="", flush=True)
print()
