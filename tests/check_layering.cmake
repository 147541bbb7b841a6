# The layering of the sources (docs/ARCHITECTURE.md): every quoted include is path-qualified from
# the repository root, and the backends use nothing of engine/ but its core layer (engine/core/).
#
#   cmake -DROOT=<repository root> -P tests/check_layering.cmake
cmake_minimum_required(VERSION 3.16)
if(NOT DEFINED ROOT)
  message(FATAL_ERROR "usage: cmake -DROOT=<repository root> -P check_layering.cmake")
endif()

set(problems "")
file(GLOB_RECURSE sources RELATIVE ${ROOT}
     ${ROOT}/engine/*.h ${ROOT}/engine/*.cpp ${ROOT}/backends/*.h ${ROOT}/backends/*.cpp
     ${ROOT}/backends/*.cu ${ROOT}/backends/*.cuh)
# Headers generated into the build tree are the only unqualified includes.
set(generated sibyl_pack_generated.h sibyl_install_paths.h)
foreach(source IN LISTS sources)
  file(STRINGS ${ROOT}/${source} includes REGEX "^[ \t]*#[ \t]*include[ \t]*\"")
  foreach(line IN LISTS includes)
    string(REGEX REPLACE "^[ \t]*#[ \t]*include[ \t]*\"([^\"]+)\".*" "\\1" target "${line}")
    if(target IN_LIST generated)
      continue()
    endif()
    if(NOT target MATCHES "^(engine|backends|capi/include|sdk/include)/")
      list(APPEND problems "${source}: \"${target}\" is not path-qualified")
    elseif(NOT EXISTS ${ROOT}/${target})
      list(APPEND problems "${source}: \"${target}\" does not exist")
    elseif(source MATCHES "^backends/" AND target MATCHES "^engine/" AND NOT target MATCHES "^engine/core/")
      list(APPEND problems "${source}: a backend includes the engine header \"${target}\" (only engine/core/)")
    endif()
  endforeach()
endforeach()
list(LENGTH sources n)
if(problems)
  list(JOIN problems "\n  " text)
  message(FATAL_ERROR "check_layering: ${text}")
endif()
message(STATUS "check_layering: ${n} files, includes path-qualified, backends use only engine/core")
