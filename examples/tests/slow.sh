#!/bin/sh
# A longer test: declared with a duration so it is scheduled first.
i=0
while [ $i -lt 5 ]; do i=$((i + 1)); echo "step $i"; done
sleep 1
