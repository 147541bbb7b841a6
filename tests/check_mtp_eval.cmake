# sibyl-run --mtp on the tiny-reasoner's 160 public eval problems: every greedy output equals the
# reference ids (speculative decoding changes nothing), and a single run reports the drafts;
# sibyl-bench --mtp reports both rates and the drafts.
file(READ ${MODEL}/eval.public.json eval)
string(JSON n LENGTH "${eval}" results)
math(EXPR last "${n} - 1")
set(batch "")
foreach(i RANGE ${last})
  string(JSON prompt GET "${eval}" results ${i} prompt_ids)
  string(REGEX REPLACE "[][ \n]" "" prompt "${prompt}")
  string(APPEND batch "{\"id\": \"${i}\", \"tokens\": [${prompt}], \"max_new\": 400}\n")
endforeach()
file(WRITE ${WORK}/mtp_eval.jsonl "${batch}")
execute_process(COMMAND ${RUN} --model ${MODEL} --mtp --batch ${WORK}/mtp_eval.jsonl --sessions 1 --threads 1
                OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "sibyl-run --mtp --batch: rc=${rc} ${err}")
endif()
foreach(i RANGE ${last})
  string(JSON want GET "${eval}" results ${i} output_ids)
  string(REGEX REPLACE "[][ \n]" "" want "${want}")
  string(FIND "${out}" "{\"id\":\"${i}\",\"tokens\":[${want}]}" at)
  if(at EQUAL -1)
    message(FATAL_ERROR "sibyl-run --mtp: problem ${i} differs from the reference (${want})")
  endif()
endforeach()
string(JSON prompt GET "${eval}" results 0 prompt_ids)
string(REGEX REPLACE "[][ \n]" "" prompt "${prompt}")
execute_process(COMMAND ${RUN} --model ${MODEL} --mtp --tokens ${prompt} --max-new 400
                OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc)
if(NOT rc EQUAL 0 OR NOT err MATCHES "MTP drafts accepted [1-9][0-9]* of [1-9][0-9]*")
  message(FATAL_ERROR "sibyl-run --mtp printed no draft statistics: rc=${rc} ${err}")
endif()

# sibyl-bench --mtp: both rates, the ratio and the drafts in its JSON; a model without MTP is refused.
execute_process(COMMAND ${BENCH} --model ${MODEL} --mtp --gen 32 --prompt 0 --reps 1 --threads 1 --json
                OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "sibyl-bench --mtp: rc=${rc} ${err}")
endif()
string(JSON drafted GET "${out}" mtp drafted)
string(JSON accepted GET "${out}" mtp accepted)
string(JSON with GET "${out}" mtp gen_tokens_per_s)
string(JSON without GET "${out}" mtp no_mtp_gen_tokens_per_s)
if(drafted LESS 10 OR accepted LESS 1 OR accepted GREATER drafted OR with LESS_EQUAL 0 OR without LESS_EQUAL 0)
  message(FATAL_ERROR "sibyl-bench --mtp: ${out}")
endif()
execute_process(COMMAND ${BENCH} --model ${DATA}/tiny-v3 --mtp --gen 4 --prompt 0 --reps 1
                OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc)
if(rc EQUAL 0 OR NOT err MATCHES "no MTP layer")
  message(FATAL_ERROR "sibyl-bench --mtp on a model without MTP: rc=${rc} ${err}")
endif()
# … and with --sessions, concurrent chat requests each way, drafting in batches.
execute_process(COMMAND ${BENCH} --model ${MODEL} --mtp --gen 16 --prompt 0 --reps 1 --threads 1 --sessions 3
                        --mtp-max-batch 8 --json
                OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "sibyl-bench --mtp --sessions: rc=${rc} ${err}")
endif()
string(JSON sessions GET "${out}" mtp_sessions 0 sessions)
string(JSON drafted GET "${out}" mtp_sessions 0 drafted)
if(NOT sessions EQUAL 3 OR drafted LESS 3)
  message(FATAL_ERROR "sibyl-bench --mtp --sessions 3: ${out}")
endif()
