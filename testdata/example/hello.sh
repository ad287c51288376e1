#!/bin/sh
echo "$GREETING (busybox $(busybox | head -1 | cut -d' ' -f2))"
