# The one place contaccum's warning flags are set. Every target the project
# builds calls contaccum_target_warnings(<target>); CONTACCUM_WERROR (on in
# CI) turns the warnings into errors. A function rather than an INTERFACE
# target: the installed, exported library must not name a build-only target.
function(contaccum_target_warnings target)
  if(CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang")
    target_compile_options(${target} PRIVATE -Wall -Wextra -Wno-unused-parameter)
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
