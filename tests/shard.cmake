# Duration-balanced shards, atx run/list --shard K/N (issue 14): a 400-test
# plan split in 4, unestimated tests spread, learnt durations, a resumed
# shard, bad K/N.
atx_script_test(shard)
