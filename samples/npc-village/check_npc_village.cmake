# npc-village end to end (ctest -R npc_village): a short game on the embedded model must run
# its frames and get answers back through the non-blocking API.
#   cmake -DVILLAGE=<path to npc-village> -P check_npc_village.cmake
# Frame timing is not checked here (shared CI machines); run the binary by hand for that.
execute_process(COMMAND ${VILLAGE} --npcs 4 --seconds 3 --json
                OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc)
string(STRIP "${out}" out)
message(STATUS "npc-village: ${out}")
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "npc-village failed: rc=${rc} '${out}' ${err}")
endif()
string(JSON frames ERROR_VARIABLE json_err GET "${out}" frames)
if(json_err)
  message(FATAL_ERROR "npc-village did not print a JSON line: '${out}' (${json_err}) ${err}")
endif()
string(JSON answers GET "${out}" answers)
string(JSON errors GET "${out}" errors)
if(frames LESS 100 OR answers LESS 1 OR NOT errors EQUAL 0)
  message(FATAL_ERROR "npc-village: ${frames} frames (want >= 100), ${answers} answers (want >= 1), "
                      "${errors} errors (want 0): '${out}' ${err}")
endif()

# A bad flag and a missing model fail with a message and a non-zero exit.
execute_process(COMMAND ${VILLAGE} --npcs -1 RESULT_VARIABLE rc ERROR_VARIABLE err OUTPUT_QUIET)
if(rc EQUAL 0 OR NOT err MATCHES "--npcs")
  message(FATAL_ERROR "npc-village --npcs -1: rc=${rc} '${err}'")
endif()
execute_process(COMMAND ${VILLAGE} --model ${CMAKE_CURRENT_LIST_DIR}/does-not-exist --seconds 1
                RESULT_VARIABLE rc ERROR_VARIABLE err OUTPUT_QUIET)
if(rc EQUAL 0 OR NOT err MATCHES "error: .*does-not-exist")
  message(FATAL_ERROR "npc-village on a missing model: rc=${rc} '${err}'")
endif()
