# tandem_library(NAME SOURCES ... DEPS ...): a static library with our warnings and
# the module's public include dir.
function(tandem_target_defaults target)
  target_compile_options(${target} PRIVATE ${TANDEM_WARNINGS})
endfunction()
