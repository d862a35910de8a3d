# libflashattn_c's dynamic symbol table defines the C ABI's functions and
# nothing else (src/capi/exports.map): no flashattn, C++ runtime or CUDA
# runtime symbol that could bind to, or be bound by, a host process's own.
# -DNM=<nm> -DLIBRARY=<libflashattn_c.so>
execute_process(COMMAND ${NM} -D --defined-only ${LIBRARY} OUTPUT_VARIABLE symbols RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "${NM} failed on ${LIBRARY}")
endif()
string(REGEX MATCHALL "[^\n]+" lines "${symbols}")
set(exported "")
foreach(line IN LISTS lines)
  string(REGEX REPLACE "^.* " "" name "${line}")
  if(NOT name MATCHES "^flashattn_")
    message(FATAL_ERROR "libflashattn_c exports ${name}, which is not in c_api.h")
  endif()
  list(APPEND exported ${name})
endforeach()
list(SORT exported)
set(expected flashattn_c_api_version flashattn_flash_attn flashattn_flash_attn_default_options
    flashattn_flash_attn_workspace_bytes)
if(NOT exported STREQUAL expected)
  message(FATAL_ERROR "libflashattn_c exports [${exported}], expected [${expected}]")
endif()
