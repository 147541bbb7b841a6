# SIBYL_SANITIZE=address: AddressSanitizer + UndefinedBehaviorSanitizer (UB aborts the test).
# SIBYL_SANITIZE=thread:  ThreadSanitizer (use clang: GCC 12's runtime crashes at start on
#                         kernels with high mmap randomisation).
set(SIBYL_SANITIZE "" CACHE STRING "Sanitizers for every target: '', address or thread")
if(NOT SIBYL_SANITIZE)
  # no sanitizer (empty, OFF, …)
elseif(SIBYL_SANITIZE STREQUAL "address")
  add_compile_options(-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -g)
  add_link_options(-fsanitize=address,undefined)
elseif(SIBYL_SANITIZE STREQUAL "thread")
  add_compile_options(-fsanitize=thread -g)
  add_link_options(-fsanitize=thread)
else()
  message(FATAL_ERROR "SIBYL_SANITIZE must be empty, 'address' or 'thread', not '${SIBYL_SANITIZE}'")
endif()
