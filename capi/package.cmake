# What `cmake --install` gives users: libsibyl.so (runs anywhere: GPU runtimes are opened at run
# time), a self-contained libsibyl.a, the headers, the default model, a CMake package
# (find_package(Sibyl) -> Sibyl::sibyl) and pkg-config files (sibyl, sibyl-static). Every path in
# them is relative, so a moved prefix keeps working.

# libsibyl.a = the C-API objects + the whole engine archive (with its CPU/GPU backend objects),
# so a static consumer links one archive plus the system libraries listed below.
set(static_lib ${CMAKE_CURRENT_BINARY_DIR}/libsibyl.a)
set(merge_script ${CMAKE_CURRENT_BINARY_DIR}/merge_libsibyl.mri)
file(GENERATE OUTPUT ${merge_script} CONTENT
"CREATE ${static_lib}
ADDLIB $<TARGET_FILE:sibyl_static>
ADDLIB $<TARGET_FILE:sibyl_engine>
SAVE
END
")
add_custom_command(OUTPUT ${static_lib}
  COMMAND ${CMAKE_COMMAND} -E rm -f ${static_lib}
  COMMAND sh -c "'${CMAKE_AR}' -M < '${merge_script}'"
  DEPENDS sibyl_static sibyl_engine ${merge_script}
  COMMENT "Merging the engine into libsibyl.a"
  VERBATIM)
add_custom_target(sibyl_static_merged ALL DEPENDS ${static_lib})

# The system libraries the static library needs (the shared one records them itself).
set(static_deps_pc "-lpcre2-8 -lxxhash")
set(static_deps_cmake "pcre2-8;xxhash")
if(TARGET sibyl_backend_cuda)
  # The CUDA runtime is static (it opens the driver at run time); its archive is named by its
  # path on the build machine — redistributable builds use -DSIBYL_CUDA=OFF or the shared library.
  get_target_property(cudart_static CUDA::cudart_static IMPORTED_LOCATION)
  set(static_deps_pc "${static_deps_pc} ${cudart_static} -lrt")
  set(static_deps_cmake "${static_deps_cmake};${cudart_static};rt")
endif()
set(SIBYL_STATIC_DEPS_PC "${static_deps_pc} -lstdc++ -lm -ldl -lpthread")
set(SIBYL_STATIC_DEPS_CMAKE "${static_deps_cmake};stdc++;m;dl")

set(config_dir ${CMAKE_INSTALL_LIBDIR}/cmake/Sibyl)
set(pkgconfig_dir ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
file(RELATIVE_PATH SIBYL_PREFIX_FROM_CONFIG /prefix/${config_dir} /prefix)
file(RELATIVE_PATH SIBYL_PREFIX_FROM_PKGCONFIG /prefix/${pkgconfig_dir} /prefix)
set(SIBYL_SHARED_FILE libsibyl.so.${PROJECT_VERSION})
set(SIBYL_SHARED_SONAME libsibyl.so.0)
string(REGEX REPLACE "/$" "" SIBYL_PREFIX_FROM_CONFIG "${SIBYL_PREFIX_FROM_CONFIG}")
string(REGEX REPLACE "/$" "" SIBYL_PREFIX_FROM_PKGCONFIG "${SIBYL_PREFIX_FROM_PKGCONFIG}")
configure_file(${PROJECT_SOURCE_DIR}/cmake/SibylConfig.cmake.in ${CMAKE_CURRENT_BINARY_DIR}/SibylConfig.cmake @ONLY)
configure_file(${PROJECT_SOURCE_DIR}/cmake/sibyl.pc.in ${CMAKE_CURRENT_BINARY_DIR}/sibyl.pc @ONLY)
configure_file(${PROJECT_SOURCE_DIR}/cmake/sibyl-static.pc.in ${CMAKE_CURRENT_BINARY_DIR}/sibyl-static.pc @ONLY)
include(CMakePackageConfigHelpers)
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/SibylConfigVersion.cmake
                                 COMPATIBILITY SameMinorVersion)  # 0.x: minor versions only add

install(TARGETS sibyl)
install(FILES ${static_lib} DESTINATION ${CMAKE_INSTALL_LIBDIR})
install(DIRECTORY include/ DESTINATION ${CMAKE_INSTALL_INCLUDEDIR} PATTERN ".clang-format" EXCLUDE)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/SibylConfig.cmake ${CMAKE_CURRENT_BINARY_DIR}/SibylConfigVersion.cmake
        DESTINATION ${config_dir})
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/sibyl.pc ${CMAKE_CURRENT_BINARY_DIR}/sibyl-static.pc DESTINATION ${pkgconfig_dir})
# The default model (sibyl_model_load(NULL, ...), the tools without --model).
install(DIRECTORY ${PROJECT_SOURCE_DIR}/models/tiny-reasoner/ DESTINATION ${SIBYL_MODEL_INSTALL_DIR})
