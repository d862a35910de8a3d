# Installs the build tree to a fresh prefix, then configures, builds and runs
# a consumer project that uses find_package(flashattn).
file(REMOVE_RECURSE ${WORK_DIR})
function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "failed (${rc}): ${ARGN}\n${out}\n${err}")
  endif()
  set(last_output "${out}" PARENT_SCOPE)
endfunction()
run(${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${WORK_DIR}/prefix)
run(${CMAKE_COMMAND} -S ${CONSUMER_DIR} -B ${WORK_DIR}/consumer-build -G Ninja
    -DCMAKE_PREFIX_PATH=${WORK_DIR}/prefix -DEXAMPLE=${EXAMPLE} -DCMAKE_BUILD_TYPE=Release)
run(${CMAKE_COMMAND} --build ${WORK_DIR}/consumer-build)
run(${WORK_DIR}/consumer-build/quickstart)
message(STATUS "${last_output}")
if(NOT last_output MATCHES "error: flash_attn: k has 3 heads, which does not divide q's 8 heads")
  message(FATAL_ERROR "unexpected quickstart output:\n${last_output}")
endif()
