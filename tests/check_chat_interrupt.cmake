# sibyl-chat and Ctrl-C: SIGINT during a reply (one that would run for many seconds: a grammar
# that never ends, on the V3-vocabulary test model) cancels the reply, and the one-shot run ends
# with status 130 after reporting what it generated.
file(WRITE ${WORK}/never_ending.gbnf "root ::= \"a\" root\n")
execute_process(COMMAND timeout --preserve-status -s INT 2 ${CHAT} --model ${MODEL} --grammar ${WORK}/never_ending.gbnf
                        --max-new 100000 --prompt "Hi"
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 130 OR NOT err MATCHES "cancelled; 0 reasoning [+] [1-9][0-9]* answer tokens" OR NOT out MATCHES "^aaa")
  message(FATAL_ERROR "sibyl-chat interrupted: rc=${rc} '${out}' ${err}")
endif()
