# Shader build helpers (also used by samples/vulkan-shared-device):
#   sibyl_compile_shader(<out_var> <name> <source.comp> [DEFINE...])  glslc → ${name}.spv
#   sibyl_embed_spirv(<out.cpp> <namespace> <function> <spv...>)      SPIR-V → a C++ array each and
#       bool <namespace>::<function>(const char* name, const uint32_t** words, size_t* count)

function(sibyl_compile_shader out_var name source)
  set(spv ${CMAKE_CURRENT_BINARY_DIR}/spirv/${name}.spv)
  set(defines)
  foreach(d ${ARGN})
    list(APPEND defines -D${d})
  endforeach()
  get_filename_component(dir ${source} DIRECTORY)
  file(GLOB includes ${dir}/*.glsl)
  add_custom_command(OUTPUT ${spv}
                     COMMAND ${CMAKE_COMMAND} -E make_directory ${CMAKE_CURRENT_BINARY_DIR}/spirv
                     COMMAND ${SIBYL_GLSLC} --target-env=vulkan1.2 -O -Werror ${defines} -I ${dir} -o ${spv} ${source}
                     DEPENDS ${source} ${includes}
                     COMMENT "glslc ${name}.spv"
                     VERBATIM)
  set(${out_var} ${spv} PARENT_SCOPE)
endfunction()

function(sibyl_embed_spirv out_cpp namespace function)
  string(REPLACE ";" "," files "${ARGN}")  # one argument whatever the generator's quoting
  add_custom_command(OUTPUT ${out_cpp}
                     COMMAND ${CMAKE_COMMAND} -DOUT=${out_cpp} -DNAMESPACE=${namespace} -DFUNCTION=${function}
                             -DFILES=${files} -P ${CMAKE_CURRENT_FUNCTION_LIST_DIR}/embed_spirv.cmake
                     DEPENDS ${ARGN} ${CMAKE_CURRENT_FUNCTION_LIST_DIR}/embed_spirv.cmake
                     COMMENT "Embedding SPIR-V into ${out_cpp}"
                     VERBATIM)
endfunction()
