# `cmake --install` puts the libraries, public headers and a TandemConfig.cmake
# under the prefix, so an app outside the tree can do
#   find_package(Tandem REQUIRED)
#   target_link_libraries(app PRIVATE Tandem::edge)          # standalone: no gRPC
#   target_link_libraries(app PRIVATE Tandem::edge_grpc)     # collaborative over gRPC
# Two export sets: TandemTargets (common, proto, edge, cloud_core: no gRPC) and
# TandemGrpcTargets (proto_grpc, edge_grpc, cloud and the binaries), which
# TandemConfig.cmake loads only when gRPC can be found — required with
# `find_package(Tandem REQUIRED COMPONENTS grpc)`.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

set(TANDEM_INSTALL_CMAKEDIR ${CMAKE_INSTALL_LIBDIR}/cmake/Tandem)

install(TARGETS ${TANDEM_INSTALL_TARGETS}
  EXPORT TandemTargets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(TARGETS ${TANDEM_GRPC_INSTALL_TARGETS}
  EXPORT TandemGrpcTargets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
foreach(dir ${TANDEM_PUBLIC_INCLUDE_DIRS})
  install(DIRECTORY ${dir}/ DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
endforeach()
install(EXPORT TandemTargets NAMESPACE Tandem:: DESTINATION ${TANDEM_INSTALL_CMAKEDIR})
install(EXPORT TandemGrpcTargets NAMESPACE Tandem:: DESTINATION ${TANDEM_INSTALL_CMAKEDIR})

configure_package_config_file(${CMAKE_CURRENT_LIST_DIR}/TandemConfig.cmake.in
  ${CMAKE_CURRENT_BINARY_DIR}/TandemConfig.cmake
  INSTALL_DESTINATION ${TANDEM_INSTALL_CMAKEDIR})
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/TandemConfigVersion.cmake
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/TandemConfig.cmake
              ${CMAKE_CURRENT_BINARY_DIR}/TandemConfigVersion.cmake
        DESTINATION ${TANDEM_INSTALL_CMAKEDIR})
