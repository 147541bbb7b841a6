# sibyl-run and sibyl-logits on tiny-v3 seq1 against the reference.
# seq1 = 9 prompt tokens + 16 greedy tokens (tests/data/tiny-v3/reference.safetensors).
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
