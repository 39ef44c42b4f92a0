# Plugin loader tests: fake plugins for every refusal the loader makes, the
# cmocka test of the registry, the `atx plugins` listing, and the install
# tree (library, headers, atx.pc, CMake package, plugins).
#
# Each fake is built alone into fake-plugins/<case>/<name>.so, so a test can
# put exactly the files it wants in its search path.
set(ATX_FAKE_PLUGIN_DIR ${CMAKE_CURRENT_BINARY_DIR}/fake-plugins)

# atx_fake_plugin(CASE NAME SOURCE [DEFINITIONS...])
function(atx_fake_plugin case name source)
  set(target fake-plugin-${case})
  add_library(${target} MODULE fake_plugins/${source})
  set_target_properties(${target} PROPERTIES
    PREFIX "" SUFFIX ".so" OUTPUT_NAME ${name}
    LIBRARY_OUTPUT_DIRECTORY ${ATX_FAKE_PLUGIN_DIR}/${case})
  target_compile_definitions(${target} PRIVATE FAKE_NAME="${name}" ${ARGN})
  target_link_libraries(${target} PRIVATE atx)
  set_property(GLOBAL APPEND PROPERTY ATX_FAKE_PLUGINS ${target})
endfunction()

# Loadable: the reference fake, and the hand-written descriptor with no fault
# for each kind (so each refusal below is due to its one fault alone).
atx_fake_plugin(good fakeagg good.c)
atx_fake_plugin(hand-aggregator handagg descriptor.c)
atx_fake_plugin(hand-executor handexec descriptor.c FAKE_KIND=ATX_PLUGIN_EXECUTOR)
atx_fake_plugin(hand-provisioner handprov descriptor.c FAKE_KIND=ATX_PLUGIN_PROVISIONER)
# Search order: the same name in two directories, told apart by version.
atx_fake_plugin(order-a dup good.c FAKE_VERSION="a")
atx_fake_plugin(order-b dup good.c FAKE_VERSION="b")

# Refused, one fault each.
atx_fake_plugin(abi-major abimajor descriptor.c "FAKE_ABI_MAJOR=(ATX_ABI_MAJOR+1)")
atx_fake_plugin(abi-minor abiminor descriptor.c "FAKE_ABI_MINOR=(ATX_ABI_MINOR+1)")
atx_fake_plugin(name misnamed descriptor.c FAKE_DECLARED_NAME="othername")
atx_fake_plugin(name-newline newlinename descriptor.c FAKE_NEWLINE_NAME=1)
atx_fake_plugin(no-entry noentry noentry.c)
atx_fake_plugin(null-descriptor nulldesc descriptor.c FAKE_NULL_DESCRIPTOR=1)
atx_fake_plugin(struct-size smallstruct descriptor.c FAKE_STRUCT_SIZE=8)
atx_fake_plugin(no-version noversion descriptor.c FAKE_VERSION=NULL)
atx_fake_plugin(unknown-kind unknownkind descriptor.c FAKE_KIND=99)
atx_fake_plugin(vtable-version vtable0 descriptor.c FAKE_VTABLE_VERSION=0)
atx_fake_plugin(no-method nomethod descriptor.c FAKE_OMIT_REQUIRED=1)
atx_fake_plugin(no-method-executor norun descriptor.c FAKE_KIND=ATX_PLUGIN_EXECUTOR
                FAKE_OMIT_REQUIRED=1)
atx_fake_plugin(no-method-provisioner norelease descriptor.c
                FAKE_KIND=ATX_PLUGIN_PROVISIONER FAKE_OMIT_REQUIRED=1)
# Not shared objects at all: a text file, and a directory, named *.so.
file(WRITE ${ATX_FAKE_PLUGIN_DIR}/not-so/notso.so "this is a text file, not a shared object\n")
file(MAKE_DIRECTORY ${ATX_FAKE_PLUGIN_DIR}/not-regular/notregular.so)
# A refused file that comes first in the path must not fall through to order-a.
file(WRITE ${ATX_FAKE_PLUGIN_DIR}/order-bad/dup.so "not a plugin either\n")

atx_unit_test(plugins)
get_property(_fakes GLOBAL PROPERTY ATX_FAKE_PLUGINS)
add_dependencies(test_plugins ${_fakes})

atx_script_test(plugins_cli)
atx_script_test(install)
