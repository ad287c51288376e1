#!/bin/sh
echo "$GREETING as $(id -un) ($(cat /opt/app/build-info); $(cat /opt/app/heredoc.txt))"
