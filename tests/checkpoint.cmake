# Checkpoints, configs and reference fixtures: safetensors, config.json, whole-model load/save,
# llama2.c import, the CLI (inspect, convert).
set(ckpt_util ${CMAKE_CURRENT_SOURCE_DIR}/ckpt_testutil.c)
smelt_c_test(test_safetensors ${CMAKE_CURRENT_SOURCE_DIR}/test_safetensors.c ${ckpt_util})
smelt_c_test(test_checkpoint ${CMAKE_CURRENT_SOURCE_DIR}/test_checkpoint.c ${ckpt_util})
smelt_c_test(test_llama2c ${CMAKE_CURRENT_SOURCE_DIR}/test_llama2c.c ${ckpt_util})
smelt_c_test(test_stories260k ${CMAKE_CURRENT_SOURCE_DIR}/test_stories260k.c ${ckpt_util})
set_tests_properties(test_stories260k PROPERTIES SKIP_RETURN_CODE 77)
smelt_sh_test(checkpoint_cli checkpoint_cli.sh)
