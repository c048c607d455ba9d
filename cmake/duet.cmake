# Small helpers in the spirit of absl_cc_library / leveldb_test().

# One precompiled header for every torch-heavy target: <torch/torch.h> costs ~25 s per
# translation unit on this machine; compiled once here and reused everywhere.
add_library(duet_torch_pch OBJECT ${CMAKE_CURRENT_LIST_DIR}/pch_stub.cc)
target_link_libraries(duet_torch_pch PUBLIC ${TORCH_LIBRARIES})
target_include_directories(duet_torch_pch PUBLIC ${TORCH_INCLUDE_DIRS})
target_precompile_headers(duet_torch_pch PRIVATE <torch/torch.h>)

# duet_cc_library(NAME <folder> SRCS ... DEPS ... [TORCH])
# Creates target duet_<name> with alias duet::<name>; without SRCS, a headers-only
# (INTERFACE) library.
function(duet_cc_library)
  cmake_parse_arguments(ARG "TORCH" "NAME" "SRCS;DEPS" ${ARGN})
  set(target duet_${ARG_NAME})
  duet_check_layering(duet::${ARG_NAME} "${ARG_DEPS}")
  if(NOT ARG_SRCS)  # headers only
    add_library(${target} INTERFACE)
    add_library(duet::${ARG_NAME} ALIAS ${target})
    target_include_directories(${target} INTERFACE ${PROJECT_SOURCE_DIR} ${PROJECT_BINARY_DIR})
    target_link_libraries(${target} INTERFACE ${ARG_DEPS})
    return()
  endif()
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
# One gtest binary per test file, registered with ctest and labelled. The cache variables
# DUET_TEST_EXTRA_SRCS and DUET_TEST_EXTRA_LIBS add sources and libraries to every test
# binary (the ThreadSanitizer build's Abseil support, tests/sanitizers.sh).
function(duet_cc_test)
  cmake_parse_arguments(ARG "TORCH" "NAME" "SRCS;DEPS;LABELS" ${ARGN})
  duet_check_layering(${ARG_NAME} "${ARG_DEPS}")
  add_executable(${ARG_NAME} ${ARG_SRCS} ${DUET_TEST_EXTRA_SRCS})
  target_link_libraries(${ARG_NAME} PRIVATE ${ARG_DEPS} GTest::gtest GTest::gmock GTest::gtest_main
                        ${DUET_TEST_EXTRA_LIBS})
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
# duet_layer(<path> [LIBRARY <name>] MAY_USE <path>...) states which layers the library of
# folder <path> (relative to the source root, e.g. common/model) may link and include; a
# layer always uses itself. Its library is duet::<name>, by default the folder's last
# component. The top-level CMakeLists.txt holds the whole table. duet_cc_library/binary/
# test refuse, at configure time, a duet::X dependency the table does not allow for the
# layer of the current folder, the longest layer path that contains it (learner/service/
# is its own layer above learner/); tests/layering_test.py refuses an upward #include,
# another library's internal/ header, and gRPC or c10d headers where the table has no
# proto or common/weights layer. Folders in no layer (tools, tests) sit on top and may use
# everything.
function(duet_layer PATH)
  cmake_parse_arguments(ARG "" "LIBRARY" "MAY_USE" ${ARGN})
  if(NOT ARG_LIBRARY)
    get_filename_component(ARG_LIBRARY ${PATH} NAME)
  endif()
  set_property(GLOBAL PROPERTY DUET_MAY_USE_${PATH} ${ARG_MAY_USE})
  set_property(GLOBAL PROPERTY DUET_LAYER_OF_LIBRARY_${ARG_LIBRARY} ${PATH})
  set_property(GLOBAL APPEND PROPERTY DUET_LAYERS ${PATH})
  string(REPLACE ";" " " uses "${ARG_MAY_USE}")
  file(APPEND ${PROJECT_BINARY_DIR}/layers.txt "${PATH}: ${uses}\n")
endfunction()

# Sets OUT to the layer (a path of the table) that holds FOLDER, a path relative to the
# source root: the longest layer path equal to FOLDER or a parent of it; "" for none.
function(duet_layer_of FOLDER OUT)
  get_property(layers GLOBAL PROPERTY DUET_LAYERS)
  set(best "")
  foreach(layer IN LISTS layers)
    string(LENGTH "${layer}" n)
    string(LENGTH "${best}" best_n)
    if((FOLDER STREQUAL layer OR FOLDER MATCHES "^${layer}/") AND n GREATER best_n)
      set(best ${layer})
    endif()
  endforeach()
  set(${OUT} "${best}" PARENT_SCOPE)
endfunction()

# Fails the configure step when the current folder's target links a duet:: library that
# the layering table does not allow.
function(duet_check_layering TARGET DEPS)
  file(RELATIVE_PATH folder ${PROJECT_SOURCE_DIR} ${CMAKE_CURRENT_SOURCE_DIR})
  duet_layer_of("${folder}" layer)
  if(layer STREQUAL "")
    return()
  endif()
  get_property(may_use GLOBAL PROPERTY DUET_MAY_USE_${layer})
  foreach(dep IN LISTS DEPS)
    if(dep MATCHES "^duet::(.+)$")
      get_property(dep_layer GLOBAL PROPERTY DUET_LAYER_OF_LIBRARY_${CMAKE_MATCH_1})
      if(dep_layer STREQUAL "")
        message(FATAL_ERROR "layering: ${TARGET} in ${folder}/ links ${dep}, which is in "
                            "no layer of the table (CMakeLists.txt)")
      endif()
      if(NOT dep_layer STREQUAL layer AND NOT dep_layer IN_LIST may_use)
        message(FATAL_ERROR "layering: ${TARGET} in ${folder}/ links ${dep} (${dep_layer}/), "
                            "but ${layer}/ may use only: ${may_use} (table in CMakeLists.txt)")
      endif()
    endif()
  endforeach()
endfunction()
