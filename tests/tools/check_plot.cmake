# Runs scripts/plot_sweep.py on a sweep fixture and checks it wrote a PNG.
#   cmake -DPYTHON=<python3 with matplotlib> -DSCRIPT=<plot_sweep.py> -DINPUT=<json lines>
#         -DINPUT_BWD=<json lines of a --mode bwd sweep> -DOUTPUT=<png path> -P check_plot.cmake
# Also: the same from stdin, the backward sweep alone and with the forward
# one (two files), and no rows -> a non-zero exit and no file.
function(expect_png path)
  if(NOT EXISTS "${path}")
    message(FATAL_ERROR "no file ${path}")
  endif()
  file(READ "${path}" magic LIMIT 8 HEX)
  if(NOT magic STREQUAL "89504e470d0a1a0a")
    message(FATAL_ERROR "${path} does not start with the PNG signature (got ${magic})")
  endif()
endfunction()

file(REMOVE "${OUTPUT}" "${OUTPUT}.stdin.png" "${OUTPUT}.bwd.png" "${OUTPUT}.both.png" "${OUTPUT}.empty.png")
execute_process(COMMAND "${PYTHON}" "${SCRIPT}" "${INPUT}" -o "${OUTPUT}" RESULT_VARIABLE rc ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "plot_sweep.py ${INPUT} exited ${rc}:\n${err}")
endif()
expect_png("${OUTPUT}")

execute_process(COMMAND "${PYTHON}" "${SCRIPT}" -o "${OUTPUT}.stdin.png" INPUT_FILE "${INPUT}" RESULT_VARIABLE rc
                ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "plot_sweep.py < ${INPUT} exited ${rc}:\n${err}")
endif()
expect_png("${OUTPUT}.stdin.png")

execute_process(COMMAND "${PYTHON}" "${SCRIPT}" "${INPUT_BWD}" -o "${OUTPUT}.bwd.png" RESULT_VARIABLE rc ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "plot_sweep.py ${INPUT_BWD} exited ${rc}:\n${err}")
endif()
expect_png("${OUTPUT}.bwd.png")

execute_process(COMMAND "${PYTHON}" "${SCRIPT}" "${INPUT}" "${INPUT_BWD}" -o "${OUTPUT}.both.png" RESULT_VARIABLE rc
                ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "plot_sweep.py ${INPUT} ${INPUT_BWD} exited ${rc}:\n${err}")
endif()
expect_png("${OUTPUT}.both.png")

execute_process(COMMAND "${PYTHON}" "${SCRIPT}" -o "${OUTPUT}.empty.png" INPUT_FILE /dev/null RESULT_VARIABLE rc
                ERROR_VARIABLE err)
if(rc EQUAL 0 OR EXISTS "${OUTPUT}.empty.png" OR NOT err MATCHES "no rows")
  message(FATAL_ERROR "empty input: expected an error and no file, got exit ${rc}:\n${err}")
endif()
