# Small helpers in the spirit of absl_cc_library / leveldb_test().

# One precompiled header for every torch-heavy target: <torch/torch.h> costs ~25 s per
# translation unit on this machine; compiled once here and reused everywhere.
add_library(duet_torch_pch OBJECT ${PROJECT_SOURCE_DIR}/cmake/pch_stub.cc)
target_link_libraries(duet_torch_pch PUBLIC ${TORCH_LIBRARIES})
target_include_directories(duet_torch_pch PUBLIC ${TORCH_INCLUDE_DIRS})
target_precompile_headers(duet_torch_pch PRIVATE <torch/torch.h>)

# duet_cc_library(NAME <folder> SRCS ... DEPS ... [TORCH])
# Creates target duet_<name> with alias duet::<name>.
function(duet_cc_library)
  cmake_parse_arguments(ARG "TORCH" "NAME" "SRCS;DEPS" ${ARGN})
  set(target duet_${ARG_NAME})
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
