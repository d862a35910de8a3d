# Runs the flashattn command line once and checks what it did.
#   cmake -DCLI=<binary> -DARGS="<args, space separated>" -DEXPECT_RC=<status>
#         [-DEXPECT_STDOUT=<regex>]        stdout must match
#         [-DEXPECT_STDERR=<regex>]        stderr must match
#         [-DEXPECT_STDERR_LINES=<n>]      stderr has exactly n lines
#         [-DEXPECT_JSON_LINES=<n>]        stdout is n lines, each parsing as a JSON object with
#                                          every key of JSON_KEYS (comma separated)
#                                          and "oracle_ok": true
#         [-DJSON_RANGES=<key:lo:hi,...>]  with EXPECT_JSON_LINES: each key of each
#                                          line is a number with lo < value < hi
#         -P check_cli.cmake
separate_arguments(args UNIX_COMMAND "${ARGS}")
execute_process(COMMAND ${CLI} ${args} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
set(context "flashattn ${ARGS}\n--- exit status: ${rc}\n--- stdout:\n${out}--- stderr:\n${err}")

if(NOT rc STREQUAL EXPECT_RC)
  message(FATAL_ERROR "expected exit status ${EXPECT_RC}\n${context}")
endif()

if(DEFINED EXPECT_STDOUT AND NOT out MATCHES "${EXPECT_STDOUT}")
  message(FATAL_ERROR "stdout does not match '${EXPECT_STDOUT}'\n${context}")
endif()

if(DEFINED EXPECT_STDERR AND NOT err MATCHES "${EXPECT_STDERR}")
  message(FATAL_ERROR "stderr does not match '${EXPECT_STDERR}'\n${context}")
endif()

if(DEFINED EXPECT_STDERR_LINES)
  string(REGEX MATCHALL "\n" newlines "${err}")
  list(LENGTH newlines count)
  if(NOT count EQUAL EXPECT_STDERR_LINES OR (count GREATER 0 AND NOT err MATCHES "^flashattn: [^\n]+\n$"))
    message(FATAL_ERROR "expected ${EXPECT_STDERR_LINES} stderr line(s) 'flashattn: ...'\n${context}")
  endif()
endif()

if(DEFINED EXPECT_JSON_LINES)
  string(REGEX MATCHALL "[^\n]+" lines "${out}")
  list(LENGTH lines count)
  if(NOT count EQUAL EXPECT_JSON_LINES)
    message(FATAL_ERROR "expected ${EXPECT_JSON_LINES} JSON line(s)\n${context}")
  endif()
  string(REPLACE "," ";" keys "${JSON_KEYS}")
  foreach(line IN LISTS lines)
    if(NOT line MATCHES "^{.*}$" OR NOT line MATCHES "\"oracle_ok\": true")
      message(FATAL_ERROR "not a JSON object with \"oracle_ok\": true: ${line}\n${context}")
    endif()
    string(JSON json_type ERROR_VARIABLE json_error TYPE "${line}")
    if(json_error OR NOT json_type STREQUAL "OBJECT")
      message(FATAL_ERROR "does not parse as a JSON object (${json_error}): ${line}\n${context}")
    endif()
    foreach(key IN LISTS keys)
      if(NOT line MATCHES "\"${key}\": ")
        message(FATAL_ERROR "key \"${key}\" missing in ${line}\n${context}")
      endif()
    endforeach()
    string(REPLACE "," ";" ranges "${JSON_RANGES}")
    foreach(range IN LISTS ranges)
      string(REPLACE ":" ";" range "${range}")
      list(GET range 0 key)
      list(GET range 1 lo)
      list(GET range 2 hi)
      if(NOT line MATCHES "\"${key}\": (-?[0-9][0-9.eE+-]*)")
        message(FATAL_ERROR "\"${key}\" is not a number in ${line}\n${context}")
      endif()
      set(value "${CMAKE_MATCH_1}")
      if(NOT (value GREATER lo AND value LESS hi))
        message(FATAL_ERROR "\"${key}\": ${value} is outside (${lo}, ${hi})\n${context}")
      endif()
    endforeach()
  endforeach()
endif()
