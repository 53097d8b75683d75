# Tests of `smelt report` and `smelt compare` (issue 16): the paper's tables within 100 columns,
# the HTML page rendered by headless Chromium, and the comparison of two real runs.
add_executable(report_helper ${CMAKE_CURRENT_SOURCE_DIR}/report_helper.c)
target_link_libraries(report_helper PRIVATE smelt_pipeline smelt_stages smelt_model smelt_store smelt_common)
smelt_sh_test(cli_report cli/report.sh)
set_property(TEST cli_report APPEND PROPERTY ENVIRONMENT "SMELT_REPORT_HELPER=$<TARGET_FILE:report_helper>")
smelt_sh_test(cli_compare cli/compare.sh)
set_property(TEST cli_compare APPEND PROPERTY ENVIRONMENT "SMELT_REPORT_HELPER=$<TARGET_FILE:report_helper>")
