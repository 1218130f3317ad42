# The one place contaccum's warning flags are set. Every target the project
# builds calls contaccum_target_warnings(<target>); CONTACCUM_WERROR (on in
# CI) turns the warnings into errors. A function rather than an INTERFACE
# target: the installed, exported library must not name a build-only target.
function(contaccum_target_warnings target)
  if(CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang")
    target_compile_options(${target} PRIVATE -Wall -Wextra -Wno-unused-parameter)
    # GCC 13 and later (Debian 13's 14) report a false -Warray-bounds and
    # -Wstringop-overflow inside libstdc++'s std::vector<bool>, which
    # LibTorch's autograd::Function::apply reserves, in every file that defines a custom autograd function; the
    # location is a system header, so no pragma of ours reaches it. GCC 12
    # (Debian 12, CI's plain build) keeps the check.
    if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND CMAKE_CXX_COMPILER_VERSION VERSION_GREATER_EQUAL 13)
      target_compile_options(${target} PRIVATE -Wno-array-bounds -Wno-stringop-overflow)
    endif()
    if(CONTACCUM_WERROR)
      target_compile_options(${target} PRIVATE -Werror)
    endif()
  elseif(MSVC)
    target_compile_options(${target} PRIVATE /W4)
    if(CONTACCUM_WERROR)
      target_compile_options(${target} PRIVATE /WX)
    endif()
  endif()
endfunction()
