# Install layout: `cmake --install build --prefix X` and `pip install .` (scikit-build-core, which sets SKBUILD).
#   pip install .      -> <site-packages>/engine/lib/ (where engine/ort_ops.py and the TensorRT backend look)
#   cmake --install    -> <prefix>/${SMSR_INSTALL_LIBDIR} (default lib; a relative folder, so --prefix is honoured)
# SMSR_PACKAGE_ONLY (pyproject.toml turns it on for wheels) builds only what is installed: no test programs, no
# CUDA kernels unless the TensorRT plugin needs them.
# scikit-build-core passes -DSKBUILD on every run: keep it for this run only, so a later plain `cmake` configure of
# the same build folder (make cpp after make setup) installs to the plain layout again.
set(SKBUILD "${SKBUILD}")
unset(SKBUILD CACHE)
set(SMSR_INSTALL_LIBDIR "lib" CACHE STRING
    "folder under the install prefix for the libraries (relative; engine/lib inside a site-packages folder)")
if(SKBUILD)
  set(SMSR_LIB_DESTINATION "engine/lib")
else()
  set(SMSR_LIB_DESTINATION "${SMSR_INSTALL_LIBDIR}")
endif()
if(IS_ABSOLUTE "${SMSR_LIB_DESTINATION}")
  message(FATAL_ERROR "SMSR_INSTALL_LIBDIR must be relative to the install prefix, got ${SMSR_LIB_DESTINATION}")
endif()
option(SMSR_PACKAGE_ONLY "Build only the installed libraries (wheel builds)" OFF)
