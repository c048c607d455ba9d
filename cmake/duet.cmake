# Small helpers in the spirit of absl_cc_library / leveldb_test().

# One precompiled header for every torch-heavy target: <torch/torch.h> costs ~25 s per
# translation unit on this machine; compiled once here and reused everywhere.
add_library(duet_torch_pch OBJECT ${CMAKE_CURRENT_LIST_DIR}/pch_stub.cc)
target_link_libraries(duet_torch_pch PUBLIC ${TORCH_LIBRARIES})
target_include_directories(duet_torch_pch PUBLIC ${TORCH_INCLUDE_DIRS})
target_precompile_headers(duet_torch_pch PRIVATE <torch/torch.h>)

# duet_cc_library(NAME <folder> SRCS ... DEPS ... [TORCH])
# Creates target duet_<name> with alias duet::<name>.
function(duet_cc_library)
  cmake_parse_arguments(ARG "TORCH" "NAME" "SRCS;DEPS" ${ARGN})
  set(target duet_${ARG_NAME})
  duet_check_layering(duet::${ARG_NAME} "${ARG_DEPS}")
  add_library(${target} STATIC ${ARG_SRCS})
  add_library(duet::${ARG_NAME} ALIAS ${target})
  target_include_directories(${target} PUBLIC ${PROJECT_SOURCE_DIR} ${PROJECT_BINARY_DIR})
  target_link_libraries(${target} PUBLIC ${ARG_DEPS})
  if(ARG_TORCH)
    target_link_libraries(${target} PUBLIC ${TORCH_LIBRARIES})
    target_include_directories(${target} SYSTEM PUBLIC ${TORCH_INCLUDE_DIRS})
    target_precompile_headers(${target} REUSE_FROM duet_torch_pch)
  endif()
endfunction()

# duet_cc_binary(NAME <name> SRCS ... DEPS ... [TORCH])
function(duet_cc_binary)
  cmake_parse_arguments(ARG "TORCH" "NAME" "SRCS;DEPS" ${ARGN})
  duet_check_layering(${ARG_NAME} "${ARG_DEPS}")
  add_executable(${ARG_NAME} ${ARG_SRCS})
  target_link_libraries(${ARG_NAME} PRIVATE ${ARG_DEPS})
  if(ARG_TORCH)
    target_link_libraries(${ARG_NAME} PRIVATE ${TORCH_LIBRARIES})
    target_precompile_headers(${ARG_NAME} REUSE_FROM duet_torch_pch)
  endif()
endfunction()

# duet_cc_test(NAME <name> SRCS ... DEPS ... [LABELS unit|integration] [TORCH])
# One gtest binary per test file, registered with ctest and labelled.
function(duet_cc_test)
  cmake_parse_arguments(ARG "TORCH" "NAME" "SRCS;DEPS;LABELS" ${ARGN})
  duet_check_layering(${ARG_NAME} "${ARG_DEPS}")
  add_executable(${ARG_NAME} ${ARG_SRCS})
  target_link_libraries(${ARG_NAME} PRIVATE ${ARG_DEPS} GTest::gtest GTest::gmock GTest::gtest_main)
  if(ARG_TORCH)
    target_link_libraries(${ARG_NAME} PRIVATE ${TORCH_LIBRARIES})
    target_precompile_headers(${ARG_NAME} REUSE_FROM duet_torch_pch)
  endif()
  if(NOT ARG_LABELS)
    set(ARG_LABELS unit)
  endif()
  add_test(NAME ${ARG_NAME} COMMAND ${ARG_NAME})
  set_tests_properties(${ARG_NAME} PROPERTIES LABELS "${ARG_LABELS}"
                       ENVIRONMENT "DUET_SOURCE_DIR=${PROJECT_SOURCE_DIR};OMP_NUM_THREADS=1")
endfunction()

# ---- Layering ----------------------------------------------------------------------------
# duet_layer(<folder> MAY_USE <folder>...) states which libraries the library of <folder>
# may link and include (a folder always uses itself). The top-level CMakeLists.txt holds
# the whole table. duet_cc_library/binary/test refuse, at configure time, a duet::X
# dependency the table does not allow; tests/layering_test.py refuses an upward
# #include, another library's internal/ header, and gRPC or c10d headers where the table
# has no rpc or weights layer. Folders without a duet_layer() line (tools, tests, bench)
# sit on top and may use everything.
function(duet_layer NAME)
  cmake_parse_arguments(ARG "" "" "MAY_USE" ${ARGN})
  set_property(GLOBAL PROPERTY DUET_MAY_USE_${NAME} ${ARG_MAY_USE})
  set_property(GLOBAL APPEND PROPERTY DUET_LAYERS ${NAME})
  string(REPLACE ";" " " uses "${ARG_MAY_USE}")
  file(APPEND ${PROJECT_BINARY_DIR}/layers.txt "${NAME}: ${uses}\n")
endfunction()

# Fails the configure step when the current folder's target links a duet:: library that
# the layering table does not allow.
function(duet_check_layering TARGET DEPS)
  get_filename_component(folder ${CMAKE_CURRENT_SOURCE_DIR} NAME)
  get_property(layers GLOBAL PROPERTY DUET_LAYERS)
  if(NOT folder IN_LIST layers)
    return()
  endif()
  get_property(may_use GLOBAL PROPERTY DUET_MAY_USE_${folder})
  foreach(dep IN LISTS DEPS)
    if(dep MATCHES "^duet::(.+)$")
      set(lib ${CMAKE_MATCH_1})
      if(NOT lib STREQUAL folder AND NOT lib IN_LIST may_use)
        message(FATAL_ERROR "layering: ${TARGET} in ${folder}/ links duet::${lib}, but "
                            "${folder}/ may use only: ${may_use} (table in CMakeLists.txt)")
      endif()
    endif()
  endforeach()
endfunction()
