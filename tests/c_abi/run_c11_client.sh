#!/bin/sh
# PLACEHOLDER
exit 1
