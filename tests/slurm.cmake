# Tests of Slurm submission (issue 6). The shell tests run against a real single-node Slurm that
# the slurm_cluster fixture starts (tests/slurm/cluster.sh) and stops. Without Slurm (or root) the
# setup test and every dependent test skip (77) with one line, unless SMELT_REQUIRE_SLURM=1 (.ci/run)
# makes the setup fail; when a present Slurm cannot start, the setup test fails and ctest reports
# every dependent test as not run, which fails the suite.
smelt_c_test(test_slurm ${CMAKE_CURRENT_SOURCE_DIR}/test_slurm.c)
smelt_c_test(test_store_fs ${CMAKE_CURRENT_SOURCE_DIR}/test_store_fs.c)
smelt_sh_test(slurm_errors slurm/errors.sh)

set(SMELT_SLURM_CLUSTER ${CMAKE_CURRENT_BINARY_DIR}/tmp/slurm-cluster)
# cluster.sh runs as docs/slurm.md says to run it (its own run bit, not through bash).
add_test(NAME slurm_cluster_start COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/slurm/cluster.sh start ${SMELT_SLURM_CLUSTER})
add_test(NAME slurm_cluster_stop COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/slurm/cluster.sh stop ${SMELT_SLURM_CLUSTER})
set_tests_properties(slurm_cluster_start PROPERTIES FIXTURES_SETUP slurm_cluster RESOURCE_LOCK slurm_cluster TIMEOUT 120
                     SKIP_RETURN_CODE 77)
set_tests_properties(slurm_cluster_stop PROPERTIES FIXTURES_CLEANUP slurm_cluster RESOURCE_LOCK slurm_cluster TIMEOUT 60)
foreach(t submit cancel_resume cancel_submit kill_submit ranks many)
  smelt_sh_test(slurm_${t} slurm/${t}.sh)
  # One test at a time on the cluster's two CPUs; SLURM_CONF points the clients at it.
  set_tests_properties(slurm_${t} PROPERTIES FIXTURES_REQUIRED slurm_cluster RESOURCE_LOCK slurm_cluster TIMEOUT 300
                      SKIP_RETURN_CODE 77)
  set_property(TEST slurm_${t} APPEND PROPERTY ENVIRONMENT "SLURM_CONF=${SMELT_SLURM_CLUSTER}/slurm.conf"
               "SMELT_TEST_TMP=${CMAKE_CURRENT_BINARY_DIR}/tmp/slurm")
endforeach()
