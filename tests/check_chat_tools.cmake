# sibyl-chat --tools: on a V3-template model a forced call prints as one JSON line with the tool's
# name and schema-valid arguments; the tiny-reasoner, whose template has no tool calls, refuses.
execute_process(COMMAND ${CHAT} --model ${MODEL} --tools ${DATA}/tool-v3/npc_tools.json --tool-choice give_item
                        --prompt "Give me the sword" --hide-reasoning --max-new 200
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
string(STRIP "${out}" out)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "sibyl-chat --tools: rc=${rc} '${out}' ${err}")
endif()
string(JSON name ERROR_VARIABLE json_error GET "${out}" tool_call name)
string(JSON item ERROR_VARIABLE json_error2 GET "${out}" tool_call arguments item)
if(json_error OR json_error2 OR NOT name STREQUAL "give_item" OR NOT (item STREQUAL "sword" OR item STREQUAL "bread"))
  message(FATAL_ERROR "sibyl-chat --tools: not a give_item call: '${out}' ${json_error} ${json_error2}")
endif()

execute_process(COMMAND ${CHAT} --tools ${DATA}/tool-v3/npc_tools.json --prompt "Hi" --max-new 8
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(rc EQUAL 0 OR NOT err MATCHES "has no tool calls")
  message(FATAL_ERROR "sibyl-chat --tools on the tiny-reasoner: rc=${rc} '${out}' ${err}")
endif()
