# The command-line tools end to end: sibyl-run and sibyl-logits on tiny-v3 seq1 against the reference,
# sibyl-tokenize and sibyl-chat on the embedded tiny-reasoner. seq1 of tiny-v3 = 9 prompt tokens + 16 greedy tokens.
set(prompt "574,817,697,519,650,424,381,608,365")
execute_process(COMMAND ${RUN} --model ${DATA}/tiny-v3 --tokens ${prompt} --max-new 4
                OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "sibyl-run failed: ${err}")
endif()
string(STRIP "${out}" out)
if(NOT out STREQUAL "257 347 313 73")  # the reference's greedy continuation
  message(FATAL_ERROR "sibyl-run printed '${out}', expected '257 347 313 73'")
endif()
if(NOT err MATCHES "tokens/s")
  message(FATAL_ERROR "sibyl-run printed no timing on stderr: ${err}")
endif()

# Save the session after 2 of the 4 tokens in one process, continue it in another: the same
# continuation as one uninterrupted run (the reference's), without re-running the prompt.
execute_process(COMMAND ${RUN} --model ${DATA}/tiny-v3 --tokens ${prompt} --max-new 2 --save-state ${WORK}/tool_state.bin
                OUTPUT_VARIABLE first ERROR_VARIABLE err RESULT_VARIABLE rc)
string(STRIP "${first}" first)
if(NOT rc EQUAL 0 OR NOT first STREQUAL "257 347" OR NOT err MATCHES "bytes/token")
  message(FATAL_ERROR "sibyl-run --save-state: rc=${rc} '${first}' ${err}")
endif()
execute_process(COMMAND ${RUN} --model ${DATA}/tiny-v3 --load-state ${WORK}/tool_state.bin --max-new 2
                OUTPUT_VARIABLE rest ERROR_VARIABLE err RESULT_VARIABLE rc)
string(STRIP "${rest}" rest)
if(NOT rc EQUAL 0 OR NOT rest STREQUAL "313 73" OR NOT err MATCHES "prompt 0 tokens")
  message(FATAL_ERROR "sibyl-run --load-state: rc=${rc} '${rest}', expected '313 73'; ${err}")
endif()
file(WRITE ${WORK}/tool_state_bad.bin "SIBYLSES and then garbage")
execute_process(COMMAND ${RUN} --model ${DATA}/tiny-v3 --load-state ${WORK}/tool_state_bad.bin --max-new 2
                RESULT_VARIABLE rc ERROR_VARIABLE err OUTPUT_QUIET)
if(rc EQUAL 0 OR NOT err MATCHES "session state")
  message(FATAL_ERROR "sibyl-run --load-state of a corrupt file: rc=${rc} '${err}'")
endif()

# --batch: requests at once through the scheduler, two sessions for three requests; each
# result equals the request run alone.
file(WRITE ${WORK}/tool_batch.jsonl "{\"id\": \"a\", \"tokens\": [${prompt}], \"max_new\": 4}\n"
                                     "{\"id\": \"b\", \"tokens\": [5, 6, 7], \"max_new\": 3}\n"
                                     "{\"id\": \"c\", \"tokens\": [${prompt}], \"max_new\": 2}\n")
execute_process(COMMAND ${RUN} --model ${DATA}/tiny-v3 --batch ${WORK}/tool_batch.jsonl --sessions 2
                OUTPUT_VARIABLE batch ERROR_VARIABLE err RESULT_VARIABLE rc)
execute_process(COMMAND ${RUN} --model ${DATA}/tiny-v3 --tokens 5,6,7 --max-new 3 OUTPUT_VARIABLE alone_b
                ERROR_QUIET)
string(STRIP "${alone_b}" alone_b)
string(REPLACE " " "," alone_b "${alone_b}")
if(NOT rc EQUAL 0 OR NOT batch MATCHES "{\"id\":\"a\",\"tokens\":\\[257,347,313,73\\]}"
   OR NOT batch MATCHES "{\"id\":\"b\",\"tokens\":\\[${alone_b}\\]}"
   OR NOT batch MATCHES "{\"id\":\"c\",\"tokens\":\\[257,347\\]}")
  message(FATAL_ERROR "sibyl-run --batch: rc=${rc} '${batch}' (b alone: ${alone_b}) ${err}")
endif()

execute_process(COMMAND ${RUN} --model ${DATA}/does-not-exist --tokens 1 RESULT_VARIABLE rc ERROR_VARIABLE err)
if(rc EQUAL 0 OR NOT err MATCHES "does-not-exist")
  message(FATAL_ERROR "sibyl-run on a missing model: rc=${rc} '${err}'")
endif()

file(WRITE ${WORK}/tool_tokens.txt "1 2 3\n4")
foreach(mode prefill decode)
  execute_process(COMMAND ${LOGITS} --model ${DATA}/tiny-v3 --tokens-file ${WORK}/tool_tokens.txt
                          --out ${WORK}/tool_logits_${mode}.bin --mode ${mode} RESULT_VARIABLE rc ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "sibyl-logits --mode ${mode} failed: ${err}")
  endif()
  file(SIZE ${WORK}/tool_logits_${mode}.bin size)
  if(NOT size EQUAL 16384)  # 4 positions × 1024 vocab × 4 bytes
    message(FATAL_ERROR "sibyl-logits wrote ${size} bytes, expected 16384")
  endif()
endforeach()

# --precision: sibyl-logits defaults to exact (the references), --precision fast rounds the
# activations of a quantized file (different bytes, same size); a bad value is refused.
foreach(p default exact fast)
  set(flag "")
  if(NOT p STREQUAL "default")
    set(flag --precision ${p})
  endif()
  execute_process(COMMAND ${LOGITS} --model ${DATA}/gguf/tiny-v3-q4_k_m.gguf --tokens-file ${WORK}/tool_tokens.txt
                          --out ${WORK}/tool_logits_q4_${p}.bin ${flag} RESULT_VARIABLE rc ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "sibyl-logits ${flag} failed: ${err}")
  endif()
endforeach()
file(SHA256 ${WORK}/tool_logits_q4_default.bin h_default)
file(SHA256 ${WORK}/tool_logits_q4_exact.bin h_exact)
file(SHA256 ${WORK}/tool_logits_q4_fast.bin h_fast)
if(NOT h_default STREQUAL h_exact OR h_fast STREQUAL h_exact)
  message(FATAL_ERROR "sibyl-logits --precision: default must equal exact and differ from fast")
endif()
execute_process(COMMAND ${RUN} --model ${DATA}/tiny-v3 --tokens 1 --precision fastest RESULT_VARIABLE rc
                ERROR_VARIABLE err OUTPUT_QUIET)
if(rc EQUAL 0 OR NOT err MATCHES "--precision must be fast or exact")
  message(FATAL_ERROR "sibyl-run --precision fastest: rc=${rc} '${err}'")
endif()

# sibyl-tokenize: one JSON string per line in, one id array per line out, and back.
file(WRITE ${WORK}/tool_text.txt "\"What is 2 + 2?\"\n\"<｜User｜>hi\"\n")
execute_process(COMMAND ${TOKENIZE} --model ${DATA}/../../models/tiny-reasoner INPUT_FILE ${WORK}/tool_text.txt
                OUTPUT_VARIABLE ids RESULT_VARIABLE rc ERROR_VARIABLE err)
if(NOT rc EQUAL 0 OR NOT ids MATCHES "^\\[295, ?260, ?223, ?20, ?287, ?223, ?20, ?33\\]\n\\[1280,")
  message(FATAL_ERROR "sibyl-tokenize: rc=${rc} '${ids}' ${err}")
endif()
file(WRITE ${WORK}/tool_ids.txt "${ids}")
execute_process(COMMAND ${TOKENIZE} --model ${DATA}/../../models/tiny-reasoner --decode INPUT_FILE ${WORK}/tool_ids.txt
                OUTPUT_VARIABLE text RESULT_VARIABLE rc)
file(READ ${WORK}/tool_text.txt want)
if(NOT rc EQUAL 0 OR NOT text STREQUAL want)
  message(FATAL_ERROR "sibyl-tokenize --decode gave '${text}', expected '${want}'")
endif()
# --text: plain lines, the same ids; a line that is not JSON says where and what was expected.
file(WRITE ${WORK}/tool_plain.txt "What is 2 + 2?\n")
execute_process(COMMAND ${TOKENIZE} --model ${DATA}/../../models/tiny-reasoner --text INPUT_FILE ${WORK}/tool_plain.txt
                OUTPUT_VARIABLE plain_ids RESULT_VARIABLE rc ERROR_VARIABLE err)
if(NOT rc EQUAL 0 OR NOT plain_ids MATCHES "^\\[295, ?260, ?223, ?20, ?287, ?223, ?20, ?33\\]\n$")
  message(FATAL_ERROR "sibyl-tokenize --text: rc=${rc} '${plain_ids}' ${err}")
endif()
execute_process(COMMAND ${TOKENIZE} --model ${DATA}/../../models/tiny-reasoner INPUT_FILE ${WORK}/tool_plain.txt
                OUTPUT_QUIET RESULT_VARIABLE rc ERROR_VARIABLE err)
if(rc EQUAL 0 OR NOT err MATCHES "line 1: not JSON [(]at byte 1[)]; expected a JSON string such as \"Hello\" [(]--text")
  message(FATAL_ERROR "sibyl-tokenize on a plain line: rc=${rc} '${err}'")
endif()

# sibyl-chat one-shot on the embedded model (its default): reasoning, then the right answer.
execute_process(COMMAND ${CHAT} --prompt "What is 347 + 589?" OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc)
if(NOT rc EQUAL 0 OR NOT out MATCHES "So the sum is 936[.]" OR NOT out MATCHES "347 [+] 589 = 936[.]")
  message(FATAL_ERROR "sibyl-chat: rc=${rc} '${out}' ${err}")
endif()
if(NOT err MATCHES "tokens/s" OR NOT err MATCHES "first token after")
  message(FATAL_ERROR "sibyl-chat printed no speed line: ${err}")
endif()
execute_process(COMMAND ${CHAT} --prompt "What is 347 + 589?" --think-budget 8 --hide-reasoning
                OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc)
if(NOT rc EQUAL 0 OR NOT err MATCHES "\\[8 reasoning" OR out MATCHES "think>" OR out MATCHES "So the sum")
  message(FATAL_ERROR "sibyl-chat --think-budget 8: rc=${rc} '${out}' ${err}")
endif()

# sibyl-chat --json-schema: the answer is JSON with the schema's members; a broken grammar is an error.
file(WRITE ${WORK}/answer.schema.json
     [=[{"type": "object", "properties": {"sum": {"type": "integer"}, "sure": {"type": "boolean"}}, "required": ["sum", "sure"]}]=])
execute_process(COMMAND ${CHAT} --prompt "What is 347 + 589?" --hide-reasoning --json-schema ${WORK}/answer.schema.json
                OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc)
string(JSON sum_type ERROR_VARIABLE json_error TYPE "${out}" sum)
string(JSON sure_type ERROR_VARIABLE json_error2 TYPE "${out}" sure)
if(NOT rc EQUAL 0 OR NOT sum_type STREQUAL "NUMBER" OR NOT sure_type STREQUAL "BOOLEAN")
  message(FATAL_ERROR "sibyl-chat --json-schema: rc=${rc} '${out}' ${json_error} ${err}")
endif()
file(WRITE ${WORK}/broken.gbnf "root ::= (\"a\"\n")
execute_process(COMMAND ${CHAT} --prompt "hi" --grammar ${WORK}/broken.gbnf OUTPUT_VARIABLE out ERROR_VARIABLE err
                RESULT_VARIABLE rc)
if(rc EQUAL 0 OR NOT err MATCHES "broken.gbnf: grammar line 2, column 1")
  message(FATAL_ERROR "sibyl-chat --grammar with a broken grammar: rc=${rc} ${err}")
endif()

# sibyl-chat interactive: two turns in one session; the second reuses the first from the cache.
file(WRITE ${WORK}/chat_input.txt "What is 12 + 30?\nHow many r are in the word strawberry?\n/quit\n")
execute_process(COMMAND ${CHAT} --hide-reasoning INPUT_FILE ${WORK}/chat_input.txt
                OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc)
if(NOT rc EQUAL 0 OR NOT out MATCHES "> 12 [+] 30 = 42[.]" OR NOT err MATCHES "prompt [0-9]+ [(][+][1-9][0-9]* cached[)]")
  message(FATAL_ERROR "sibyl-chat interactive: rc=${rc} '${out}' ${err}")
endif()

# Commands are never sent to the model: /help lists them, an unknown one is an error, //x sends /x.
file(WRITE ${WORK}/chat_commands.txt "/help\n/weather\n//What is 12 + 30?\n/quit\n")
execute_process(COMMAND ${CHAT} --hide-reasoning --max-new 64 INPUT_FILE ${WORK}/chat_commands.txt
                OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc)
if(NOT rc EQUAL 0 OR NOT out MATCHES "/reset: start a new conversation" OR NOT err MATCHES "unknown command /weather"
   OR NOT err MATCHES "prompt [0-9]+ [(][+]0 cached[)]")
  message(FATAL_ERROR "sibyl-chat commands: rc=${rc} '${out}' ${err}")
endif()

# sibyl-convert: the tiny-reasoner to a Q8_0 pack (progress, summary, verified checksum; its MTP layer
# kept, without the copies of the embedding and head that equal the main ones); the same
# C ABI load then runs the pack, and the GGUF, in sibyl-chat with the same answer.
execute_process(COMMAND ${CONVERT} ${DATA}/../../models/tiny-reasoner ${WORK}/reasoner-q8_0.sibyl --quant q8_0
                        --type "lm_head.weight=Q6_K" --verify
                OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc)
if(NOT rc EQUAL 0 OR NOT out MATCHES "routed experts +12 +6291456 .* 8[.]500 +Q8_0 100%" OR NOT out MATCHES "MTP projection +1 +131072" OR NOT out MATCHES "output head .*Q6_K 100%"
   OR NOT out MATCHES "checksum verified" OR NOT err MATCHES "100[.]0%")
  message(FATAL_ERROR "sibyl-convert: rc=${rc} '${out}' ${err}")
endif()
foreach(model ${WORK}/reasoner-q8_0.sibyl ${DATA}/gguf/tiny-reasoner-bf16.gguf)
  execute_process(COMMAND ${CHAT} --model ${model} --prompt "What is 347 + 589?" --hide-reasoning
                  OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0 OR NOT out MATCHES "347 [+] 589 = 936[.]")
    message(FATAL_ERROR "sibyl-chat --model ${model}: rc=${rc} '${out}' ${err}")
  endif()
endforeach()
execute_process(COMMAND ${CONVERT} ${DATA}/tiny-v3 ${WORK}/bad.sibyl --quant q3_k RESULT_VARIABLE rc ERROR_VARIABLE err)
if(rc EQUAL 0 OR NOT err MATCHES "q3_k")
  message(FATAL_ERROR "sibyl-convert with an unknown preset: rc=${rc} '${err}'")
endif()

# sibyl-synth: random weights at real shapes (tiny-v3's config here) load and run.
execute_process(COMMAND ${SYNTH} ${WORK}/synth.sibyl --config ${DATA}/tiny-v3/config.json --quant q4_k
                OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc)
if(NOT rc EQUAL 0 OR NOT out MATCHES "wrote .*synth.sibyl")
  message(FATAL_ERROR "sibyl-synth: rc=${rc} '${out}' ${err}")
endif()
execute_process(COMMAND ${RUN} --model ${WORK}/synth.sibyl --tokens 1,2,3 --max-new 4
                OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc)
if(NOT rc EQUAL 0 OR NOT out MATCHES "^[0-9]+ [0-9]+ [0-9]+ [0-9]+")
  message(FATAL_ERROR "sibyl-run on a synthetic pack: rc=${rc} '${out}' ${err}")
endif()
