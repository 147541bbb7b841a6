# love_npc_sample (ctest -R love_npc): the LÖVE villagers run 6 s under xvfb-run against the
# built library ($SIBYL_LIBRARY); the game's JSON must show frames, answers, no request errors
# and a held frame time (the game itself exits 1 otherwise), and the screenshot must exist.
#   cmake -DLOVE=love -DXVFB_RUN=xvfb-run -DSAMPLE=samples/love-npc -DOUT=<dir> -P check_love_npc.cmake
set(json_file ${OUT}/love_npc.json)
set(png_file ${OUT}/love_npc.png)
file(REMOVE ${json_file} ${png_file})
execute_process(COMMAND ${XVFB_RUN} -a -s "-screen 0 1024x768x24" ${LOVE} ${SAMPLE} --ci 6
                        --out ${json_file} --screenshot ${png_file}
                OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc TIMEOUT 90)
message(STATUS "love-npc: ${out}")
if(NOT EXISTS ${json_file})
  message(FATAL_ERROR "love-npc wrote no figures: rc=${rc} '${out}' ${err}")
endif()
file(READ ${json_file} figures)
string(JSON frames ERROR_VARIABLE json_err GET "${figures}" frames)
if(json_err)
  message(FATAL_ERROR "love-npc figures are not JSON: '${figures}' (${json_err})")
endif()
string(JSON answers GET "${figures}" answers)
string(JSON errors GET "${figures}" errors)
string(JSON held GET "${figures}" held)
if(NOT rc EQUAL 0 OR frames LESS 200 OR answers LESS 1 OR NOT errors EQUAL 0 OR NOT held)
  message(FATAL_ERROR "love-npc: rc=${rc}, ${frames} frames (want >= 200), ${answers} answers (want >= 1), "
                      "${errors} errors (want 0), frame time held: ${held}: ${figures} ${err}")
endif()
if(EXISTS ${png_file})
  file(SIZE ${png_file} png_size)
endif()
if(NOT png_size OR png_size LESS 1000)
  message(FATAL_ERROR "love-npc: no screenshot at ${png_file}")
endif()
