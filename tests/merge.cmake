# Merged reports, atx report --merge OUT DIR... (issue 14): 4 shards merged
# against the whole run (JUnit, JSONL, the HTML page in headless Chromium),
# refused merges, a missing shard.
atx_script_test(merge)
