# Every ```cpp block of README.md and docs/**/*.md is compiled by the test build, so the docs cannot
# drift from the code. The conventions (also in tests/docs_snippets/README.md):
#
#   a block containing `int main(`      a whole program: compiled as is, linked, and run by CTest
#                                       (docs_snippet_<doc>_<k>, in build/tests/docs_snippets)
#   any other block                     a fragment: its #include lines move to the top of the file,
#                                       the rest becomes the body of a function that is never called
#   <!-- snippet: wrap(<parameters>) -->  on the line(s) before a fragment: the function's parameters,
#                                       i.e. the names the fragment uses but does not declare, e.g.
#                                       <!-- snippet: wrap(Rng& rng, optim::Optimizer<float>& opt) -->
#   <!-- snippet: file -->              namespace-scope code (a template op, a struct) instead of a body
#
# Fragments of one doc share a namespace `snippets_<doc>` with `using namespace fourierft;` and the
# umbrella header fourierft/fourierft.hpp; all docs go into one translation unit (one parse of
# Eigen). #line directives make compiler errors point at the Markdown file and line.
# Extraction runs at configure time; editing a doc re-runs it (CMAKE_CONFIGURE_DEPENDS).

set(FOURIERFT_SNIPPET_DIR ${CMAKE_CURRENT_BINARY_DIR}/docs_snippets)
file(MAKE_DIRECTORY ${FOURIERFT_SNIPPET_DIR})

# Writes `content` to `path` only when it changed (no needless rebuilds on re-configure).
function(fourierft_write_if_changed path content)
  file(WRITE ${path}.tmp "${content}")
  configure_file(${path}.tmp ${path} COPYONLY)
  file(REMOVE ${path}.tmp)
endfunction()

# Undoes the escapes that make Markdown text safe to split into a CMake list of lines.
macro(fourierft_unescape var)
  string(REPLACE "@SEMI@" ";" ${var} "${${var}}")
  string(REPLACE "@LBR@" "[" ${var} "${${var}}")
  string(REPLACE "@RBR@" "]" ${var} "${${var}}")
  string(REPLACE "@BSL@" "\\" ${var} "${${var}}")
endmacro()

# Reads one Markdown file. Appends to the parent's variables:
#   FOURIERFT_SNIPPET_INCLUDES  hoisted #include lines        FOURIERFT_SNIPPET_BODY  namespaced code
#   FOURIERFT_SNIPPET_PROGRAMS  paths of generated whole programs
function(fourierft_extract_snippets doc)
  file(RELATIVE_PATH rel ${PROJECT_SOURCE_DIR} ${doc})
  string(REGEX REPLACE "[^A-Za-z0-9]" "_" name "${rel}")
  string(REGEX REPLACE "_md$" "" name "${name}")
  file(READ ${doc} content)
  # Make the text safe to split into a CMake list of lines: ';', '[', ']' and '\' are list syntax.
  string(REPLACE "\\" "@BSL@" content "${content}")
  string(REPLACE ";" "@SEMI@" content "${content}")
  string(REPLACE "[" "@LBR@" content "${content}")
  string(REPLACE "]" "@RBR@" content "${content}")
  string(REPLACE "\n" ";" lines "${content}")

  set(includes "")
  set(body "")
  set(programs "")
  set(in_block FALSE)
  set(pending "")
  set(lineno 0)
  set(k 0)
  foreach(line IN LISTS lines)
    math(EXPR lineno "${lineno} + 1")
    if(NOT in_block)
      if("${line}" MATCHES "^[ ]*<!-- snippet: (.*) -->[ ]*$")
        set(pending "${CMAKE_MATCH_1}")
      elseif("${line}" MATCHES "^[ ]*```(cpp|c\\+\\+)[ ]*$")
        set(in_block TRUE)
        math(EXPR start "${lineno} + 1")
        set(mode "${pending}")
        set(pending "")
        set(code "")
        set(hoisted "")
      elseif(NOT "${line}" MATCHES "^[ ]*$")
        set(pending "")  # an annotation applies to the very next block only
      endif()
      continue()
    endif()
    if(NOT "${line}" MATCHES "^[ ]*```[ ]*$")
      if("${line}" MATCHES "^[ ]*#[ ]*include")
        string(APPEND hoisted "${line}\n")
        string(APPEND code "\n")  # keep the line numbers of #line
      else()
        string(APPEND code "${line}\n")
      endif()
      continue()
    endif()
    # End of a block: classify it.
    set(in_block FALSE)
    math(EXPR k "${k} + 1")
    set(where "#line ${start} \"${doc}\"\n")
    if("${code}" MATCHES "int main\\(")
      set(program ${FOURIERFT_SNIPPET_DIR}/${name}_${k}.cpp)
      set(text "// Generated from ${rel} by tests/docs_snippets/snippets.cmake.\n${hoisted}${where}${code}")
      fourierft_unescape(text)
      fourierft_write_if_changed(${program} "${text}")
      list(APPEND programs ${program})
    elseif("${mode}" STREQUAL "file")
      string(APPEND includes "${hoisted}")
      string(APPEND body "${where}${code}")
    elseif("${mode}" STREQUAL "" OR "${mode}" STREQUAL "wrap" OR "${mode}" MATCHES "^wrap\\(.*\\)$")
      set(params "")
      if("${mode}" MATCHES "^wrap\\((.*)\\)$")
        set(params "${CMAKE_MATCH_1}")
      endif()
      string(APPEND includes "${hoisted}")
      string(APPEND body "[[maybe_unused]] static void snippet_${k}(${params}) {\n${where}${code}}\n")
    else()
      message(FATAL_ERROR "${rel}:${start}: unknown snippet annotation '${mode}' "
                          "(use wrap, wrap(<parameters>) or file; see tests/docs_snippets/README.md)")
    endif()
  endforeach()
  if(in_block)
    message(FATAL_ERROR "${rel}:${start}: a ```cpp block is not closed")
  endif()
  if(NOT "${body}" STREQUAL "")
    set(body "namespace snippets_${name} {\nusing namespace fourierft;\n${body}}  // namespace snippets_${name}\n")
  endif()
  set(FOURIERFT_SNIPPET_INCLUDES "${FOURIERFT_SNIPPET_INCLUDES}${includes}" PARENT_SCOPE)
  set(FOURIERFT_SNIPPET_BODY "${FOURIERFT_SNIPPET_BODY}${body}" PARENT_SCOPE)
  set(FOURIERFT_SNIPPET_PROGRAMS ${FOURIERFT_SNIPPET_PROGRAMS} ${programs} PARENT_SCOPE)
endfunction()

file(GLOB_RECURSE FOURIERFT_DOCS CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/docs/*.md)
list(SORT FOURIERFT_DOCS)
set(FOURIERFT_SNIPPET_INCLUDES "")
set(FOURIERFT_SNIPPET_BODY "")
set(FOURIERFT_SNIPPET_PROGRAMS "")
foreach(doc ${PROJECT_SOURCE_DIR}/README.md ${FOURIERFT_DOCS})
  set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${doc})
  fourierft_extract_snippets(${doc})
endforeach()

# All fragments: one translation unit, compiled (not linked) as part of the test build.
set(fragments "// Generated from README.md and docs/**/*.md by tests/docs_snippets/snippets.cmake.\n")
string(APPEND fragments "#include <cstdint>\n#include <cstdio>\n#include <iostream>\n#include <memory>\n")
string(APPEND fragments "#include <string>\n#include <vector>\n#include \"fourierft/fourierft.hpp\"\n")
string(APPEND fragments "${FOURIERFT_SNIPPET_INCLUDES}${FOURIERFT_SNIPPET_BODY}")
fourierft_unescape(fragments)
fourierft_write_if_changed(${FOURIERFT_SNIPPET_DIR}/doc_fragments.cpp "${fragments}")
add_library(docs_snippets OBJECT ${FOURIERFT_SNIPPET_DIR}/doc_fragments.cpp)
target_link_libraries(docs_snippets PRIVATE fourierft::fourierft)
target_compile_options(docs_snippets PRIVATE ${FOURIERFT_WARNINGS} -Wno-unused-variable
                                             -Wno-unused-but-set-variable)

# Whole programs: built and run (from the snippet folder, so files they write stay in the build).
foreach(program ${FOURIERFT_SNIPPET_PROGRAMS})
  get_filename_component(target ${program} NAME_WE)
  add_executable(docs_snippet_${target} ${program})
  target_link_libraries(docs_snippet_${target} PRIVATE fourierft::fourierft)
  target_compile_options(docs_snippet_${target} PRIVATE ${FOURIERFT_WARNINGS})
  add_test(NAME docs_snippet_${target} COMMAND docs_snippet_${target}
           WORKING_DIRECTORY ${FOURIERFT_SNIPPET_DIR})
  set_tests_properties(docs_snippet_${target} PROPERTIES ENVIRONMENT "FOURIERFT_NUM_THREADS=2"
                                                         TIMEOUT 120)
endforeach()
